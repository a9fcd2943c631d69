//! `[backup]`: scheduled backups of the node's state (see docs/backup.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// `[backup]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    /// How often the node writes a backup archive; `0s` turns scheduled backups off.
    pub interval: HumanDuration,
    /// Where archives go; unset: `<data_root>/backups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How many archives of this node to keep in `dir` (the oldest are deleted after each
    /// backup); 0 keeps all.
    pub keep: u32,
}

impl Default for BackupSection {
    fn default() -> Self {
        BackupSection {
            interval: HumanDuration::secs(0),
            dir: None,
            keep: 7,
        }
    }
}

impl BackupSection {
    /// Checks what types cannot; reports each problem through `issue(key, message)`.
    pub(crate) fn validate(&self, issue: &mut dyn FnMut(&str, String)) {
        let interval = self.interval.0;
        if !interval.is_zero()
            && (interval < std::time::Duration::from_secs(1)
                || interval > std::time::Duration::from_secs(366 * 86_400))
        {
            issue(
                "backup.interval",
                format!(
                    "{} is out of range (allowed: 0s to turn scheduled backups off, or 1s to 366d)",
                    self.interval
                ),
            );
        }
        if let Some(dir) = &self.dir
            && dir.as_os_str().is_empty()
        {
            issue(
                "backup.dir",
                "must not be empty (leave it unset for <data_root>/backups)".into(),
            );
        }
    }
}
