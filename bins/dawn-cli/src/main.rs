//! `dawn-cli`: the command-line client for a running Dawn node.
//!
//! It finds the node's HTTP API through the data directory (`api.addr`,
//! `api.token`) or `--api`, and prints tables for people or JSON for
//! scripts. Errors are one line on stderr and a non-zero exit status.
//! `dawn-cli mcp` bridges an MCP client on stdin/stdout to the node's
//! Streamable HTTP endpoint (see [`mcp_bridge`]).

mod api_client;
mod backup_cmd;
mod bench;
mod cli;
mod commands;
mod endpoint;
mod generate;
mod health_cmd;
mod mcp_bridge;
mod output;
mod security_cli;
mod security_commands;
mod verify_release;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{api_client::ApiClient, api_client::ApiError, cli::Cli, endpoint::Endpoint};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // Errors the node reported read `error: <message> (<kind>, code N)`;
            // problems on this side (no node, no token, ...) name the program.
            let prefix = match error.downcast_ref::<ApiError>() {
                Some(ApiError::Remote(_)) => "error",
                _ => "dawn-cli",
            };
            let _ = output::stderr(&format!("{prefix}: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let cli::Command::GenerateAssets { dir } = &cli.command {
        use clap::CommandFactory as _;
        generate::write_assets(Cli::command(), dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let cli::Command::VerifyRelease(args) = &cli.command {
        // Offline: checks files in a directory, talks to no node.
        return verify_release::main(args, cli.global.json);
    }
    if let cli::Command::Backup(command) = cli.command {
        // Works with or without a running node: it resolves the endpoint itself.
        return backup_cmd::main(&cli.global, command);
    }
    if let Some(code) = security_commands::run_offline(&cli)? {
        return Ok(code);
    }
    let endpoint = Endpoint::resolve(&cli.global)?;
    if let cli::Command::Mcp(args) = cli.command {
        return mcp_bridge::main(&args, endpoint);
    }
    let pool_size = match &cli.command {
        cli::Command::Bench(bench) => usize::try_from(bench.concurrency).unwrap_or(usize::MAX),
        _ => 1,
    };
    let client = ApiClient::new(endpoint, pool_size)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(commands::run(cli.command, &client, cli.global.json))
}
