//! Configuration: precedence of sources and every kind of validation error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use dawn_core::config::{ConfigError, ConfigLoader, KEYS};

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The single issue of an invalid config, as "key: message (from source)".
fn issue(result: Result<dawn_core::DawnConfig, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid(issues)) => {
            assert_eq!(issues.len(), 1, "{issues:?}");
            issues[0].to_string()
        }
        Err(other) => other.to_string(),
        Ok(c) => panic!("config unexpectedly valid: {c:?}"),
    }
}

#[test]
fn defaults_alone_are_valid() {
    let config = ConfigLoader::new().load().unwrap();
    assert_eq!(config.api.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(config.node.listen.len(), 2);
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "dawn.toml",
        "[api]\nlisten = \"127.0.0.1:1111\"\n[transport]\nconnect_timeout = 3\n[resilience.deadlines]\ndefault = \"7s\"\n[logging]\nlevel = \"warn\"\n",
    );
    // File only.
    let c = ConfigLoader::new().file(&file).load().unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:1111");
    assert_eq!(c.resilience.deadlines.default.0.as_secs(), 7);
    assert_eq!(c.transport.connect_timeout.0.as_secs(), 3);
    // Env beats file.
    let vars = env(&[
        ("DAWN_API__LISTEN", "127.0.0.1:2222"),
        ("LOG_LEVEL", "debug"),
    ]);
    let c = ConfigLoader::new()
        .file(&file)
        .env_vars(vars.clone())
        .load()
        .unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:2222");
    assert_eq!(c.logging.level, "debug");
    assert_eq!(
        c.resilience.deadlines.default.0.as_secs(),
        7,
        "untouched keys keep the file's value"
    );
    // Flag beats env.
    let c = ConfigLoader::new()
        .file(&file)
        .env_vars(vars)
        .set_flag("api.listen", "--api-listen", "127.0.0.1:3333")
        .load()
        .unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:3333");
    // DAWN_LOGGING__LEVEL beats LOG_LEVEL beats RUST_LOG.
    let c = ConfigLoader::new()
        .env_vars(env(&[("RUST_LOG", "trace"), ("LOG_LEVEL", "debug")]))
        .load()
        .unwrap();
    assert_eq!(c.logging.level, "debug");
    let c = ConfigLoader::new()
        .env_vars(env(&[
            ("RUST_LOG", "trace"),
            ("LOG_LEVEL", "debug"),
            ("DAWN_LOGGING__LEVEL", "error"),
        ]))
        .load()
        .unwrap();
    assert_eq!(c.logging.level, "error");
}

#[test]
fn yaml_files_work_and_lists_come_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "dawn.yaml",
        "node:\n  data_root: /srv/dawn\n  listen:\n    - /ip4/0.0.0.0/tcp/9000\napi:\n  enabled: false\n",
    );
    let c = ConfigLoader::new().file(&file).load().unwrap();
    assert_eq!(c.node.data_root, PathBuf::from("/srv/dawn"));
    assert_eq!(c.node.listen[0].to_string(), "/ip4/0.0.0.0/tcp/9000");
    assert!(!c.api.enabled);
    let c = ConfigLoader::new()
        .env_vars(env(&[(
            "DAWN_NODE__LISTEN",
            "[\"/ip4/127.0.0.1/tcp/1\", \"/ip4/127.0.0.1/udp/1/quic-v1\"]",
        )]))
        .load()
        .unwrap();
    assert_eq!(c.node.listen.len(), 2);
}

#[test]
fn dawn_variables_that_are_not_keys_are_ignored() {
    let c = ConfigLoader::new()
        .env_vars(env(&[
            ("DAWN_API_TOKEN", "x"),
            ("DAWN_PASSPHRASE", "y"),
            ("HOME_THING", "z"),
        ]))
        .load();
    assert!(c.is_ok());
}

