//! Reading the instructions of a Dockerfile that the deploy check compares
//! with the config defaults and the compose file, and runs locally.
//!
//! Only what the check needs: global `ARG`s, the stages' `FROM`, and the final
//! stage's `ENV`, `EXPOSE`, `VOLUME`, `USER`, `WORKDIR`, `STOPSIGNAL`,
//! `HEALTHCHECK`, `ENTRYPOINT` and `CMD`. Exec-form (JSON array) commands are
//! required where the check runs them.

use anyhow::{Context as _, Result, bail};

use crate::json::Json;

/// The HEALTHCHECK instruction of the final stage.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// Options such as `("interval", "30s")`.
    pub options: Vec<(String, String)>,
    /// The command (exec form).
    pub command: Vec<String>,
}

impl HealthCheck {
    /// The value of option `--name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the deploy check reads from a Dockerfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM`, with their defaults.
    pub global_args: Vec<(String, Option<String>)>,
    /// The image of each stage's `FROM`, with global args substituted.
    pub from: Vec<String>,
    /// `ENV` of the final stage, in order.
    pub env: Vec<(String, String)>,
    /// `EXPOSE` of the final stage, as `port/proto` (proto defaults to tcp).
    pub expose: Vec<String>,
    /// `VOLUME` paths of the final stage.
    pub volumes: Vec<String>,
    /// `USER` of the final stage.
    pub user: Option<String>,
    /// `WORKDIR` of the final stage.
    pub workdir: Option<String>,
    /// `STOPSIGNAL` of the final stage.
    pub stop_signal: Option<String>,
    /// `HEALTHCHECK` of the final stage.
    pub healthcheck: Option<HealthCheck>,
    /// `ENTRYPOINT` of the final stage (exec form).
    pub entrypoint: Vec<String>,
    /// `CMD` of the final stage (exec form).
    pub cmd: Vec<String>,
}

impl Dockerfile {
    /// Parses the Dockerfile text.
    pub fn parse(text: &str) -> Result<Dockerfile> {
        let mut file = Dockerfile::default();
        let mut stages = 0usize;
        for (line_no, line) in logical_lines(text) {
            let (keyword, rest) = match line.split_once(char::is_whitespace) {
                Some((k, r)) => (k.to_ascii_uppercase(), r.trim().to_owned()),
                None => (line.to_ascii_uppercase(), String::new()),
            };
            let at = || format!("Dockerfile line {line_no}: {keyword}");
            match keyword.as_str() {
                "ARG" if stages == 0 => {
                    let (name, default) = match rest.split_once('=') {
                        Some((n, d)) => (n.trim().to_owned(), Some(unquote(d.trim()))),
                        None => (rest.clone(), None),
                    };
                    file.global_args.push((name, default));
                }
                "FROM" => {
                    stages += 1;
                    // A new stage: the final stage's settings start over.
                    let image = rest.split_whitespace().next().unwrap_or_default();
                    let image = file.substitute(image);
                    file.from.push(image);
                    file.env.clear();
                    file.expose.clear();
                    file.volumes.clear();
                    file.user = None;
                    file.workdir = None;
                    file.stop_signal = None;
                    file.healthcheck = None;
                    file.entrypoint.clear();
                    file.cmd.clear();
                }
                "ENV" => {
                    for word in split_words(&rest).with_context(at)? {
                        let Some((key, value)) = word.split_once('=') else {
                            bail!("{}: use the KEY=VALUE form, not {word:?}", at());
                        };
                        file.env.push((key.to_owned(), value.to_owned()));
                    }
                }
                "EXPOSE" => {
                    for port in rest.split_whitespace() {
                        file.expose.push(if port.contains('/') {
                            port.to_ascii_lowercase()
                        } else {
                            format!("{port}/tcp")
                        });
                    }
                }
                "VOLUME" => {
                    if rest.starts_with('[') {
                        file.volumes.extend(exec_form(&rest).with_context(at)?);
                    } else {
                        file.volumes
                            .extend(rest.split_whitespace().map(str::to_owned));
                    }
                }
                "USER" => file.user = Some(rest),
                "WORKDIR" => file.workdir = Some(rest),
                "STOPSIGNAL" => file.stop_signal = Some(rest),
                "ENTRYPOINT" => file.entrypoint = exec_form(&rest).with_context(at)?,
                "CMD" => file.cmd = exec_form(&rest).with_context(at)?,
                "HEALTHCHECK" => file.healthcheck = Some(healthcheck(&rest).with_context(at)?),
                _ => {}
            }
        }
        if stages == 0 {
            bail!("the Dockerfile has no FROM");
        }
        Ok(file)
    }

    /// The value of `ENV name` in the final stage (the last one set).
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The default of global `ARG name`.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.global_args
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, d)| d.as_deref())
    }

    /// Replaces `${NAME}` and `$NAME` of global args by their defaults.
    fn substitute(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, default) in &self.global_args {
            let value = default.clone().unwrap_or_default();
            out = out.replace(&format!("${{{name}}}"), &value);
            out = out.replace(&format!("${name}"), &value);
        }
        out
    }
}

