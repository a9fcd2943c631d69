//! `dawn-node --check-config` and `--print-config`: the checks an operator
//! (and `systemctl reload`, see deploy/systemd) runs before starting or
//! reloading a node. Each bad input must be refused with exit status 2 and a
//! message naming the key, the problem and where the value came from.
//!
//! This is also the test that makes `cargo test --workspace` build
//! `target/debug/dawn-node` itself, so the process tests of dawn-cli run the
//! node of the same build rather than whatever an earlier build left there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Output};

fn node(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dawn-node"));
    command.current_dir(dir).args(args);
    // Only what the test sets: no DAWN_* from the environment running it.
    for (key, _) in std::env::vars() {
        if key.starts_with("DAWN_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("cannot run dawn-node")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_valid_file_passes_and_the_printed_configuration_is_itself_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[api]\nlisten = \"127.0.0.1:9191\"\n[logging]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let out = node(
        dir.path(),
        &["--config", "node.toml", "--check-config"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "configuration is valid");

    // --print-config shows the effective values (file, then environment,
    // then flags) and its output is a valid configuration file.
    let out = node(
        dir.path(),
        &[
            "--config",
            "node.toml",
            "--log-level",
            "warn",
            "--print-config",
        ],
        &[("DAWN_API__LISTEN", "127.0.0.1:9292")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("listen = \"127.0.0.1:9292\""), "{printed}");
    assert!(printed.contains("level = \"warn\""), "{printed}");
    std::fs::write(dir.path().join("printed.toml"), &printed).unwrap();
    let out = node(
        dir.path(),
        &["--config", "printed.toml", "--check-config"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A refused configuration: file, flags, environment, and what stderr must
/// contain.
type Case<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
);

#[test]
fn bad_configuration_is_refused_with_the_key_the_problem_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("bad_value.toml", "[node]\nlisten = [\"not-a-multiaddr\"]\n");
    write("bad_syntax.toml", "[node\nlisten =");
    write("unknown_key.toml", "[node]\nlisten_on = []\n");
    write("good.toml", "");

    let cases: &[Case] = &[
        (
            "bad_value.toml",
            &[],
            &[],
            &[
                "node.listen",
                "not-a-multiaddr",
                "is not a multiaddr",
                "config file bad_value.toml",
            ],
        ),
        (
            "bad_syntax.toml",
            &[],
            &[],
            &["TOML parse error", "line 1", "config file bad_syntax.toml"],
        ),
        ("unknown_key.toml", &[], &[], &["listen_on"]),
        (
            "good.toml",
            &[],
            &[("DAWN_API__LISTEN", "nonsense")],
            &[
                "api.listen",
                "is not a socket address",
                "environment variable DAWN_API__LISTEN",
            ],
        ),
        (
            "good.toml",
            &["--listen", "/ip4/1.2.3.4/tcp/notaport"],
            &[],
            &["node.listen", "--listen"],
        ),
        ("missing.toml", &[], &[], &["cannot read config file"]),
    ];
    for (file, flags, env, expected) in cases {
        let mut args = vec!["--config", file];
        args.extend_from_slice(flags);
        args.push("--check-config");
        let out = node(dir.path(), &args, env);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file} {flags:?} {env:?}: {err}"
        );
        for word in *expected {
            assert!(
                err.contains(word),
                "{file} {flags:?} {env:?}: no {word:?} in {err}"
            );
        }
        // One clear message, not a panic or a key-less "- :" line.
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("- :"), "{err}");
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
}
