//! The bearer token that guards a node's HTTP API (admin and MCP endpoints).
//!
//! A token is `dawn_` followed by 64 lowercase hex characters (32 random
//! bytes); the prefix lets secret scanners recognise a leaked token. It is
//! stored in a `0600` file (`api.token`) as the token plus a newline, which
//! local clients such as `dawn-cli` read to build their `Authorization`
//! header.
//!
//! Comparison is constant time: the token is never compared byte by byte.
//! Each [`ApiToken`] holds an HMAC-SHA256 tag of the token under a random
//! per-instance key, and [`ApiToken::verify`] checks a presented value with
//! `ring::hmac::verify`, which computes the presented value's tag and compares
//! tags in constant time. (`ring::constant_time::verify_slices_are_equal` is
//! deprecated in ring 0.17.) Time then depends only on the presented value's
//! length, which the presenter already knows.
//!
//! Loading, creating and rotating block on file I/O; async callers should
//! use `tokio::task::spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret_file::{self, SecretFileError};

/// Default file name of the API token inside the data directory.
pub const API_TOKEN_FILE: &str = "api.token";

/// Prefix of every Dawn API token.
pub const API_TOKEN_PREFIX: &str = "dawn_";

/// Number of random bytes in a token (hex-encoded after the prefix).
const TOKEN_RANDOM_BYTES: usize = 32;

/// An error loading, creating or rotating an API token.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The token file could not be read or written: missing, exposed to other
    /// users (`chmod 600`), or an I/O failure. The message names the file.
    #[error(transparent)]
    File(#[from] SecretFileError),

    /// The token file does not hold a well-formed Dawn token.
    #[error(
        "API token file {} is malformed ({reason}); it was not modified. \
         Rotate the token to replace it (clients will need the new token)",
        path.display()
    )]
    Malformed {
        /// The token file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A token given as text (not read from a file) is malformed.
    #[error("API token is malformed ({reason})")]
    Invalid {
        /// What is wrong with it (never the token itself).
        reason: String,
    },

    /// The operating system's random number generator failed.
    #[error("cannot generate an API token: the system random number generator failed")]
    Random,
}

/// A node's API bearer token.
///
/// `Debug` prints `ApiToken(<redacted>)`. There is deliberately no
/// `PartialEq`: use [`ApiToken::verify`].
#[derive(Clone)]
pub struct ApiToken {
    token: Zeroizing<String>,
    tag_key: hmac::Key,
    tag: hmac::Tag,
}

impl ApiToken {
    /// Generates a new random token (not written anywhere).
    pub fn generate() -> Result<Self, TokenError> {
        let mut random = Zeroizing::new([0u8; TOKEN_RANDOM_BYTES]);
        SystemRandom::new()
            .fill(random.as_mut_slice())
            .map_err(|_| TokenError::Random)?;
        let mut token = Zeroizing::new(String::with_capacity(
            API_TOKEN_PREFIX.len() + 2 * TOKEN_RANDOM_BYTES,
        ));
        token.push_str(API_TOKEN_PREFIX);
        token.push_str(&Zeroizing::new(hex::encode(random.as_slice())));
        Self::from_token(token)
    }