/// Joins continuation lines (ending in `\`) and drops comments and blank
/// lines; yields each instruction with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() && !body.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body);
        if !continues && let Some(done) = current.take() {
            lines.push(done);
        }
    }
    if let Some(done) = current {
        lines.push(done);
    }
    lines
}

/// A JSON array of strings (exec form).
fn exec_form(text: &str) -> Result<Vec<String>> {
    if !text.trim_start().starts_with('[') {
        bail!("use the exec form (a JSON array), not the shell form {text:?}");
    }
    let value = Json::parse(text).context("not a JSON array")?;
    let Json::Array(items) = value else {
        bail!("not a JSON array");
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .context("exec-form items must be strings")
        })
        .collect()
}

/// `HEALTHCHECK [--opt=value ...] CMD [...]` (or `NONE`).
fn healthcheck(text: &str) -> Result<HealthCheck> {
    let mut rest = text.trim();
    let mut options = Vec::new();
    while let Some(option) = rest.strip_prefix("--") {
        let (word, tail) = option
            .split_once(char::is_whitespace)
            .unwrap_or((option, ""));
        let (name, value) = word
            .split_once('=')
            .with_context(|| format!("option --{word} needs a value"))?;
        options.push((name.to_owned(), value.to_owned()));
        rest = tail.trim_start();
    }
    if rest.eq_ignore_ascii_case("NONE") {
        bail!("HEALTHCHECK NONE: the image must have a health check");
    }
    let Some(command) = rest
        .strip_prefix("CMD")
        .or_else(|| rest.strip_prefix("cmd"))
    else {
        bail!("expected CMD after the options, found {rest:?}");
    };
    Ok(HealthCheck {
        options,
        command: exec_form(command.trim())?,
    })
}

/// Splits on whitespace, honouring double quotes (and `\"` inside them).
fn split_words(text: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(other) => word.push(other),
                        None => bail!("unterminated quote in {text:?}"),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn unquote(text: &str) -> String {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# syntax=docker/dockerfile:1
ARG RUST_VERSION=1.95
ARG DEBIAN="bookworm"
FROM rust:${RUST_VERSION}-slim-$DEBIAN AS build
ENV IN_BUILD=1
EXPOSE 1234
FROM debian:${DEBIAN}-slim
# comment
ENV A=1 \
    # a comment inside a continuation
    B="two words" \
    C=0.0.0.0:9090
EXPOSE 8000/tcp 8000/udp 9090
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s \
    CMD ["dawn-cli", "health"]
ENTRYPOINT ["/usr/bin/tini", "--", "dawn-node"]
CMD []
"#;

    #[test]
    fn reads_the_final_stage() {
        let file = Dockerfile::parse(SAMPLE).unwrap();
        assert_eq!(file.arg("RUST_VERSION"), Some("1.95"));
        assert_eq!(
            file.from,
            ["rust:1.95-slim-bookworm", "debian:bookworm-slim"]
        );
        assert_eq!(file.env("A"), Some("1"));
        assert_eq!(file.env("B"), Some("two words"));
        assert_eq!(file.env("C"), Some("0.0.0.0:9090"));
        assert_eq!(
            file.env("IN_BUILD"),
            None,
            "build-stage ENV is not in the image"
        );
        assert_eq!(file.expose, ["8000/tcp", "8000/udp", "9090/tcp"]);
        assert_eq!(file.volumes, ["/data"]);
        assert_eq!(file.user.as_deref(), Some("10001:10001"));
        assert_eq!(file.workdir.as_deref(), Some("/data"));
        assert_eq!(file.stop_signal.as_deref(), Some("SIGTERM"));
        let health = file.healthcheck.unwrap();
        assert_eq!(health.command, ["dawn-cli", "health"]);
        assert_eq!(health.option("timeout"), Some("10s"));
        assert_eq!(file.entrypoint, ["/usr/bin/tini", "--", "dawn-node"]);
        assert!(file.cmd.is_empty());
    }

    #[test]
    fn shell_forms_are_refused_where_commands_run() {
        let shell_entrypoint = "FROM x\nENTRYPOINT dawn-node --flag\n";
        let error = Dockerfile::parse(shell_entrypoint).unwrap_err();
        assert!(format!("{error:#}").contains("exec form"), "{error:#}");

        let shell_health = "FROM x\nHEALTHCHECK CMD dawn-cli health\n";
        assert!(Dockerfile::parse(shell_health).is_err());

        let none = "FROM x\nHEALTHCHECK NONE\n";
        assert!(Dockerfile::parse(none).is_err());
        assert!(Dockerfile::parse("# nothing\n").is_err());
    }

    #[test]
    fn env_needs_key_value_pairs() {
        assert!(Dockerfile::parse("FROM x\nENV A 1\n").is_err());
        assert!(Dockerfile::parse("FROM x\nENV A=\"open\n").is_err());
    }
}
