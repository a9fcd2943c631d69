//! `dawn-node`: runs a Dawn node until SIGINT/SIGTERM; SIGHUP reloads its
//! configuration.
//!
//! All logic lives in `dawn-core`; this binary parses flags, loads the
//! configuration, sets up logging, starts the node and handles signals.

// Shared with dawn-cli: one implementation for both binaries.
#[path = "../../dawn-cli/src/generate.rs"]
mod generate;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use dawn_core::{
    DawnConfig, LogFormat, Multiaddr, NodeBuilder,
    config::{ConfigError, ConfigLoader},
};
use dawn_observe::logging::{self, LogSettings};

/// Run a Dawn node: a peer in the Dawn mesh hosting MCP agents.
#[derive(Debug, Clone, Parser)]
#[command(name = "dawn-node", version, about, long_about = None)]
struct Args {
    /// Config file (TOML, or YAML if it ends in .yaml/.yml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (node.data_root).
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Peer-to-peer listen address; repeat for several (node.listen).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Peer to connect to, ending in /p2p/<peer-id>; repeat for several (added to node.bootstrap).
    #[arg(long, value_name = "MULTIADDR")]
    peer: Vec<String>,
    /// HTTP API address (api.listen).
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<String>,
    /// Do not serve the HTTP API (api.enabled = false).
    #[arg(long)]
    no_api: bool,
    /// Log level or directives (logging.level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json (logging.format).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    print_config: bool,
    /// Write man pages and shell completions under DIR and exit (used by
    /// `cargo xtask dist`).
    #[arg(long, value_name = "DIR", hide = true)]
    generate_assets: Option<PathBuf>,
}

