//! The passphrase that unlocks an encrypted node key.
//!
//! A [`Passphrase`] comes from an environment variable
//! ([`PASSPHRASE_ENV`] by convention), from a file that only its owner can
//! read, or from text a binary read interactively ([`Passphrase::new`]). It is
//! wiped from memory when dropped and never printed: `Debug` shows
//! `Passphrase(<redacted>)` and there is no `Display`.
//!
//! The bytes are the UTF-8 text exactly as given (no Unicode normalisation);
//! only a file's trailing line ending is removed. An empty passphrase is
//! refused everywhere; a new passphrase (for encrypting) must also have at
//! least [`MIN_NEW_PASSPHRASE_CHARS`] characters.
//!
//! `from_file` blocks on file I/O.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret_file::{self, SecretFileError};

/// The environment variable binaries read the key passphrase from.
pub const PASSPHRASE_ENV: &str = "DAWN_PASSPHRASE";

/// The fewest characters a passphrase used to encrypt a key may have.
pub const MIN_NEW_PASSPHRASE_CHARS: usize = 8;

/// Why a passphrase could not be obtained. Never contains the passphrase.
#[derive(Debug, Error)]
pub enum PassphraseError {
    /// The environment variable is not set.
    #[error("environment variable {var} is not set")]
    EnvNotSet {
        /// The variable.
        var: String,
    },
    /// The environment variable is not valid Unicode.
    #[error("environment variable {var} is not valid UTF-8 text")]
    EnvNotUnicode {
        /// The variable.
        var: String,
    },
    /// The passphrase file could not be read, or other users can read it.
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// The passphrase file is not UTF-8 text.
    #[error("passphrase file {} is not UTF-8 text", path.display())]
    FileNotUnicode {
        /// The file.
        path: PathBuf,
    },
    /// The passphrase is empty.
    #[error("the passphrase from {source_name} is empty")]
    Empty {
        /// Where it came from: "environment variable X", "file Y", "input".
        source_name: String,
    },
    /// The terminal could not be read.
    #[error("cannot read the passphrase from the terminal: {0}")]
    Prompt(std::io::Error),
    /// The two entries of a new passphrase differ.
    #[error("the two passphrases do not match; nothing was changed")]
    Mismatch,
    /// A new passphrase is too short.
    #[error("the new passphrase is too short: use at least {min_chars} characters")]
    TooShort {
        /// The minimum.
        min_chars: usize,
    },
}

/// A passphrase for an encrypted key file. Wiped on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct Passphrase {
    text: Zeroizing<String>,
}

impl Passphrase {
    /// Wraps a passphrase a binary obtained itself (for example from an
    /// interactive prompt). Refuses an empty one.
    pub fn new(text: String) -> Result<Self, PassphraseError> {
        Self::checked(Zeroizing::new(text), || "input".to_owned())
    }

    /// Reads the passphrase from environment variable `var` (for example
    /// [`PASSPHRASE_ENV`]). The value is used exactly as set.
    pub fn from_env(var: &str) -> Result<Self, PassphraseError> {
        match std::env::var(var) {
            Ok(text) => Self::checked(Zeroizing::new(text), || {
                format!("environment variable {var}")
            }),
            Err(std::env::VarError::NotPresent) => Err(PassphraseError::EnvNotSet {
                var: var.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(PassphraseError::EnvNotUnicode {
                var: var.to_owned(),
            }),
        }
    }

    /// Reads the passphrase from a file, which like every secret file must not
    /// be readable or writable by group or others (`chmod 600`). One trailing
    /// line ending (`\n` or `\r\n`) is removed; any other whitespace is part of
    /// the passphrase. Blocks on file I/O.
    pub fn from_file(path: &Path) -> Result<Self, PassphraseError> {
        let bytes = secret_file::read_secret_file(path)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| PassphraseError::FileNotUnicode {
            path: path.to_path_buf(),
        })?;
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        Self::checked(Zeroizing::new(text.to_owned()), || {
            format!("file {}", path.display())
        })
    }

    /// The passphrase's bytes, for key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The passphrase's length in characters.
    pub(crate) fn char_count(&self) -> usize {
        self.text.chars().count()
    }

    fn checked(
        text: Zeroizing<String>,
        source_name: impl FnOnce() -> String,
    ) -> Result<Self, PassphraseError> {
        if text.is_empty() {
            return Err(PassphraseError::Empty {
                source_name: source_name(),
            });
        }
        Ok(Passphrase { text })
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let passphrase = Passphrase::new("hunter2-but-longer".to_owned()).unwrap();
        let debug = format!("{passphrase:?}");
        assert_eq!(debug, "Passphrase(<redacted>)");
        assert!(!debug.contains("hunter2"));
    }

    #[test]
    fn empty_is_refused() {
        let error = Passphrase::new(String::new()).unwrap_err();
        assert_eq!(error.to_string(), "the passphrase from input is empty");
    }

    #[test]
    fn missing_env_var_is_named() {
        let error = Passphrase::from_env("DAWN_TEST_PASSPHRASE_THAT_IS_NOT_SET").unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable DAWN_TEST_PASSPHRASE_THAT_IS_NOT_SET is not set"
        );
    }

    #[test]
    fn env_var_is_used_exactly_as_set() {
        // PATH is set in any environment that runs tests; setting a variable
        // would need `unsafe` (Rust 2024), which this crate forbids.
        if let Ok(path) = std::env::var("PATH")
            && !path.is_empty()
        {
            let passphrase = Passphrase::from_env("PATH").unwrap();
            assert_eq!(passphrase.as_bytes(), path.as_bytes());
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let passphrase = Passphrase::new("ééé".to_owned()).unwrap();
        assert_eq!(passphrase.char_count(), 3);
        assert_eq!(passphrase.as_bytes().len(), 6);
    }
}
