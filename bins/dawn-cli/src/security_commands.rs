//! The security commands: `trust` (through the node's API), `audit` and
//! `identity` (on the data directory; no running node needed), and `token
//! rotate` (through the API when a node runs, else on the file).

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use dawn_core::DataDir;
use dawn_security::{
    ApiToken, AuditDecision, AuditEntry, AuditEvent, AuditFilter, AuditFollower, AuditRecord,
    IdentityError, NodeIdentity, PASSPHRASE_ENV, Passphrase, PassphraseError, audit,
    passphrase_prompt,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    api_client::ApiClient,
    cli::{Cli, Command, GlobalArgs},
    output,
    security_cli::{
        AuditCommand, AuditTailArgs, IdentityCommand, PassphraseArgs, TokenCommand, TrustCommand,
    },
};

/// The environment variable a new passphrase is read from (before a prompt).
pub const NEW_PASSPHRASE_ENV: &str = "DAWN_NEW_PASSPHRASE";

/// Runs the commands that work on the data directory without the API:
/// `audit`, `identity`, and `token rotate` when no node runs. `None` for
/// everything else.
pub fn run_offline(cli: &Cli) -> anyhow::Result<Option<ExitCode>> {
    let json = cli.global.json;
    match &cli.command {
        Command::Audit(command) => {
            let data_dir = data_dir(&cli.global)?;
            audit_command(command, &data_dir, json).map(Some)
        }
        Command::Identity(command) => {
            let data_dir = data_dir(&cli.global)?;
            identity_command(command, &data_dir, json).map(Some)
        }
        Command::Token(TokenCommand::Rotate) => {
            if cli.global.api.is_some() {
                return Ok(None);
            }
            let data_dir = data_dir(&cli.global)?;
            if data_dir.is_locked() {
                // A node runs: rotate through its API so it switches at once.
                return Ok(None);
            }
            rotate_offline(&data_dir, json).map(Some)
        }
        _ => Ok(None),
    }
}

fn data_dir(args: &GlobalArgs) -> anyhow::Result<DataDir> {
    Ok(DataDir::new(crate::endpoint::data_root(args)?))
}

// --- trust -----------------------------------------------------------------

/// `dawn-cli trust ...` through the node's API.
pub async fn trust(command: TrustCommand, client: &ApiClient, json: bool) -> anyhow::Result<()> {
    match command {
        TrustCommand::List => {
            let value = client.send_json(Method::GET, "api/v1/trust", None).await?;
            print(json, &value, render_trust_list)
        }
        TrustCommand::Show { peer } => {
            let value = client
                .send_json(Method::GET, &trust_path(&peer)?, None)
                .await?;
            print(json, &value, render_trust_show)
        }
        TrustCommand::Set { peer, level, note } => {
            let mut body = json!({ "level": level.as_str() });
            if let Some(note) = note {
                body["note"] = json!(note);
            }
            let value = client
                .send_json(Method::PUT, &trust_path(&peer)?, Some(&body))
                .await?;
            print(json, &value, |v| {
                let after = &v["after"];
                Ok(format!(
                    "{}: {} -> {}",
                    text(after, "peer_id"),
                    text(&v["before"], "level"),
                    text(after, "level")
                ))
            })
        }
        TrustCommand::Remove { peer } => {
            let value = client
                .send_json(Method::DELETE, &trust_path(&peer)?, None)
                .await?;
            print(json, &value, |v| {
                let after = &v["after"];
                Ok(if v["removed"].as_bool() == Some(true) {
                    format!(
                        "{}: record removed; level now {} ({})",
                        text(after, "peer_id"),
                        text(after, "level"),
                        text(after, "origin")
                    )
                } else {
                    format!(
                        "{}: had no stored record; level {} ({})",
                        text(after, "peer_id"),
                        text(after, "level"),
                        text(after, "origin")
                    )
                })
            })
        }
    }
}

