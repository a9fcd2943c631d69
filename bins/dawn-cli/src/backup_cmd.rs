//! `dawn-cli backup create|list|verify|restore`: the commands over `dawn_core::backup`.
//!
//! `create` asks a running node to write the archive (`POST /api/v1/backup`: the node takes a
//! consistent snapshot of its open database); with no node running it opens the data
//! directory itself (taking its lock). The other commands work on files only.
//!
//! Progress goes to stderr: a progress bar when stdout is a terminal (and `--json` is off),
//! plain lines otherwise. The result goes to stdout (a summary, or JSON with `--json`).

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use comfy_table::{ContentArrangement, Table, presets};
use dawn_core::{
    DataDir, DawnConfig,
    backup::{self, BackupListing, CreateOptions, ProgressSink, RestoreOptions},
    config::ConfigLoader,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::{
    api_client::ApiClient,
    cli::{BackupCommand, GlobalArgs},
    endpoint::{self, Endpoint},
    output,
};

/// How long `backup create` waits for a running node to write the archive.
const ONLINE_BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Runs a `backup` subcommand.
pub fn main(global: &GlobalArgs, command: BackupCommand) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(global.json);
    match command {
        BackupCommand::Create { out, keep } => create(global, out, keep, &progress),
        BackupCommand::List { dir } => list(global, dir),
        BackupCommand::Verify { archive } => {
            let report = backup::verify_archive(&archive, &progress);
            progress.finish();
            let report = report?;
            if global.json {
                output::stdout(&output::json(&report.to_json()))?;
            } else {
                let mut text = format!("archive OK: {}\n", report.archive.display());
                for check in &report.checks {
                    text.push_str(&format!("  ok  {check}\n"));
                }
                output::stdout(&text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore { archive } => {
            let root = endpoint::data_root(global)?;
            let report =
                backup::restore_archive(&archive, &root, &RestoreOptions::default(), &progress);
            progress.finish();
            let report = report?;
            dawn_core::security::audit_backup_restored(&report.data_root, &archive)
                .map_err(|e| anyhow!("restored, but the restore could not be audited: {e}"))?;
            if global.json {
                output::stdout(&output::json(&report.to_json()))?;
            } else {
                let mut text = format!(
                    "restored {} into {}\n  node id:  {}\n  made:     {} by Dawn {}\n",
                    archive.display(),
                    report.data_root.display(),
                    report.verified.manifest.node_id,
                    report.verified.manifest.created,
                    report.verified.manifest.dawn_version,
                );
                match &report.previous {
                    Some(previous) => text.push_str(&format!(
                        "  previous data moved to {} (delete it once the restored node works)\n",
                        previous.display()
                    )),
                    None => text.push_str("  (there was no previous data)\n"),
                }
                if let Some(config) = &report.restored_config {
                    text.push_str(&format!(
                        "  the backup's configuration is in {} (dawn-node uses it only if given --config)\n",
                        config.display()
                    ));
                }
                output::stdout(&text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The node configuration the CLI sees: defaults, `$DAWN_*`, `--config`, `--data-root`.
fn load_config(global: &GlobalArgs) -> anyhow::Result<DawnConfig> {
    let mut loader = ConfigLoader::new().process_env();
    if let Some(file) = &global.config {
        loader = loader.file(file);
    }
    let mut config = loader
        .load()
        .with_context(|| "cannot load the node configuration")?;
    config.node.data_root = endpoint::data_root(global)?;
    Ok(config)
}

fn create(
    global: &GlobalArgs,
    out: Option<PathBuf>,
    keep: Option<u32>,
    progress: &Progress,
) -> anyhow::Result<ExitCode> {
    let out = out
        .map(|dir| {
            std::path::absolute(&dir).with_context(|| format!("bad --out {}", dir.display()))
        })
        .transpose()?;
    let root = endpoint::data_root(global)?;
    let online = global.api.is_some() || DataDir::new(&root).is_locked();
    let summary = if online {
        let endpoint = Endpoint::resolve(global)?;
        let client = ApiClient::new(endpoint, 1)?;
        let mut body = json!({});
        if let Some(dir) = &out {
            body["dir"] = json!(dir.display().to_string());
        }
        if let Some(keep) = keep {
            body["keep"] = json!(keep);
        }
        progress.stage("the running node is writing the backup", None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
        let answer =
            runtime.block_on(client.post_json("api/v1/backup", &body, ONLINE_BACKUP_TIMEOUT));
        progress.finish();
        answer?
    } else {
        let config = load_config(global)?;
        let source = backup::BackupSource::offline(&config, None)?;
        let options = CreateOptions { dir: out, keep };
        let summary = backup::create_backup(&source, &options, progress);
        progress.finish();
        let summary = summary?;
        dawn_core::security::audit_backup_created(source.data_dir(), &summary.path, summary.bytes)
            .map_err(|e| anyhow!("backed up, but the backup could not be audited: {e}"))?;
        summary.to_json()
    };
    if global.json {
        output::stdout(&output::json(&summary))?;
    } else {
        output::stdout(&describe_summary(&summary, online))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_summary(summary: &Value, online: bool) -> String {
    let tables = summary["tables"]
        .as_object()
        .map(|t| {
            t.iter()
                .map(|(name, rows)| format!("{name} {rows}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut text = format!(
        "backup written: {}\n  node id:  {}\n  size:     {} ({} files)\n  took:     {:.1} s ({})\n  rows:     {tables}\n",
        summary["path"].as_str().unwrap_or("?"),
        summary["node_id"].as_str().unwrap_or("?"),
        human_bytes(summary["bytes"].as_u64().unwrap_or(0)),
        summary["files"].as_array().map_or(0, Vec::len),
        summary["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
        if online {
            "written by the running node"
        } else {
            "offline, from the data directory"
        },
    );
    if let Some(records) = summary["audit_records"].as_u64() {
        text.push_str(&format!("  audit:    {records} records\n"));
    }
    for pruned in summary["pruned"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "  deleted old backup {}\n",
            pruned.as_str().unwrap_or("?")
        ));
    }
    text
}

fn list(global: &GlobalArgs, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(dir) => dir,
        None => {
            let config = load_config(global)?;
            config
                .backup
                .dir
                .clone()
                .unwrap_or_else(|| config.node.data_root.join(backup::DEFAULT_BACKUP_SUBDIR))
        }
    };
    if !dir.is_dir() {
        bail!(
            "backup directory {} does not exist (pass the directory: dawn-cli backup list DIR)",
            dir.display()
        );
    }
    let listings = backup::list_backups(&dir)?;
    if global.json {
        let items: Vec<Value> = listings.iter().map(listing_json).collect();
        output::stdout(&output::json(
            &json!({ "dir": dir.display().to_string(), "backups": items }),
        ))?;
    } else if listings.is_empty() {
        output::stdout(&format!("no backups in {}", dir.display()))?;
    } else {
        output::stdout(&listing_table(&listings))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn listing_json(listing: &BackupListing) -> Value {
    let mut item = json!({
        "path": listing.path.display().to_string(),
        "bytes": listing.bytes,
    });
    match &listing.manifest {
        Ok(manifest) => {
            item["node_id"] = json!(manifest.node_id);
            item["created"] = json!(manifest.created);
            item["dawn_version"] = json!(manifest.dawn_version);
            item["schema_version"] = json!(manifest.schema_version);
            item["tables"] = json!(manifest.tables);
        }
        Err(error) => item["error"] = json!(error),
    }
    item
}

fn listing_table(listings: &[BackupListing]) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["ARCHIVE", "CREATED", "NODE", "SIZE", "DAWN"]);
    for listing in listings {
        let name = listing.path.file_name().map_or_else(
            || listing.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match &listing.manifest {
            Ok(m) => table.add_row(vec![
                name,
                m.created.clone(),
                short_id(&m.node_id),
                human_bytes(listing.bytes),
                m.dawn_version.clone(),
            ]),
            Err(error) => table.add_row(vec![
                name,
                format!("unreadable: {error}"),
                String::new(),
                human_bytes(listing.bytes),
                String::new(),
            ]),
        };
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

fn short_id(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…{}", &id[..8], &id[id.len() - 6..])
    } else {
        id.to_owned()
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress: a bar (on stderr) when stdout is a terminal, plain lines on stdout (before the
/// summary) otherwise, and nothing with `--json`, whose stdout is the JSON summary alone.
/// Errors are the only thing on stderr otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    fn new(json: bool) -> Progress {
        if json {
            Progress::Quiet
        } else if std::io::stdout().is_terminal() {
            Progress::Bar(ProgressBar::hidden())
        } else {
            Progress::Lines
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for Progress {
    fn stage(&self, name: &str, total_bytes: Option<u64>) {
        match self {
            Progress::Bar(bar) => {
                match total_bytes {
                    Some(total) => {
                        bar.disable_steady_tick();
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{msg:28} [{bar:24}] {bytes}/{total_bytes}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        bar.set_length(total);
                    }
                    None => {
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.enable_steady_tick(Duration::from_millis(120));
                    }
                }
                bar.set_position(0);
                bar.set_message(name.to_owned());
                if bar.is_hidden() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
            }
            Progress::Lines => {
                let line = match total_bytes {
                    Some(total) if total > 0 => format!("{name} ({})", human_bytes(total)),
                    _ => name.to_owned(),
                };
                let _ = output::stdout(&format!("{line}..."));
            }
            Progress::Quiet => {}
        }
    }

    fn advance(&self, bytes: u64) {
        if let Progress::Bar(bar) = self {
            bar.inc(bytes);
        }
    }
}
