//! Layering config sources with figment and turning its errors into messages
//! that name the key, the bad value and where it came from.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use serde::Serialize;
use serde_saphyr::figment::Yaml;

use super::{DawnConfig, expand_home};

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The dotted key, e.g. `api.listen`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// Where the value came from (file, environment variable, flag), if known.
    pub source: Option<String>,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A file that does not parse has no key to name.
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file does not exist or cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The config file's extension is not `.toml`, `.yaml` or `.yml`.
    #[error("config file {0} must end in .toml, .yaml or .yml")]
    UnknownFormat(PathBuf),
    /// One or more values are invalid.
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// Builds a [`DawnConfig`] from layered sources.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    flags: Vec<(String, String, Value)>,
}

/// A figment provider for one layer of already-collected values.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn nest_into(dict: &mut Dict, key: &str, value: Value) {
    if let Some(nested) = figment::util::nest(key, value).into_dict() {
        *dict = std::mem::take(dict).merge(nested);
    }
}

trait DictMerge {
    fn merge(self, other: Dict) -> Dict;
}

impl DictMerge for Dict {
    fn merge(mut self, other: Dict) -> Dict {
        for (k, v) in other {
            match (self.remove(&k), v) {
                (Some(Value::Dict(_, a)), Value::Dict(tag, b)) => {
                    self.insert(k, Value::Dict(tag, a.merge(b)));
                }
                (_, v) => {
                    self.insert(k, v);
                }
            }
        }
        self
    }
}

/// The environment variable for a dotted key: `api.listen` -> `DAWN_API__LISTEN`.
pub(crate) fn env_var_name(key: &str) -> String {
    format!("DAWN_{}", key.replace('.', "__").to_ascii_uppercase())
}

impl ConfigLoader {
    /// Starts from the embedded defaults only.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Adds a config file (TOML or YAML by extension).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Uses the given environment variables (tests pass their own).
    pub fn env_vars(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// Uses this process's environment.
    pub fn process_env(self) -> Self {
        self.env_vars(std::env::vars())
    }

    /// Overrides one key, as a command-line flag does.
    pub fn set(self, key: &str, value: impl Serialize) -> Self {
        let flag = format!("--{key}");
        self.set_flag(key, &flag, value)
    }

    /// Overrides one key from a named command-line flag (the name appears
    /// in error messages).
    pub fn set_flag(mut self, key: &str, flag: &str, value: impl Serialize) -> Self {
        match Value::serialize(value) {
            Ok(v) => self.flags.push((key.to_owned(), flag.to_owned(), v)),
            Err(e) => tracing::warn!(key, error = %e, "ignoring an unserializable override"),
        }
        self
    }

    /// Loads, merges, deserializes and validates.
    pub fn load(self) -> Result<DawnConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(DawnConfig::default()));
        if let Some(path) = &self.file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.clone(),
                    reason: if path.exists() {
                        "not a regular file".into()
                    } else {
                        "no such file".into()
                    },
                });
            }
            if let Err(e) = std::fs::File::open(path) {
                return Err(ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                });
            }
            figment = match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => figment.merge(Toml::file_exact(path)),
                Some("yaml" | "yml") => figment.merge(Yaml::file_exact(path)),
                _ => return Err(ConfigError::UnknownFormat(path.clone())),
            };
        }

        // Environment: RUST_LOG < LOG_LEVEL/LOG_FORMAT < DAWN_*.
        let mut rust_log = Dict::new();
        let mut log_aliases: Vec<Layer> = Vec::new();
        let mut dawn = Dict::new();
        for (name, value) in &self.env {
            match name.as_str() {
                "RUST_LOG" => nest_into(&mut rust_log, "logging.level", Value::from(value.clone())),
                "LOG_LEVEL" | "LOG_FORMAT" => {
                    let key = if name == "LOG_LEVEL" {
                        "logging.level"
                    } else {
                        "logging.format"
                    };
                    let mut dict = Dict::new();
                    nest_into(&mut dict, key, Value::from(value.clone()));
                    log_aliases.push(Layer {
                        metadata: Metadata::named(format!("environment variable {name}")),
                        dict,
                    });
                }
                _ => {
                    // Only DAWN_<SECTION>__<KEY> names are config keys; other
                    // DAWN_ variables (e.g. DAWN_PASSPHRASE) are not.
                    let Some(rest) = name.strip_prefix("DAWN_") else {
                        continue;
                    };
                    if !rest.contains("__") {
                        continue;
                    }
                    let key = rest.to_ascii_lowercase().replace("__", ".");
                    let parsed: Value =
                        value.parse().unwrap_or_else(|_| Value::from(value.clone()));
                    nest_into(&mut dawn, &key, parsed);
                }
            }
        }
        if !rust_log.is_empty() {
            figment = figment.merge(Layer {
                metadata: Metadata::named("environment variable RUST_LOG"),
                dict: rust_log,
            });
        }
        for layer in log_aliases {
            figment = figment.merge(layer);
        }
        if !dawn.is_empty() {
            figment = figment.merge(Layer {
                metadata: Metadata::named("environment variable").interpolater(
                    |_profile: &Profile, keys: &[&str]| env_var_name(&keys.join(".")),
                ),
                dict: dawn,
            });
        }
        for (key, flag, value) in self.flags {
            let mut dict = Dict::new();
            nest_into(&mut dict, &key, value);
            figment = figment.merge(Layer {
                metadata: Metadata::named(format!("command-line flag {flag}")),
                dict,
            });
        }

        let mut config: DawnConfig = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(issues_from(e)))?;
        config.node.data_root = expand_home(std::mem::take(&mut config.node.data_root));
        config.backup.dir = config.backup.dir.take().map(expand_home);
        if let Some(file) = config.logging.file.take() {
            config.logging.file = Some(expand_home(file));
        }
        let mut issues = config.validate();
        for issue in &mut issues {
            if let Some(md) = figment.find_metadata(&issue.key) {
                let path: Vec<String> = issue.key.split('.').map(str::to_owned).collect();
                issue.source = Some(describe_source(md, &path));
            }
        }
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }
}

fn issues_from(error: figment::Error) -> Vec<ConfigIssue> {
    error
        .into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            let message = match &e.kind {
                figment::error::Kind::UnknownField(field, expected) => {
                    if path.last() != Some(field) {
                        path.push(field.clone());
                    }
                    format!(
                        "unknown key (allowed here: {})",
                        expected
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                figment::error::Kind::InvalidType(actual, expected) => {
                    format!("{actual} is not {expected}")
                }
                figment::error::Kind::InvalidValue(actual, expected) => {
                    format!("{actual} is not {expected}")
                }
                figment::error::Kind::UnknownVariant(variant, expected) => format!(
                    "{variant:?} is not allowed (use one of: {})",
                    expected.join(", ")
                ),
                other => other.to_string(),
            };
            let source = e.metadata.as_ref().map(|md| describe_source(md, &path));
            ConfigIssue {
                key: path.join("."),
                message,
                source,
            }
        })
        .collect()
}

fn describe_source(md: &Metadata, path: &[String]) -> String {
    match &md.source {
        Some(figment::Source::File(file)) => format!("config file {}", display(file)),
        _ if md.name == "environment variable" => {
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            format!("{} {}", md.name, md.interpolate(&Profile::Default, &keys))
        }
        _ if md.name.starts_with("Serialized") => "defaults".into(),
        _ => md.name.to_string(),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
