//! `dawn-cli mcp`: MCP over stdin/stdout, bridged to a node's Streamable
//! HTTP endpoint, for MCP clients that can only launch a command.
//!
//! The bridge is a message pump ([`pump`]) between two rmcp transports: a
//! newline-delimited JSON-RPC transport on stdin/stdout ([`stdio`], server
//! role) and rmcp's `StreamableHttpClientTransport` (client role) to
//!
//! | `--agent` | endpoint |
//! |---|---|
//! | (none) | `/mcp`, the whole mesh |
//! | `<agent>` | `/mcp/agents/<agent>` |
//! | `<peer-id>/<agent>` | `/mcp/peers/<peer-id>/agents/<agent>` |
//!
//! rmcp does the HTTP side: the `Mcp-Session-Id`, protocol version headers,
//! SSE response streams, the standalone GET stream for server-initiated
//! messages, reconnection, re-initialisation when the node forgets the
//! session, and the closing `DELETE`. The bridge only passes messages on;
//! it has no handler and keeps no protocol state, so capabilities,
//! sampling, elicitation, progress, cancellation and whatever the two ends
//! negotiate pass through unchanged.
//!
//! Nothing but protocol messages is written to stdout; logs go to stderr,
//! and only with `-v` or `$RUST_LOG`.

mod pump;
mod stdio;

use std::{io::IsTerminal as _, process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow};
use dawn_core::AgentAddress;
use reqwest::Url;
use rmcp::transport::{
    StreamableHttpClientTransport, Transport as _,
    streamable_http_client::StreamableHttpClientTransportConfig,
};
use tracing_subscriber::EnvFilter;

use crate::{api_client::ApiClient, cli::McpArgs, endpoint::Endpoint};
use pump::PumpEnd;
use stdio::StdioTransport;

/// How long to wait for the TCP connection to the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After stdin closes, how long answers still owed to the client (and
/// messages on their way to the node) are awaited before the session closes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on closing the MCP session (rmcp's own DELETE timeout is 5 s).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(8);

/// Runs `dawn-cli mcp` to completion: exit status 0 when the client closed
/// stdin (or a signal asked the bridge to stop), an error (one line) when
/// the node cannot be reached or ends the session.
pub fn main(args: &McpArgs, endpoint: Endpoint) -> anyhow::Result<ExitCode> {
    init_logging(args.verbose);
    let url = endpoint
        .base
        .join(&endpoint_path(args.agent.as_ref()))
        .map_err(|e| anyhow!("cannot build the MCP URL from {}: {e}", endpoint.base))?;
    let token = endpoint.token.as_ref().map(|t| t.as_str().to_owned());
    let client = ApiClient::new(endpoint, 1)?;
    // One thread is plenty for a pump, and stdin/stdout are not shared.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(bridge(&client, url, token));
    // A read of a non-pipe stdin may still be blocked in a thread; do not
    // wait for it.
    runtime.shutdown_background();
    result
}

/// The endpoint path (relative to the API base URL) for `--agent`.
pub fn endpoint_path(agent: Option<&AgentAddress>) -> String {
    match agent {
        None => "mcp".to_owned(),
        Some(AgentAddress { peer: None, agent }) => format!("mcp/agents/{agent}"),
        Some(AgentAddress {
            peer: Some(peer),
            agent,
        }) => format!("mcp/peers/{peer}/agents/{agent}"),
    }
}

async fn bridge(client: &ApiClient, url: Url, token: Option<String>) -> anyhow::Result<ExitCode> {
    // Fail fast, before the client has said anything, when the node is not
    // there or refuses the token: MCP clients show stderr to the user.
    client.status().await?;
    tracing::info!(%url, "bridging stdin/stdout to the node's MCP endpoint");

    let http = reqwest::Client::builder()
        .user_agent(concat!("dawn-cli/", env!("CARGO_PKG_VERSION"), " (mcp)"))
        .connect_timeout(CONNECT_TIMEOUT)
        // As rmcp's default client: no idle connection reuse (avoids
        // delayed-ACK stalls after a partly read body), no redirects.
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .context("cannot set up the HTTP client")?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let mut upstream = StreamableHttpClientTransport::with_client(http, config);
    let (stdin, stdout) = rmcp::transport::io::stdio_pipes();
    let mut downstream = StdioTransport::new(stdin, stdout);

    let end = pump::run(
        &mut downstream,
        &mut upstream,
        stop_requested(),
        DRAIN_TIMEOUT,
    )
    .await;
    tracing::info!(?end, "closing the MCP session");
    // Ends the session on the node (HTTP DELETE) when there is one.
    match tokio::time::timeout(CLOSE_TIMEOUT, upstream.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("closing the MCP session: {}", pump::describe(&e)),
        Err(_) => tracing::warn!("closing the MCP session timed out"),
    }
    if let Err(e) = downstream.close().await {
        tracing::debug!("closing stdout: {e}");
    }
    match end {
        PumpEnd::ClientClosed | PumpEnd::Stopped => Ok(ExitCode::SUCCESS),
        PumpEnd::UpstreamClosed(reason) => {
            let reason = reason.unwrap_or_else(|| "the node closed the connection".to_owned());
            let hint = if reason.contains("HTTP 404") {
                " (the node serves no MCP there: is mcp.enabled false in its config?)"
            } else {
                ""
            };
            Err(anyhow!(
                "the MCP session with the node at {url} ended: {reason}{hint}"
            ))
        }
    }
}

/// Completes on SIGTERM, SIGINT or SIGHUP (what MCP clients send when the
/// bridge does not exit after they close its stdin).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams: Vec<_> = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|kind| signal(kind).ok())
        .collect();
        if streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = streams
            .into_iter()
            .map(|mut s| Box::pin(async move { s.recv().await }));
        let _ = futures::future::select_all(waits).await;
        tracing::info!("stop signal received");
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Logs to stderr, only when asked: `$RUST_LOG` if set, else by `-v` count.
fn init_logging(verbose: u8) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok());
    let filter = match (from_env, verbose) {
        (Some(filter), _) => filter,
        (None, 0) => return,
        (None, 1) => EnvFilter::new("warn,dawn_cli=info,rmcp=info"),
        (None, 2) => EnvFilter::new("info,dawn_cli=debug,rmcp=debug"),
        (None, _) => EnvFilter::new("debug,dawn_cli=trace,rmcp=trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn agent_addresses_choose_the_endpoint() {
        assert_eq!(endpoint_path(None), "mcp");
        let local: AgentAddress = "system".parse().unwrap();
        assert_eq!(endpoint_path(Some(&local)), "mcp/agents/system");
        let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let remote: AgentAddress = format!("{peer}/echo-bot").parse().unwrap();
        assert_eq!(
            endpoint_path(Some(&remote)),
            format!("mcp/peers/{peer}/agents/echo-bot")
        );
        let base = crate::endpoint::parse_api_url("http://127.0.0.1:9090/node").unwrap();
        assert_eq!(
            base.join(&endpoint_path(Some(&local))).unwrap().as_str(),
            "http://127.0.0.1:9090/node/mcp/agents/system"
        );
    }
}