fn trust_path(peer: &str) -> anyhow::Result<String> {
    let peer = peer.trim();
    peer.parse::<dawn_core::PeerId>()
        .map_err(|e| anyhow!("{peer:?} is not a peer id ({e}); use the 12D3KooW... form"))?;
    Ok(format!("api/v1/trust/{peer}"))
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn render_trust_list(value: &Value) -> anyhow::Result<String> {
    let mut out = format!(
        "default level: {}   reject_unknown: {}\n",
        text(value, "default_level"),
        value["reject_unknown"].as_bool().unwrap_or(false)
    );
    let peers = value["peers"].as_array().cloned().unwrap_or_default();
    if peers.is_empty() {
        out.push_str("no peer has a trust record");
        return Ok(out);
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                text(p, "peer_id").to_owned(),
                text(p, "level").to_owned(),
                text(p, "origin").to_owned(),
                if p["connected"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                p.get("note")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ]
        })
        .collect();
    out.push_str(&simple_table(
        &["PEER", "LEVEL", "FROM", "CONNECTED", "NOTE"],
        &rows,
    ));
    Ok(out)
}

/// A borderless table like the other commands print.
fn simple_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row.clone());
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

fn render_trust_show(value: &Value) -> anyhow::Result<String> {
    let reputation = &value["reputation"];
    let mut lines = vec![
        format!("peer:       {}", text(value, "peer_id")),
        format!("level:      {}", text(value, "level")),
        format!("from:       {}", text(value, "origin")),
        format!(
            "connected:  {}   banned: {}",
            value["connected"].as_bool().unwrap_or(false),
            value["banned"].as_bool().unwrap_or(false)
        ),
    ];
    if let Some(note) = value.get("note").and_then(Value::as_str) {
        lines.push(format!("note:       {note}"));
    }
    if let Some(score) = reputation.get("score").and_then(Value::as_f64) {
        lines.push(format!(
            "reputation: {score:.1} ({} offences{})",
            reputation["offences"].as_u64().unwrap_or(0),
            reputation
                .get("last_offence")
                .and_then(Value::as_str)
                .map(|o| format!(", last: {o}"))
                .unwrap_or_default()
        ));
    }
    Ok(lines.join("\n"))
}

fn print(
    json: bool,
    value: &Value,
    render: impl FnOnce(&Value) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    if json {
        output::stdout(&output::json(value))
    } else {
        output::stdout(&render(value)?)
    }
}

// --- token -------------------------------------------------------------------

/// `dawn-cli token rotate` through a running node's API.
pub async fn rotate_online(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let value = client
        .send_json(Method::POST, "api/v1/token/rotate", None)
        .await?;
    print(json, &value, |v| {
        Ok(format!(
            "API token rotated; the node uses the new token now (in {}). The old token no longer works.",
            text(v, "token_file")
        ))
    })
}