fn load_config(args: &Args) -> Result<DawnConfig, ConfigError> {
    let mut loader = ConfigLoader::new().process_env();
    if let Some(file) = &args.config {
        loader = loader.file(file);
    }
    if let Some(v) = &args.data_root {
        loader = loader.set_flag("node.data_root", "--data-root", v);
    }
    if !args.listen.is_empty() {
        loader = loader.set_flag("node.listen", "--listen", &args.listen);
    }
    if let Some(v) = &args.api_listen {
        loader = loader.set_flag("api.listen", "--api-listen", v);
    }
    if args.no_api {
        loader = loader.set_flag("api.enabled", "--no-api", false);
    }
    if let Some(v) = &args.log_level {
        loader = loader.set_flag("logging.level", "--log-level", v);
    }
    if let Some(v) = &args.log_format {
        loader = loader.set_flag("logging.format", "--log-format", v);
    }
    let mut config = loader.load()?;
    let mut issues = Vec::new();
    for peer in &args.peer {
        match peer.parse::<Multiaddr>() {
            Ok(addr) => config.node.bootstrap.push(addr),
            Err(e) => issues.push(dawn_core::config::ConfigIssue {
                key: "node.bootstrap".into(),
                message: format!("{peer:?} is not a multiaddr ({e})"),
                source: Some("command-line flag --peer".into()),
            }),
        }
    }
    if !args.peer.is_empty() {
        issues.extend(
            config
                .validate()
                .into_iter()
                .filter(|i| i.key == "node.bootstrap")
                .map(|mut i| {
                    i.source = Some("command-line flag --peer or the config".into());
                    i
                }),
        );
    }
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.generate_assets {
        use clap::CommandFactory as _;
        return match generate::write_assets(Args::command(), dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dawn-node: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dawn-node: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if args.print_config {
        match toml::to_string_pretty(&config) {
            Ok(s) => {
                print!("{s}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("dawn-node: cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let settings = LogSettings {
        level: config.logging.level.clone(),
        format: match config.logging.format {
            LogFormat::Text => logging::LogFormat::Text,
            LogFormat::Json => logging::LogFormat::Json,
        },
        file: config.logging.file.clone(),
    };
    let file_options = logging::LogFileOptions {
        rotation: config.logging.rotation,
        keep: config.logging.keep,
    };
    if let Err(e) = logging::init_with(&settings, file_options) {
        eprintln!("dawn-node: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dawn-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, config))
}

async fn run(args: Args, config: DawnConfig) -> ExitCode {
    // A file-size limit (RLIMIT_FSIZE) must not kill the node: with SIGXFSZ
    // handled, a write past the limit fails with EFBIG like any I/O error,
    // the node keeps running and its health report shows the store failing.
    #[cfg(unix)]
    let _file_size_signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
        rustix::process::Signal::XFSZ.as_raw(),
    ));
    // Listen for SIGHUP before the (possibly slow) start, so a reload sent
    // meanwhile (`systemctl reload` right after start) is applied once the
    // node runs instead of killing it.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let builder = match with_prompted_passphrase(NodeBuilder::new(config.clone()), &config) {
        Ok(builder) => builder,
        Err(e) => {
            eprintln!("dawn-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match builder.start().await {
        Ok(node) => node,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the node");
            eprintln!("dawn-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("dawn-node {} running", dawn_core::VERSION);
    eprintln!("  peer id:  {}", node.peer_id());
    for addr in node.dial_addrs() {
        eprintln!("  listen:   {addr}");
    }
    if let Some(api) = node.api_addr() {
        eprintln!(
            "  api:      http://{api} (token in {})",
            node.data_dir().api_token().display()
        );
    }
    eprintln!("  data:     {}", node.data_dir().root().display());
    let reloads = tokio::spawn(reload_on_hangup(hangups, args, node.clone()));

    if let Err(e) = shutdown_signal().await {
        tracing::error!(error = %e, "cannot listen for signals");
        return ExitCode::FAILURE;
    }
    reloads.abort();
    tracing::info!("signal received; shutting down (send another to exit at once)");
    let graceful = node.shutdown();
    tokio::select! {
        () = graceful => {
            tracing::info!("shutdown complete");
            ExitCode::SUCCESS
        }
        _ = shutdown_signal() => {
            tracing::warn!("second signal; exiting at once");
            ExitCode::from(130)
        }
    }
}

/// Asks for the node key passphrase on the terminal when the key needs one
/// and neither `DAWN_PASSPHRASE` nor `security.passphrase_file` gives it.
fn with_prompted_passphrase(
    builder: NodeBuilder,
    config: &DawnConfig,
) -> Result<NodeBuilder, dawn_core::security::PassphraseError> {
    use dawn_core::security::passphrase_prompt;
    let (needed, supplied) = dawn_core::security::passphrase_needed(config);
    if !needed || supplied || !passphrase_prompt::can_prompt() {
        return Ok(builder);
    }
    let key = dawn_core::DataDir::new(&config.node.data_root).node_key();
    let passphrase = if key.exists() {
        passphrase_prompt::prompt_passphrase(&format!("Passphrase for {}: ", key.display()))?
    } else {
        passphrase_prompt::prompt_new_passphrase(&format!(
            "New passphrase to encrypt {}: ",
            key.display()
        ))?
    };
    Ok(builder.passphrase(passphrase))
}

/// Reloads the configuration (file, environment and flags, as at start) on
/// every SIGHUP. A configuration that does not load or is refused changes
/// nothing: the node keeps running as it was and says why in the log.
async fn reload_on_hangup(
    hangups: std::io::Result<tokio::signal::unix::Signal>,
    args: Args,
    node: dawn_core::Node,
) {
    let mut hangups = match hangups {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; configuration reload is unavailable");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading the configuration");
        let loaded = match load_config(&args) {
            Ok(config) => node.reload_config(config).await.map_err(|e| e.to_string()),
            Err(error) => {
                metrics::counter!("dawn_config_reloads_total", "result" => "refused").increment(1);
                Err(error.to_string())
            }
        };
        match loaded {
            Ok(reload) => {
                tracing::info!(
                    applied = %reload.applied.join(", "),
                    trust_changes = reload.trust.changes.len(),
                    "configuration reloaded"
                );
                if !reload.restart_required.is_empty() {
                    tracing::warn!(
                        keys = %reload.restart_required.join(", "),
                        "changed configuration keys that take effect only after a restart; \
                         their running values stay"
                    );
                }
            }
            Err(error) => tracing::error!(
                %error,
                "configuration reload refused; the node keeps its running configuration"
            ),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
