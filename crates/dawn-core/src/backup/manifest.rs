//! The archive manifest: what the archive holds, signed by the node key.

use std::collections::BTreeMap;
use std::path::Path;

use libp2p::identity::PublicKey;
use serde::{Deserialize, Serialize};

use super::BackupError;

/// The archive format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The value of [`Manifest::format`].
pub(crate) const FORMAT_NAME: &str = "dawn-backup";
/// The manifest's file name in the archive (always the first entry).
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// The signature's file name in the archive (always the second entry).
pub(crate) const SIGNATURE_FILE: &str = "manifest.sig";
/// The largest manifest or signature file read.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path in the archive (and, restored, in the data directory), `/`-separated.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// The head of the audit chain saved in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSummary {
    /// Records in the saved log.
    pub records: u64,
    /// The last record's hash (64 zeros for an empty log).
    pub last_hash: String,
}

/// What an archive holds and who made it. Serialized as `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `dawn-backup`.
    pub format: String,
    /// The archive format version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The node's peer id.
    pub node_id: String,
    /// The node's public key (libp2p protobuf encoding, hex); its peer id is `node_id` and it
    /// verifies `manifest.sig`.
    pub public_key: String,
    /// When the backup was made, RFC 3339 UTC.
    pub created: String,
    /// When the backup was made, unix milliseconds.
    pub created_ms: u64,
    /// The Dawn version that made it.
    pub dawn_version: String,
    /// The database schema version of the snapshot.
    pub schema_version: u32,
    /// Whether `node.key` is passphrase-encrypted.
    pub key_encrypted: bool,
    /// Rows per database table.
    pub tables: BTreeMap<String, u64>,
    /// The saved audit log's chain head, if the node had an audit log.
    pub audit: Option<AuditSummary>,
    /// Every other file of the archive, in archive order.
    pub files: Vec<FileEntry>,
}

/// The fields read before anything else, so that a newer format is reported as newer even if
/// the rest of its manifest changed shape.
#[derive(Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    #[serde(default)]
    dawn_version: Option<String>,
}

impl Manifest {
    /// Total size of the files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The entry of `path`, if listed.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Parses a manifest, first checking that it is a Dawn backup of a format and Dawn
    /// version this build can read.
    pub(crate) fn parse(archive: &Path, bytes: &[u8]) -> Result<Manifest, BackupError> {
        let header: Header = serde_json::from_slice(bytes).map_err(|e| BackupError::Damaged {
            archive: archive.to_path_buf(),
            file: MANIFEST_FILE.into(),
            detail: format!("not a valid manifest: {e}"),
        })?;
        if header.format != FORMAT_NAME {
            return Err(BackupError::NotABackup {
                archive: archive.to_path_buf(),
                detail: format!("its manifest is of format {:?}", header.format),
            });
        }
        if header.format_version > FORMAT_VERSION {
            return Err(BackupError::NewerVersion {
                archive: archive.to_path_buf(),
                what: "backup format",
                found: header.format_version.to_string(),
                supported: format!("up to {FORMAT_VERSION}"),
            });
        }
        if let Some(version) = &header.dawn_version
            && version_is_newer(version, crate::VERSION)
        {
            return Err(BackupError::NewerVersion {
                archive: archive.to_path_buf(),
                what: "Dawn version",
                found: version.clone(),
                supported: format!("up to {}", crate::VERSION),
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| BackupError::Damaged {
                archive: archive.to_path_buf(),
                file: MANIFEST_FILE.into(),
                detail: format!("not a valid manifest: {e}"),
            })?;
        if manifest.schema_version > dawn_store::SCHEMA_VERSION {
            return Err(BackupError::NewerVersion {
                archive: archive.to_path_buf(),
                what: "database schema",
                found: manifest.schema_version.to_string(),
                supported: format!("up to {}", dawn_store::SCHEMA_VERSION),
            });
        }
        Ok(manifest)
    }

    /// The manifest's public key, checked to belong to `node_id`.
    pub(crate) fn public_key(&self, archive: &Path) -> Result<PublicKey, BackupError> {
        let bad = |detail: String| BackupError::BadSignature {
            archive: archive.to_path_buf(),
            detail,
        };
        let bytes = hex::decode(&self.public_key)
            .map_err(|e| bad(format!("the manifest's public key is not hex ({e})")))?;
        let key = PublicKey::try_decode_protobuf(&bytes)
            .map_err(|e| bad(format!("the manifest's public key does not decode ({e})")))?;
        let peer_id = key.to_peer_id().to_string();
        if peer_id != self.node_id {
            return Err(bad(format!(
                "the manifest's public key belongs to {peer_id}, not to the node id {} it names",
                self.node_id
            )));
        }
        Ok(key)
    }

    /// Checks `signature` (hex) over the manifest's exact `bytes` with its public key.
    pub(crate) fn verify_signature(
        &self,
        archive: &Path,
        bytes: &[u8],
        signature: &[u8],
    ) -> Result<(), BackupError> {
        let key = self.public_key(archive)?;
        let text = std::str::from_utf8(signature).unwrap_or_default().trim();
        let signature = hex::decode(text).map_err(|_| BackupError::BadSignature {
            archive: archive.to_path_buf(),
            detail: format!("{SIGNATURE_FILE} does not hold a hex signature"),
        })?;
        if key.verify(bytes, &signature) {
            Ok(())
        } else {
            Err(BackupError::BadSignature {
                archive: archive.to_path_buf(),
                detail: format!(
                    "{SIGNATURE_FILE} does not match {MANIFEST_FILE} for node {}",
                    self.node_id
                ),
            })
        }
    }
}

/// Whether version `a` is newer than `b`, comparing the numeric `major.minor.patch` parts (a
/// pre-release suffix is ignored; missing parts count as 0).
pub(crate) fn version_is_newer(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Vec<u64> {
        v.trim()
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or_default()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    }
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_is_newer("0.10.0", "0.9.9"));
        assert!(version_is_newer("1.0.0", "0.99.0"));
        assert!(!version_is_newer("0.1.0", "0.1.0"));
        assert!(!version_is_newer("0.1.0-rc.1", "0.1.0"));
        assert!(!version_is_newer("0.0.9", "0.1.0"));
        assert!(version_is_newer("0.1.1", "0.1"));
    }
}