    /// Parses a token string, e.g. one given on a command line or in an
    /// environment variable. Surrounding whitespace is ignored. The error
    /// text says what is wrong without echoing the value.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let token = text.trim();
        check_format(token).map_err(|reason| TokenError::Invalid { reason })?;
        Self::from_token(Zeroizing::new(token.to_owned()))
    }

    /// Reads the token from an existing token file (surrounding whitespace is
    /// ignored). Fails, without touching the file, if it is missing, readable
    /// or writable by group or others, or malformed.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let bytes = secret_file::read_secret_file(path)?;
        let malformed = |reason: String| TokenError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| malformed("the file is not UTF-8 text".to_owned()))?;
        let token = text.trim();
        check_format(token).map_err(malformed)?;
        Self::from_token(Zeroizing::new(token.to_owned()))
    }

    /// Loads the token from `path`, or creates a new one there if no file
    /// exists; the `bool` is `true` when the token was created. Any other
    /// problem with an existing file is an error; the file is never replaced.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), TokenError> {
        match Self::load(path) {
            Ok(token) => Ok((token, false)),
            Err(TokenError::File(SecretFileError::NotFound { .. })) => {
                let token = Self::generate()?;
                prepare_dir(path)?;
                match secret_file::create_secret_file(path, &token.file_contents()) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "created new API token");
                        Ok((token, true))
                    }
                    // Another process created it between our load and create.
                    Err(SecretFileError::AlreadyExists { .. }) => Ok((Self::load(path)?, false)),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Generates a new token and atomically replaces the file at `path` with
    /// it (creating the file, and its directory with mode `0700`, if absent).
    /// The old token stops being valid for anyone who reloads the file.
    pub fn rotate(path: &Path) -> Result<Self, TokenError> {
        let token = Self::generate()?;
        prepare_dir(path)?;
        secret_file::write_secret_file(path, &token.file_contents())?;
        tracing::info!(path = %path.display(), "rotated API token");
        Ok(token)
    }

    /// The token text, for building an `Authorization: Bearer` header in a
    /// client. Do not log it.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        hmac::verify(&self.tag_key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`. The
    /// scheme is case-insensitive; spaces between scheme and token and
    /// around the value are ignored.
    pub fn verify_bearer_header(&self, header_value: &str) -> bool {
        let Some((scheme, credentials)) = header_value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.verify(credentials.trim_start_matches(' '))
    }

    fn from_token(token: Zeroizing<String>) -> Result<Self, TokenError> {
        let tag_key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| TokenError::Random)?;
        let tag = hmac::sign(&tag_key, token.as_bytes());
        Ok(Self {
            token,
            tag_key,
            tag,
        })
    }

    /// What the token file holds: the token and a newline.
    fn file_contents(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(self.token.len() + 1));
        bytes.extend_from_slice(self.token.as_bytes());
        bytes.push(b'\n');
        bytes
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Checks that `token` is `dawn_` plus 64 lowercase hex characters. Errors
/// never echo the value.
fn check_format(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("it is empty".to_owned());
    }
    let Some(random) = token.strip_prefix(API_TOKEN_PREFIX) else {
        return Err(format!(
            "the token does not start with {API_TOKEN_PREFIX:?}"
        ));
    };
    if random.len() != 2 * TOKEN_RANDOM_BYTES {
        return Err(format!(
            "the token has {} characters after {API_TOKEN_PREFIX:?}, expected {}",
            random.len(),
            2 * TOKEN_RANDOM_BYTES
        ));
    }
    if !random
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!(
            "the token has characters other than lowercase hex after {API_TOKEN_PREFIX:?}"
        ));
    }
    Ok(())
}

/// Creates the token file's directory (mode `0700`) if it is missing.
fn prepare_dir(path: &Path) -> Result<(), SecretFileError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => secret_file::ensure_private_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_shape() {
        let token = ApiToken::generate().unwrap();
        let text = token.as_str();
        assert!(text.starts_with("dawn_"), "{text}");
        assert_eq!(text.len(), 5 + 64);
        assert!(check_format(text).is_ok());
        assert_ne!(text, ApiToken::generate().unwrap().as_str());
    }

    #[test]
    fn verify_is_exact() {
        let token = ApiToken::generate().unwrap();
        let text = token.as_str().to_owned();
        assert!(token.verify(&text));
        assert!(!token.verify(""));
        assert!(!token.verify(&text[..text.len() - 1]));
        assert!(!token.verify(&format!("{text}0")));
        assert!(!token.verify(&format!(" {text}")));
        assert!(!token.verify(&text.to_uppercase()));
        let mut flipped = text.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(!token.verify(std::str::from_utf8(&flipped).unwrap()));
        // A clone verifies the same way.
        assert!(token.clone().verify(&text));
    }

    #[test]
    fn bearer_header_forms() {
        let token = ApiToken::generate().unwrap();
        let t = token.as_str().to_owned();
        for ok in [
            format!("Bearer {t}"),
            format!("bearer {t}"),
            format!("BEARER {t}"),
            format!("Bearer   {t}"),
            format!("  Bearer {t}  "),
        ] {
            assert!(token.verify_bearer_header(&ok), "{ok:?}");
        }
        for bad in [
            t.clone(),
            format!("Basic {t}"),
            format!("Bearer{t}"),
            "Bearer ".to_owned(),
            "Bearer".to_owned(),
            String::new(),
            format!("Bearer {}", &t[..t.len() - 1]),
            format!("Bearer {t} extra"),
            format!("Bearer\t{t}"),
        ] {
            assert!(!token.verify_bearer_header(&bad), "{bad:?}");
        }
    }

    #[test]
    fn parse_checks_format_without_echoing() {
        let token = ApiToken::generate().unwrap();
        let parsed = ApiToken::parse(&format!("  {}\n", token.as_str())).unwrap();
        assert!(parsed.verify(token.as_str()));

        let secretish = "dawn_not-hex-but-secret-looking-value-that-is-64-characters-long!!";
        for bad in ["", "   ", "abc", "dawn_", "dawn_abcd", secretish] {
            let err = ApiToken::parse(bad).unwrap_err();
            assert!(matches!(err, TokenError::Invalid { .. }), "{err}");
            assert!(!err.to_string().contains("secret-looking"), "{err}");
        }
        let upper = format!("dawn_{}", "A".repeat(64));
        assert!(ApiToken::parse(&upper).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let token = ApiToken::generate().unwrap();
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
        assert_eq!(format!("{token:#?}"), "ApiToken(<redacted>)");
    }
}
