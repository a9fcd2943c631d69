//! Asking for a passphrase on the terminal, without echo.
//!
//! The prompt goes to stderr and the answer is read from stdin with the
//! terminal's echo turned off (and back on afterwards, also on error). Only
//! for binaries run by a person: check [`can_prompt`] first.

use std::io::{self, BufRead as _, Write as _};

use rustix::termios::{LocalModes, OptionalActions, isatty, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use crate::passphrase::{MIN_NEW_PASSPHRASE_CHARS, Passphrase, PassphraseError};

/// Whether stdin is a terminal, so that a passphrase can be asked for.
pub fn can_prompt() -> bool {
    isatty(io::stdin())
}

/// Turns echo back on when dropped.
struct EchoGuard {
    saved: Option<rustix::termios::Termios>,
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = tcsetattr(io::stdin(), OptionalActions::Now, &saved);
        }
    }
}

fn read_hidden(prompt: &str) -> Result<Zeroizing<String>, PassphraseError> {
    let mut stderr = io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let stdin = io::stdin();
    let guard = match tcgetattr(&stdin) {
        Ok(saved) => {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            quiet.local_modes.insert(LocalModes::ECHONL);
            tcsetattr(&stdin, OptionalActions::Now, &quiet)
                .map_err(|e| PassphraseError::Prompt(e.into()))?;
            EchoGuard { saved: Some(saved) }
        }
        Err(_) => EchoGuard { saved: None },
    };
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    drop(guard);
    read.map_err(PassphraseError::Prompt)?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Asks for an existing passphrase once.
pub fn prompt_passphrase(prompt: &str) -> Result<Passphrase, PassphraseError> {
    let text = read_hidden(prompt)?;
    Passphrase::new(text.as_str().to_owned())
}

/// Asks for a new passphrase twice; fails if the two differ or the
/// passphrase is shorter than [`MIN_NEW_PASSPHRASE_CHARS`].
pub fn prompt_new_passphrase(prompt: &str) -> Result<Passphrase, PassphraseError> {
    let first = read_hidden(prompt)?;
    if first.chars().count() < MIN_NEW_PASSPHRASE_CHARS {
        return Err(PassphraseError::TooShort {
            min_chars: MIN_NEW_PASSPHRASE_CHARS,
        });
    }
    let second = read_hidden("Repeat it: ")?;
    if *first != *second {
        return Err(PassphraseError::Mismatch);
    }
    Passphrase::new(first.as_str().to_owned())
}
