//! Log output: level directives, text or JSON lines, optional file copy
//! with size- or day-based rotation.
//!
//! Rotation is hand-written and logrotate-style: when the current file would
//! grow past the size limit, or the first time something is logged on a new
//! UTC day, `dawn.log` is renamed to `dawn.log.1`, `dawn.log.1` to
//! `dawn.log.2` and so on; files beyond `keep` are deleted and a fresh
//! `dawn.log` is started. Log shippers that follow the file by name (Vector,
//! Fluent Bit, Promtail) handle this pattern.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::log_format::{FlatJson, RedactingJsonFields, RedactingTextFields};

use tracing_subscriber::{
    EnvFilter, Layer as _, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`,
    /// the event's fields and the fields of its enclosing spans (such as
    /// `node_id`, `peer_id`, `request_id`) at the top level, and `span`, the
    /// innermost span's name. See [`crate::log_format`].
    Json,
}

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A level or `RUST_LOG`-style directives.
    pub level: String,
    /// Text or JSON.
    pub format: LogFormat,
    /// Also append to this file.
    pub file: Option<PathBuf>,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The level string is not valid.
    #[error("invalid log level: {0}")]
    Level(String),
    /// The log file cannot be opened.
    #[error("cannot open log file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A global subscriber is already installed.
    #[error("logging is already initialised in this process")]
    AlreadyInitialised,
}

/// Parses a level or directive list, with a message that says what is allowed.
pub fn parse_level(level: &str) -> Result<EnvFilter, String> {
    let trimmed = level.trim();
    if trimmed.is_empty() {
        return Err("must not be empty (use error, warn, info, debug or trace)".into());
    }
    // A bare word must be a level; EnvFilter would otherwise read it as a target name.
    let is_directive = trimmed.contains(['=', ',', ':', '[']);
    if !is_directive
        && !matches!(
            trimmed.to_ascii_lowercase().as_str(),
            "error" | "warn" | "info" | "debug" | "trace" | "off"
        )
    {
        return Err(format!(
            "{trimmed:?} is not a log level (use error, warn, info, debug, trace, or directives like info,dawn_core=debug)"
        ));
    }
    EnvFilter::builder()
        .parse(trimmed)
        .map_err(|e| format!("{trimmed:?} is not a valid filter: {e}"))
}

/// When the log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogRotation {
    /// Never: the file grows (rotate it externally, e.g. with logrotate's
    /// `copytruncate`).
    #[default]
    Never,
    /// At the first write of each new UTC day.
    Daily,
    /// When a write would take the file past this many bytes.
    Size(u64),
}

impl std::fmt::Display for LogRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogRotation::Never => f.write_str("never"),
            LogRotation::Daily => f.write_str("daily"),
            LogRotation::Size(b) => f.write_str(&crate::units::format_size(*b)),
        }
    }
}

impl std::str::FromStr for LogRotation {
    type Err = String;

    /// `never`, `daily`, or a size such as `100MiB`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "never" | "" => Ok(LogRotation::Never),
            "daily" => Ok(LogRotation::Daily),
            other => match crate::units::parse_size(other) {
                Ok(0) => Err("a rotation size must be more than 0 bytes".into()),
                Ok(b) => Ok(LogRotation::Size(b)),
                Err(_) => Err(format!(
                    "{other:?} is not a rotation (use never, daily, or a size such as 100MiB)"
                )),
            },
        }
    }
}

impl Serialize for LogRotation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LogRotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Rotation settings of the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFileOptions {
    /// When to rotate.
    pub rotation: LogRotation,
    /// Rotated files kept besides the current one (`dawn.log.1` ..
    /// `dawn.log.<keep>`); 0 deletes the old file at rotation.
    pub keep: usize,
}

impl Default for LogFileOptions {
    /// No rotation; 7 files kept once rotation is turned on.
    fn default() -> Self {
        LogFileOptions {
            rotation: LogRotation::Never,
            keep: 7,
        }
    }
}

fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400
}

/// The path of the `n`th rotated file: `dawn.log` → `dawn.log.1`.
fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(format!(".{n}"));
    PathBuf::from(os)
}

#[derive(Debug)]
struct RotatingState {
    file: File,
    size: u64,
    day: u64,
}

/// An append-only log file that rotates itself; usable as a
/// `tracing_subscriber` writer. Clones share the file.
#[derive(Debug, Clone)]
pub struct RotatingFile {
    path: PathBuf,
    options: LogFileOptions,
    state: Arc<Mutex<RotatingState>>,
}

impl RotatingFile {
    /// Opens (creating parent directories) `path` for appending.
    pub fn open(path: impl Into<PathBuf>, options: LogFileOptions) -> std::io::Result<Self> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let meta = file.metadata()?;
        let day = meta
            .modified()
            .map(utc_day)
            .unwrap_or_else(|_| utc_day(SystemTime::now()));
        Ok(RotatingFile {
            path,
            options,
            state: Arc::new(Mutex::new(RotatingState {
                file,
                size: meta.len(),
                day,
            })),
        })
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, buf: &[u8], now: SystemTime) -> std::io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let today = utc_day(now);
        let rotate = state.size > 0
            && match self.options.rotation {
                LogRotation::Never => false,
                LogRotation::Daily => today != state.day,
                LogRotation::Size(max) => state.size.saturating_add(buf.len() as u64) > max,
            };
        if rotate && let Err(e) = self.rotate(&mut state) {
            // Keep logging into the current file; say why once per attempt.
            let _ = writeln!(
                std::io::stderr(),
                "dawn: cannot rotate log file {}: {e}",
                self.path.display()
            );
        }
        state.day = today;
        let n = state.file.write(buf)?;
        state.size = state.size.saturating_add(n as u64);
        Ok(n)
    }

    fn rotate(&self, state: &mut RotatingState) -> std::io::Result<()> {
        state.file.flush()?;
        let keep = self.options.keep;
        if keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let oldest = rotated_path(&self.path, keep);
            if oldest.exists() {
                std::fs::remove_file(&oldest)?;
            }
            for n in (1..keep).rev() {
                let from = rotated_path(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        }
        state.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        state.size = 0;
        Ok(())
    }
}

impl std::io::Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_at(buf, SystemTime::now())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .file
            .flush()
    }
}

impl<'a> fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Sets the `node_id` written on every JSON log line that has none from its
/// spans. The first call in a process wins (a process normally runs one
/// node); returns whether this call set it.
pub fn set_node_id(node_id: &str) -> bool {
    crate::log_format::NODE_ID.set(node_id.to_owned()).is_ok()
}

/// Installs the process-wide subscriber: stderr, plus the file if set (never
/// rotated; see [`init_with`]).
pub fn init(settings: &LogSettings) -> Result<(), LoggingError> {
    init_with(settings, LogFileOptions::default())
}

/// Like [`init`], rotating the log file as `file_options` says.
pub fn init_with(settings: &LogSettings, file_options: LogFileOptions) -> Result<(), LoggingError> {
    let filter = parse_level(&settings.level).map_err(LoggingError::Level)?;
    let file =
        match &settings.file {
            Some(path) => Some(RotatingFile::open(path, file_options).map_err(|source| {
                LoggingError::File {
                    path: path.clone(),
                    source,
                }
            })?),
            None => None,
        };
    let (stderr_layer, file_layer) = match settings.format {
        LogFormat::Text => (
            fmt::layer()
                .fmt_fields(RedactingTextFields)
                .with_writer(std::io::stderr)
                .boxed(),
            file.map(|w| {
                fmt::layer()
                    .fmt_fields(RedactingTextFields)
                    .with_ansi(false)
                    .with_writer(w)
                    .boxed()
            }),
        ),
        LogFormat::Json => (
            fmt::layer()
                .fmt_fields(RedactingJsonFields)
                .event_format(FlatJson)
                .with_writer(std::io::stderr)
                .boxed(),
            file.map(|w| {
                fmt::layer()
                    .fmt_fields(RedactingJsonFields)
                    .event_format(FlatJson)
                    .with_writer(w)
                    .boxed()
            }),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr_layer)
        .with(file_layer)
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn levels() {
        for ok in [
            "info",
            "DEBUG",
            "warn,dawn_core=trace",
            "dawn_transport=debug",
        ] {
            assert!(parse_level(ok).is_ok(), "{ok}");
        }
        for bad in ["", "loud", "info,dawn_core=shouty"] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_parses() {
        assert_eq!("never".parse::<LogRotation>(), Ok(LogRotation::Never));
        assert_eq!("daily".parse::<LogRotation>(), Ok(LogRotation::Daily));
        assert_eq!(
            "100MiB".parse::<LogRotation>(),
            Ok(LogRotation::Size(100 << 20))
        );
        assert!("0".parse::<LogRotation>().is_err());
        assert!("hourly".parse::<LogRotation>().is_err());
        for r in [
            LogRotation::Never,
            LogRotation::Daily,
            LogRotation::Size(5 << 20),
        ] {
            assert_eq!(r.to_string().parse::<LogRotation>(), Ok(r));
        }
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn size_rotation_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/dawn.log");
        let options = LogFileOptions {
            rotation: LogRotation::Size(10),
            keep: 2,
        };
        let mut f = RotatingFile::open(&path, options).unwrap();
        for line in ["aaaaaaaa\n", "bbbbbbbb\n", "cccccccc\n", "dddddddd\n"] {
            f.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "dddddddd\n");
        assert_eq!(read(&rotated_path(&path, 1)), "cccccccc\n");
        assert_eq!(read(&rotated_path(&path, 2)), "bbbbbbbb\n");
        assert!(!rotated_path(&path, 3).exists(), "only `keep` old files");
        // A line larger than the limit still goes into a fresh file whole.
        f.write_all(&[b'x'; 30]).unwrap();
        assert_eq!(read(&path).len(), 30);
        // Reopening continues the current file's size accounting.
        let mut g = RotatingFile::open(&path, options).unwrap();
        g.write_all(b"y\n").unwrap();
        assert_eq!(read(&path), "y\n");
    }

    #[test]
    fn daily_rotation_starts_a_file_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.log");
        let f = RotatingFile::open(
            &path,
            LogFileOptions {
                rotation: LogRotation::Daily,
                keep: 3,
            },
        )
        .unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let t0 = SystemTime::now();
        f.write_at(b"today\n", t0).unwrap();
        f.write_at(b"today again\n", t0).unwrap();
        f.write_at(b"tomorrow\n", t0 + day).unwrap();
        assert_eq!(read(&path), "tomorrow\n");
        assert_eq!(read(&rotated_path(&path, 1)), "today\ntoday again\n");
        f.write_at(b"later\n", t0 + day * 3).unwrap();
        assert_eq!(read(&rotated_path(&path, 2)), "today\ntoday again\n");
        assert_eq!(read(&rotated_path(&path, 1)), "tomorrow\n");
        assert_eq!(read(&path), "later\n");
    }
}