#[test]
fn each_kind_of_error_names_key_value_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Result<dawn_core::DawnConfig, ConfigError>, &[&str])> = vec![
        (
            ConfigLoader::new()
                .env_vars(env(&[("DAWN_API__LISTEN", "abc")]))
                .load(),
            &[
                "api.listen",
                "\"abc\" is not a socket address",
                "DAWN_API__LISTEN",
            ],
        ),
        (
            ConfigLoader::new()
                .file(write(
                    &dir,
                    "u.toml",
                    "[api]\nlisten = \"127.0.0.1:1\"\nport = 5\n",
                ))
                .load(),
            &["api.port", "unknown key", "u.toml"],
        ),
        (
            ConfigLoader::new()
                .file(write(&dir, "s.toml", "colour = \"blue\"\n"))
                .load(),
            &["colour", "unknown key"],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("DAWN_NODE__FLAVOUR", "x")]))
                .load(),
            &["node.flavour", "unknown key", "DAWN_NODE__FLAVOUR"],
        ),
        (
            ConfigLoader::new()
                .file(write(
                    &dir,
                    "m.yaml",
                    "node:\n  listen: [\"/ip4/1.2.3.4/tcpx/1\"]\n",
                ))
                .load(),
            &["node.listen", "is not a multiaddr", "m.yaml"],
        ),
        (
            ConfigLoader::new()
                .set_flag("resilience.deadlines.default", "--timeout", "5 parsecs")
                .load(),
            &[
                "resilience.deadlines.default",
                "unknown duration unit",
                "--timeout",
            ],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("DAWN_TRANSPORT__MAX_MESSAGE_SIZE", "12")]))
                .load(),
            &[
                "transport.max_message_size",
                "out of range",
                "1KiB to 64MiB",
            ],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("DAWN_TRANSPORT__MAX_MESSAGE_SIZE", "4 furlongs")]))
                .load(),
            &["transport.max_message_size", "unknown size unit"],
        ),
        (
            ConfigLoader::new()
                .set_flag("node.bootstrap", "--peer", vec!["/ip4/127.0.0.1/tcp/8000"])
                .load(),
            &["node.bootstrap", "no /p2p/<peer-id>", "--peer"],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("LOG_LEVEL", "loud")]))
                .load(),
            &["logging.level", "\"loud\" is not a log level", "LOG_LEVEL"],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("LOG_FORMAT", "xml")]))
                .load(),
            &["logging.format", "\"xml\" is not allowed", "text, json"],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("DAWN_API__ENABLED", "maybe")]))
                .load(),
            &["api.enabled", "is not a boolean"],
        ),
        (
            ConfigLoader::new()
                .env_vars(env(&[("DAWN_RESILIENCE__DEADLINES__DEFAULT", "0s")]))
                .load(),
            &["resilience.deadlines.default", "out of range"],
        ),
    ];
    for (result, needles) in cases {
        let message = issue(result);
        for needle in needles {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }
}

#[test]
fn file_problems_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ConfigLoader::new()
        .file(dir.path().join("nope.toml"))
        .load()
        .unwrap_err();
    assert!(
        missing.to_string().contains("nope.toml") && missing.to_string().contains("no such file"),
        "{missing}"
    );
    let ini = ConfigLoader::new()
        .file(write(&dir, "dawn.ini", "x=1"))
        .load()
        .unwrap_err();
    assert!(
        ini.to_string().contains("must end in .toml, .yaml or .yml"),
        "{ini}"
    );
    let broken = ConfigLoader::new()
        .file(write(&dir, "b.toml", "[api\nlisten="))
        .load()
        .unwrap_err();
    assert!(broken.to_string().contains("b.toml"), "{broken}");
}

#[test]
fn every_documented_key_exists_and_every_key_is_documented() {
    // Every leaf of the default config is documented...
    let defaults = serde_json::to_value(dawn_core::DawnConfig::default()).unwrap();
    let mut leaves = Vec::new();
    fn walk(prefix: String, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(
                        if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        },
                        v,
                        out,
                    )
                }
            }
            _ => out.push(prefix),
        }
    }
    walk(String::new(), &defaults, &mut leaves);
    for leaf in &leaves {
        assert!(
            KEYS.iter().any(|k| k.key == leaf),
            "{leaf} is not documented in config::KEYS"
        );
    }
    // ...and every documented key is accepted by the schema.
    let dir = tempfile::tempdir().unwrap();
    for doc in KEYS {
        // Keys inside a list of tables (`mcp.servers[].id`) are checked by
        // the tests of that list (tests/mounted_servers.rs).
        if doc.key.contains("[]") {
            continue;
        }
        let (section, key) = doc.key.split_once('.').unwrap();
        let value = defaults
            .pointer(&format!("/{}", doc.key.replace('.', "/")))
            .cloned()
            // Keys unset by default: a value of their kind.
            .unwrap_or_else(|| {
                if doc.key.ends_with("_url") {
                    serde_json::json!("http://127.0.0.1:9093/")
                } else {
                    serde_json::json!("/tmp/dawn.log")
                }
            });
        let toml = format!("[{section}]\n{key} = {}\n", toml_value(&value));
        let path = write(&dir, "k.toml", &toml);
        ConfigLoader::new()
            .file(&path)
            .load()
            .unwrap_or_else(|e| panic!("documented key {} rejected: {e}", doc.key));
    }
}

fn toml_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}