fn rotate_offline(data_dir: &DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let _lock = data_dir
        .lock()
        .context("cannot rotate the API token offline")?;
    let path = data_dir.api_token();
    ApiToken::rotate(&path).map_err(|e| anyhow!("cannot rotate the API token: {e}"))?;
    append_audit(
        data_dir,
        AuditRecord::new(AuditEvent::TokenRotated)
            .reason("rotated with dawn-cli while no node was running")
            .detail("path", path.display().to_string()),
    )?;
    let value = json!({ "rotated": true, "token_file": path.display().to_string() });
    print(json, &value, |_| {
        Ok(format!(
            "API token rotated (no node is running; it uses the new token from {} when it starts).",
            path.display()
        ))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Appends one record to the audit log of a stopped node.
fn append_audit(data_dir: &DataDir, record: AuditRecord) -> anyhow::Result<()> {
    dawn_core::security::audit_offline(data_dir, record)
        .map_err(|e| anyhow!("the change was made, but it could not be audited: {e}"))
}

// --- audit -------------------------------------------------------------------

fn audit_command(
    command: &AuditCommand,
    data_dir: &DataDir,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = data_dir.audit_dir();
    match command {
        AuditCommand::Verify => match audit::verify(&dir) {
            Ok(report) => {
                let value = json!({
                    "ok": true,
                    "dir": dir.display().to_string(),
                    "files": report.files.len(),
                    "records": report.records,
                    "last_seq": report.last_seq,
                    "last_hash": report.last_hash,
                });
                print(json, &value, |_| {
                    Ok(format!(
                        "audit log {} is intact: {} records in {} file(s); last hash {}",
                        dir.display(),
                        report.records,
                        report.files.len(),
                        report.last_hash
                    ))
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                if json {
                    let mut value = json!({
                        "ok": false,
                        "dir": dir.display().to_string(),
                        "error": error.to_string(),
                    });
                    if let dawn_security::VerifyError::Broken { location, .. } = &error {
                        value["file"] = json!(location.path.display().to_string());
                        value["line"] = json!(location.line);
                    }
                    output::stdout(&output::json(&value))?;
                }
                bail!("audit log verification failed: {error}")
            }
        },
        AuditCommand::Tail(args) => audit_tail(&dir, args, json),
    }
}

fn audit_tail(dir: &Path, args: &AuditTailArgs, json: bool) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!(
            "no audit log at {} (has a node run on this data directory?)",
            dir.display()
        );
    }
    let filter = AuditFilter {
        event: args.event.clone(),
        peer: args.peer.clone(),
    };
    // Where the log ends before reading the tail: following from there (or
    // after the last record printed, if later) misses nothing and repeats
    // nothing.
    let end = if args.follow {
        Some(AuditFollower::from_end(dir, filter.clone())?)
    } else {
        None
    };
    let entries = audit::tail(dir, args.lines, &filter)?;
    for entry in &entries {
        output::stdout(&render_entry(entry, json))?;
    }
    let Some(end) = end else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut follower = match entries.last() {
        Some(last) if last.seq >= end.next_seq() => {
            AuditFollower::from_seq(dir, last.seq + 1, filter)
        }
        _ => end,
    };
    loop {
        match follower.next_timeout(Duration::from_secs(1)) {
            Ok(Some(entry)) => output::stdout(&render_entry(&entry, json))?,
            Ok(None) => {}
            Err(error) => bail!("cannot follow the audit log: {error}"),
        }
    }
}

/// One record: a JSON object per line with --json, else one readable line.
fn render_entry(entry: &AuditEntry, json: bool) -> String {
    let r = &entry.record;
    if json {
        let mut value = json!({
            "time": entry.time,
            "seq": entry.seq,
            "event": r.event.as_str(),
        });
        for (key, field) in [
            ("peer", &r.peer),
            ("agent", &r.agent),
            ("tool", &r.tool),
            ("reason", &r.reason),
            ("request_id", &r.request_id),
        ] {
            if let Some(text) = field {
                value[key] = json!(text);
            }
        }
        if let Some(decision) = r.decision {
            value["decision"] = json!(decision_name(decision));
        }
        if !r.details.is_empty() {
            value["details"] = Value::Object(r.details.clone());
        }
        value["hash"] = json!(entry.hash);
        return value.to_string();
    }
    let mut line = format!("{} #{} {}", entry.time, entry.seq, r.event);
    if let Some(decision) = r.decision {
        line.push_str(&format!(" {}", decision_name(decision)));
    }
    if let Some(peer) = &r.peer {
        line.push_str(&format!(" peer={peer}"));
    }
    match (&r.agent, &r.tool) {
        (Some(agent), Some(tool)) => line.push_str(&format!(" target={agent}/{tool}")),
        (Some(agent), None) => line.push_str(&format!(" agent={agent}")),
        (None, Some(tool)) => line.push_str(&format!(" tool={tool}")),
        (None, None) => {}
    }
    if let Some(id) = &r.request_id {
        line.push_str(&format!(" request={id}"));
    }
    if let Some(reason) = &r.reason {
        line.push_str(&format!(" reason={reason:?}"));
    }
    if !r.details.is_empty() {
        line.push_str(&format!(" {}", Value::Object(r.details.clone())));
    }
    line
}

fn decision_name(decision: AuditDecision) -> &'static str {
    match decision {
        AuditDecision::Allow => "allow",
        AuditDecision::Deny => "deny",
    }
}

// --- identity ----------------------------------------------------------------

fn identity_command(
    command: &IdentityCommand,
    data_dir: &DataDir,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path = data_dir.node_key();
    match command {
        IdentityCommand::Show => {
            let info = NodeIdentity::key_file_info(&path).map_err(identity_error)?;
            let value = json!({
                "peer_id": info.peer_id.to_string(),
                "key_file": path.display().to_string(),
                "encrypted": info.encrypted,
                "kdf": info.kdf.map(|k| json!({
                    "algorithm": "argon2id",
                    "memory_kib": k.memory_kib,
                    "iterations": k.iterations,
                    "parallelism": k.parallelism,
                })),
            });
            print(json, &value, |_| {
                let encrypted = match info.kdf {
                    Some(k) => format!(
                        "yes (argon2id, {} MiB, {} passes; AES-256-GCM)",
                        k.memory_kib / 1024,
                        k.iterations
                    ),
                    None => "no".into(),
                };
                Ok(format!(
                    "peer id:   {}\nkey file:  {}\nencrypted: {encrypted}",
                    info.peer_id,
                    path.display()
                ))
            })?;
        }
        IdentityCommand::Init {
            encrypt,
            passphrases,
        } => {
            data_dir.ensure()?;
            let _lock = stopped_node(data_dir)?;
            if path.exists() {
                bail!(
                    "{} already exists; refusing to overwrite the node key (use `dawn-cli identity show`)",
                    path.display()
                );
            }
            let identity = if *encrypt {
                let new = new_passphrase(passphrases)?;
                NodeIdentity::create_encrypted(&path, &new).map_err(identity_error)?
            } else {
                NodeIdentity::create(&path).map_err(identity_error)?
            };
            let value = json!({
                "peer_id": identity.peer_id().to_string(),
                "key_file": path.display().to_string(),
                "encrypted": encrypt,
            });
            print(json, &value, |_| {
                Ok(format!(
                    "created node key {} (peer id {}){}",
                    path.display(),
                    identity.peer_id(),
                    if *encrypt { ", encrypted" } else { "" }
                ))
            })?;
        }
        IdentityCommand::Encrypt { passphrases } => {
            let _lock = stopped_node(data_dir)?;
            let info = NodeIdentity::key_file_info(&path).map_err(identity_error)?;
            if info.encrypted {
                bail!(
                    "{} is already encrypted; use `dawn-cli identity change-passphrase`",
                    path.display()
                );
            }
            let new = new_passphrase(passphrases)?;
            NodeIdentity::encrypt_existing(&path, &new).map_err(identity_error)?;
            audit_key_change(data_dir, "encrypt", "the node key was encrypted")?;
            done(json, &path, "encrypted")?;
        }
        IdentityCommand::Decrypt { passphrases } => {
            let _lock = stopped_node(data_dir)?;
            let current = current_passphrase(passphrases)?;
            unlocking(data_dir, NodeIdentity::decrypt_existing(&path, &current))?;
            audit_key_change(
                data_dir,
                "decrypt",
                "the passphrase was removed from the node key",
            )?;
            done(json, &path, "decrypted (stored without a passphrase)")?;
        }
        IdentityCommand::ChangePassphrase { passphrases } => {
            let _lock = stopped_node(data_dir)?;
            let info = NodeIdentity::key_file_info(&path).map_err(identity_error)?;
            if !info.encrypted {
                bail!(
                    "{} is not encrypted; use `dawn-cli identity encrypt`",
                    path.display()
                );
            }
            let current = current_passphrase(passphrases)?;
            // Check the current passphrase before asking for a new one.
            unlocking(
                data_dir,
                NodeIdentity::load_with(&path, Some(&current)).map(|_| ()),
            )?;
            let new = new_passphrase(passphrases)?;
            unlocking(
                data_dir,
                NodeIdentity::change_passphrase(&path, &current, &new),
            )?;
            audit_key_change(data_dir, "change", "the node key passphrase was changed")?;
            done(json, &path, "re-encrypted with the new passphrase")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn done(json: bool, path: &Path, what: &str) -> anyhow::Result<()> {
    let value = json!({ "key_file": path.display().to_string(), "result": what });
    print(json, &value, |_| Ok(format!("{}: {what}", path.display())))
}

/// Takes the data directory's lock: key changes need the node stopped (it
/// reads the key at start and holds the audit log while it runs).
fn stopped_node(data_dir: &DataDir) -> anyhow::Result<dawn_core::DataDirLock> {
    if !data_dir.root().is_dir() {
        bail!(
            "{} does not exist; create the key with `dawn-cli identity init` or start dawn-node once",
            data_dir.root().display()
        );
    }
    data_dir
        .lock()
        .map_err(|e| anyhow!("{e}; the node key can only be changed while the node is stopped"))
}

/// Records a wrong passphrase in the audit log before reporting it.
fn unlocking(data_dir: &DataDir, result: Result<(), IdentityError>) -> anyhow::Result<()> {
    if let Err(error) = result {
        if matches!(
            error,
            IdentityError::WrongPassphrase { .. } | IdentityError::Corrupt { .. }
        ) {
            let _ = append_audit(
                data_dir,
                AuditRecord::new(AuditEvent::KeyUnlockFailed)
                    .decision(AuditDecision::Deny)
                    .reason(format!("dawn-cli identity: {error}")),
            );
        }
        return Err(identity_error(error));
    }
    Ok(())
}

fn audit_key_change(data_dir: &DataDir, action: &str, reason: &str) -> anyhow::Result<()> {
    append_audit(
        data_dir,
        AuditRecord::new(AuditEvent::PassphraseChanged)
            .reason(format!("{reason} with dawn-cli"))
            .detail("action", action)
            .detail("path", data_dir.node_key().display().to_string()),
    )
}

fn identity_error(error: IdentityError) -> anyhow::Error {
    anyhow!("{error}")
}

/// The current passphrase: --passphrase-file, $DAWN_PASSPHRASE, or a prompt.
fn current_passphrase(args: &PassphraseArgs) -> anyhow::Result<Passphrase> {
    if let Some(file) = &args.passphrase_file {
        return Passphrase::from_file(file).map_err(passphrase_error);
    }
    match Passphrase::from_env(PASSPHRASE_ENV) {
        Ok(passphrase) => return Ok(passphrase),
        Err(PassphraseError::EnvNotSet { .. }) => {}
        Err(error) => return Err(passphrase_error(error)),
    }
    if passphrase_prompt::can_prompt() {
        return passphrase_prompt::prompt_passphrase("Passphrase of the node key: ")
            .map_err(passphrase_error);
    }
    bail!(
        "the node key's passphrase is needed: pass --passphrase-file FILE, set ${PASSPHRASE_ENV}, \
         or run on a terminal to be asked"
    )
}

/// A new passphrase: --new-passphrase-file, $DAWN_NEW_PASSPHRASE, or a
/// prompt (twice).
fn new_passphrase(args: &PassphraseArgs) -> anyhow::Result<Passphrase> {
    if let Some(file) = &args.new_passphrase_file {
        return Passphrase::from_file(file).map_err(passphrase_error);
    }
    match Passphrase::from_env(NEW_PASSPHRASE_ENV) {
        Ok(passphrase) => return Ok(passphrase),
        Err(PassphraseError::EnvNotSet { .. }) => {}
        Err(error) => return Err(passphrase_error(error)),
    }
    if passphrase_prompt::can_prompt() {
        return passphrase_prompt::prompt_new_passphrase("New passphrase for the node key: ")
            .map_err(passphrase_error);
    }
    bail!(
        "a new passphrase is needed: pass --new-passphrase-file FILE, set ${NEW_PASSPHRASE_ENV}, \
         or run on a terminal to be asked"
    )
}

fn passphrase_error(error: PassphraseError) -> anyhow::Error {
    anyhow!("{error}")
}
