//! Log output: level directives, text or JSON lines, optional file copy.

use std::{
    fs::OpenOptions,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tracing_subscriber::{
    EnvFilter, Layer as _, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (including `message`) and the fields of the enclosing spans.
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

#[derive(Clone)]
struct FileWriter(Arc<Mutex<std::fs::File>>);

impl std::io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl<'a> fmt::MakeWriter<'a> for FileWriter {
    type Writer = FileWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs the process-wide subscriber: stderr, plus the file if set.
pub fn init(settings: &LogSettings) -> Result<(), LoggingError> {
    let filter = parse_level(&settings.level).map_err(LoggingError::Level)?;
    let file = match &settings.file {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| LoggingError::File {
                    path: path.clone(),
                    source,
                })?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.clone(),
                    source,
                })?;
            Some(FileWriter(Arc::new(Mutex::new(f))))
        }
        None => None,
    };
    let (stderr_layer, file_layer) = match settings.format {
        LogFormat::Text => (
            fmt::layer().with_writer(std::io::stderr).boxed(),
            file.map(|w| fmt::layer().with_ansi(false).with_writer(w).boxed()),
        ),
        LogFormat::Json => (
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr)
                .boxed(),
            file.map(|w| {
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
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
}
