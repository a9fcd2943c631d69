//! The layout of a node's data directory and the files in it.
//!
//! ```text
//! <data_root>/            mode 0700
//!   node.key              node identity (0600)
//!   api.token             bearer token for the HTTP API (0600)
//!   dawn.redb             the database
//!   node.lock             held (flock) while a node runs; contains its pid
//!   api.addr              the HTTP API's actual address while the node runs
//!   audit/                the security audit log (0700; JSON Lines, 0600)
//!   backups/              backup archives, unless backup.dir is set (see docs/backup.md)
//! ```

use std::{
    fs::File,
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// File names inside the data directory.
pub const NODE_KEY_FILE: &str = dawn_security::NODE_KEY_FILE;
/// The API token file.
pub const API_TOKEN_FILE: &str = dawn_security::API_TOKEN_FILE;
/// The database file.
pub const DATABASE_FILE: &str = "dawn.redb";
/// The lock file.
pub const LOCK_FILE: &str = "node.lock";
/// The file holding the running API's address.
pub const API_ADDR_FILE: &str = "api.addr";

/// Paths of one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// Data directory problems.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error(
        "data directory {root} is in use by another dawn-node{pid}; stop it first or use another --data-root",
        pid = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked {
        /// The directory.
        root: PathBuf,
        /// The pid recorded by the other process, if readable.
        pid: Option<u32>,
    },
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating the directory failed.
    #[error(transparent)]
    Create(#[from] dawn_security::SecretFileError),
}

/// Held while the node runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    api_addr: PathBuf,
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.api_addr);
    }
}

impl DataDir {
    /// A data directory at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `node.key`
    pub fn node_key(&self) -> PathBuf {
        self.root.join(NODE_KEY_FILE)
    }

    /// `api.token`
    pub fn api_token(&self) -> PathBuf {
        self.root.join(API_TOKEN_FILE)
    }

    /// `dawn.redb`
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }

    /// `node.lock`
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// `api.addr`
    pub fn api_addr_file(&self) -> PathBuf {
        self.root.join(API_ADDR_FILE)
    }

    /// `audit/`: the security audit log.
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join(dawn_security::AUDIT_DIR)
    }

    /// Creates the directory (0700) if needed.
    pub fn ensure(&self) -> Result<(), DataDirError> {
        dawn_security::ensure_private_dir(&self.root)?;
        Ok(())
    }

    /// Takes the exclusive lock, failing if another node holds it.
    pub fn lock(&self) -> Result<DataDirLock, DataDirError> {
        let path = self.lock_file();
        let io = |action, source| DataDirError::Io {
            action,
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                return Err(DataDirError::Locked {
                    root: self.root.clone(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", e)),
        }
        file.set_len(0).map_err(|e| io("write", e))?;
        write!(file, "{}", std::process::id()).map_err(|e| io("write", e))?;
        Ok(DataDirLock {
            _file: file,
            api_addr: self.api_addr_file(),
        })
    }

    /// Whether a running node holds the directory.
    pub fn is_locked(&self) -> bool {
        let Ok(file) = File::open(self.lock_file()) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// Records the API address (atomically, so readers never see half of it).
    pub fn write_api_addr(&self, addr: SocketAddr) -> Result<(), DataDirError> {
        let path = self.api_addr_file();
        let tmp = self.root.join(format!(".{API_ADDR_FILE}.tmp"));
        std::fs::write(&tmp, format!("{addr}\n")).map_err(|source| DataDirError::Io {
            action: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| DataDirError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// The address a running node's API listens on, if recorded.
    pub fn read_api_addr(&self) -> Option<SocketAddr> {
        std::fs::read_to_string(self.api_addr_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("d"));
        data.ensure().unwrap();
        let lock = data.lock().unwrap();
        assert!(data.is_locked());
        let err = data.lock().unwrap_err();
        assert!(
            err.to_string().contains("in use by another dawn-node"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        data.write_api_addr("127.0.0.1:1234".parse().unwrap())
            .unwrap();
        assert_eq!(
            data.read_api_addr(),
            Some("127.0.0.1:1234".parse().unwrap())
        );
        drop(lock);
        assert!(!data.is_locked());
        assert_eq!(
            data.read_api_addr(),
            None,
            "api.addr is removed when the node stops"
        );
        data.lock().unwrap();
    }
}
