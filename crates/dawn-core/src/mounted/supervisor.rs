//! The task that keeps one mounted server connected: start (spawn or
//! connect), handshake, list, serve until the server exits or the
//! connection fails, then wait a backoff delay and start again, until the
//! node stops.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use rmcp::{
    RoleClient, ServiceError, ServiceExt,
    model::ServerCapabilities,
    service::{Peer, RunningService},
    transport::{
        StreamableHttpClientTransport, async_rw::AsyncRwTransport,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio_util::sync::CancellationToken;

use super::{
    agent::{Connection, Inner, Lists, human, supports_subscribe},
    client::{Tapped, UpstreamClient},
    process,
    status::{MountedServerState, MountedTransport},
};
use crate::config::RestartPolicy;

/// How often a running server is pinged; a server that does not answer
/// within `startup_timeout` is treated as down.
const HEALTH_INTERVAL: Duration = Duration::from_secs(30);

/// Delays between restarts: exponential from `initial_backoff` to
/// `max_backoff`, each delay drawn between half and all of its nominal value
/// ("equal jitter", so that many nodes do not retry a shared server in
/// lockstep and `max_backoff` stays the upper bound).
struct Backoff {
    builder: ExponentialBuilder,
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
}

impl Backoff {
    fn new(policy: &RestartPolicy) -> Self {
        // backon's jitter adds up to 100% of the delay: halve both bounds.
        let builder = ExponentialBuilder::default()
            .with_min_delay(policy.initial_backoff.0 / 2)
            .with_max_delay(policy.max_backoff.0 / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build(),
            max: policy.max_backoff.0,
        }
    }

    fn next(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// How one run of the server ended.
enum Ended {
    /// The node is stopping; the server was stopped.
    Stopped,
    /// Cannot work without a configuration change; do not retry.
    Fatal(String),
    /// Failed to start, or stopped working after `up_for` of service.
    Down {
        error: String,
        up_for: Option<Duration>,
    },
}

/// Supervises one mounted server until `stop` fires.
pub(super) async fn run(inner: Arc<Inner>, stop: CancellationToken) {
    let id = inner.id.clone();
    let mut backoff = Backoff::new(&inner.config.restart);
    let mut attempt: u32 = 0;
    let mut first = true;
    loop {
        if stop.is_cancelled() {
            break;
        }
        if !first {
            inner.count_restart();
        }
        first = false;
        inner.set_state(MountedServerState::Starting);
        let ended = match inner.transport {
            MountedTransport::Stdio => run_stdio(&inner, &stop).await,
            MountedTransport::Http => run_http(&inner, &stop).await,
        };
        inner.disconnected();
        match ended {
            Ended::Stopped => break,
            Ended::Fatal(error) => {
                tracing::error!(server = %id, %error, "mounted server cannot start; not retrying until the configuration changes");
                inner.set_state(MountedServerState::Failed { error });
                stop.cancelled().await;
                break;
            }
            Ended::Down { error, up_for } => {
                if up_for.is_some_and(|d| d >= inner.config.restart.reset_after.0) {
                    backoff.reset();
                    attempt = 0;
                }
                attempt = attempt.saturating_add(1);
                let delay = backoff.next();
                tracing::warn!(
                    server = %id,
                    attempt,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    up_for_ms = up_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    %error,
                    "mounted server is down; will start it again"
                );
                inner.set_state(MountedServerState::Restarting {
                    attempt,
                    next_in: delay,
                    last_error: error,
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    inner.set_pid(None);
    inner.set_state(MountedServerState::Stopped);
    tracing::info!(server = %id, "mounted server stopped");
}

/// Reads everything the server offers, per its capabilities. A list method
/// the server answers with an MCP error (say, `resources/templates/list` on
/// a server that advertises resources but has no templates) counts as
/// empty; transport failures fail the listing.
async fn fetch_lists(
    id: &str,
    peer: &Peer<RoleClient>,
    capabilities: &ServerCapabilities,
) -> Result<Lists, ServiceError> {
    fn tolerate<T>(
        id: &str,
        what: &str,
        r: Result<Vec<T>, ServiceError>,
    ) -> Result<Vec<T>, ServiceError> {
        match r {
            Err(ServiceError::McpError(error)) => {
                tracing::warn!(server = %id, list = what, error = %error.message, "mounted server refused a list request; treating it as empty");
                Ok(Vec::new())
            }
            other => other,
        }
    }
    let mut lists = Lists::default();
    if capabilities.tools.is_some() {
        lists.tools = tolerate(id, "tools", peer.list_all_tools().await)?;
    }
    if capabilities.resources.is_some() {
        lists.resources = tolerate(id, "resources", peer.list_all_resources().await)?;
        lists.templates = tolerate(
            id,
            "resource templates",
            peer.list_all_resource_templates().await,
        )?;
    }
    if capabilities.prompts.is_some() {
        lists.prompts = tolerate(id, "prompts", peer.list_all_prompts().await)?;
    }
    Ok(lists)
}

/// Handshake and first listing over `transport`.
async fn connect<T>(
    inner: &Arc<Inner>,
    transport: T,
    generation: u64,
    ct: CancellationToken,
) -> Result<
    (
        RunningService<RoleClient, UpstreamClient>,
        Arc<Connection>,
        Lists,
    ),
    String,
>
where
    T: rmcp::transport::Transport<RoleClient> + 'static,
{
    let client = UpstreamClient {
        inner: inner.clone(),
    };
    let service = client
        .serve_with_ct(
            Tapped {
                inner: transport,
                agent: inner.clone(),
                generation,
            },
            ct,
        )
        .await
        .map_err(|e| format!("MCP handshake failed: {e}"))?;
    let peer = service.peer().clone();
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let lists = fetch_lists(&inner.id, &peer, &capabilities)
        .await
        .map_err(|e| format!("listing tools, resources and prompts failed: {e}"))?;
    let conn = Arc::new(Connection {
        peer,
        generation,
        capabilities,
    });
    Ok((service, conn, lists))
}

/// Subscribes again, on a new connection, to the resources clients watch.
async fn resubscribe(inner: &Inner, conn: &Connection) {
    if !supports_subscribe(Some(conn)) {
        return;
    }
    for uri in inner.subscribed_uris() {
        let params = rmcp::model::SubscribeRequestParams::new(uri.clone());
        #[allow(deprecated)] // resources/subscribe is part of 2025-11-25
        let result = conn.peer.subscribe(params).await;
        if let Err(error) = result {
            tracing::warn!(server = %inner.id, %uri, %error, "cannot subscribe again to a resource after reconnecting");
        }
    }
}

/// Why a connected server stopped serving.
enum Interrupted {
    Stop,
    Failed(String),
}

/// Serves a connected server until it fails or `stop` fires: refreshes the
/// lists on list-changed notifications and checks its health. `exited`
/// resolves (with a reason) when a stdio server's process exits; for HTTP
/// it never does.
async fn serve(
    inner: &Arc<Inner>,
    service: RunningService<RoleClient, UpstreamClient>,
    conn: &Arc<Connection>,
    stop: &CancellationToken,
    exited: Option<impl Future<Output = String>>,
) -> Interrupted {
    let timeout = inner.config.startup_timeout.0;
    let peer = conn.peer.clone();
    let has_process = exited.is_some();
    let closed = service.waiting();
    let exited = async move {
        match exited {
            Some(exited) => exited.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(closed, exited);
    let mut health = tokio::time::interval_at(
        tokio::time::Instant::now() + HEALTH_INTERVAL,
        HEALTH_INTERVAL,
    );
    loop {
        let check = tokio::select! {
            () = stop.cancelled() => return Interrupted::Stop,
            reason = &mut exited => return Interrupted::Failed(reason),
            _ = &mut closed => {
                // A process that exits closes its stdout too: prefer its
                // exit status as the reason when it comes soon.
                if has_process
                    && let Ok(reason) = tokio::time::timeout(Duration::from_secs(1), &mut exited).await
                {
                    return Interrupted::Failed(reason);
                }
                return Interrupted::Failed("the connection closed".into());
            }
            () = inner.refresh.notified() => {
                match tokio::time::timeout(timeout, fetch_lists(&inner.id, &peer, &conn.capabilities)).await {
                    Ok(Ok(lists)) => {
                        tracing::info!(server = %inner.id, tools = lists.tools.len(), resources = lists.resources.len(), prompts = lists.prompts.len(), "mounted server's lists changed");
                        inner.replace_lists(lists);
                    }
                    Ok(Err(error)) => tracing::warn!(server = %inner.id, %error, "cannot list the mounted server's tools, resources and prompts after a change"),
                    Err(_) => tracing::warn!(server = %inner.id, "listing the mounted server's tools, resources and prompts timed out"),
                }
                false
            }
            () = inner.suspect.notified() => true,
            _ = health.tick() => true,
        };
        if check {
            match tokio::time::timeout(timeout, peer.send_request(ping())).await {
                // Any answer, even an error, shows the server is there.
                Ok(Ok(_) | Err(ServiceError::McpError(_))) => {}
                Ok(Err(error)) => {
                    return Interrupted::Failed(format!("it does not answer: {error}"));
                }
                Err(_) => {
                    return Interrupted::Failed(format!(
                        "it did not answer a ping within {}",
                        human(timeout)
                    ));
                }
            }
        }
    }
}

fn ping() -> rmcp::model::ClientRequest {
    rmcp::model::ClientRequest::PingRequest(Default::default())
}

async fn run_stdio(inner: &Arc<Inner>, stop: &CancellationToken) -> Ended {
    let config = &inner.config;
    let command = config.command.clone().unwrap_or_default();
    let spawned = match process::spawn(config) {
        Ok(s) => s,
        Err(e) => {
            return Ended::Down {
                error: format!("cannot start {command:?}: {e}"),
                up_for: None,
            };
        }
    };
    let process::Spawned {
        mut child,
        stdout,
        stdin,
        stderr,
    } = spawned;
    let pid = child.id();
    inner.set_pid(pid);
    tracing::info!(server = %inner.id, command, pid, "mounted server started");
    let stderr_inner = inner.clone();
    let stderr_task = tokio::spawn(async move {
        let id = stderr_inner.id.clone();
        process::read_lines(stderr, |line| {
            tracing::info!(server = %id, line = %line, "mounted server stderr");
            stderr_inner.push_stderr(line);
        })
        .await;
    });
    let generation = inner.next_generation();
    let ct = CancellationToken::new();
    let transport = AsyncRwTransport::new(stdout, stdin);

    // Start: handshake and first listing, unless the child dies first.
    let started = tokio::select! {
        r = tokio::time::timeout(config.startup_timeout.0, connect(inner, transport, generation, ct.clone())) => match r {
            Ok(Ok(started)) => Ok(started),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("it did not complete the MCP handshake and listing within {}", human(config.startup_timeout.0))),
        },
        status = child.wait() => Err(match status {
            Ok(status) => format!("it exited during startup ({status})"),
            Err(e) => format!("waiting for it failed: {e}"),
        }),
        () = stop.cancelled() => {
            ct.cancel();
            process::stop(&mut child, pid).await;
            return Ended::Stopped;
        }
    };
    let (service, conn) = match started {
        Ok((service, conn, lists)) => {
            inner.connected(conn.clone(), lists);
            (service, conn)
        }
        Err(mut error) => {
            ct.cancel();
            // If it exited, say how.
            if !error.contains("exited")
                && let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_millis(500), child.wait()).await
            {
                error = format!("{error} (it exited: {status})");
            }
            process::kill(&mut child, pid).await;
            let error = with_stderr(inner, stderr_task, error).await;
            return Ended::Down {
                error,
                up_for: None,
            };
        }
    };
    tracing::info!(server = %inner.id, pid, server_info = ?inner.status().server, "mounted server is running");
    resubscribe(inner, &conn).await;
    let up_since = Instant::now();

    let exited = async {
        match child.wait().await {
            Ok(status) => format!("it exited ({status})"),
            Err(e) => format!("waiting for it failed: {e}"),
        }
    };
    let interrupted = serve(inner, service, &conn, stop, Some(exited)).await;
    // Closing the service closes the child's stdin.
    ct.cancel();
    match interrupted {
        Interrupted::Stop => {
            process::stop(&mut child, pid).await;
            let _ = tokio::time::timeout(process::EXIT_GRACE, stderr_task).await;
            Ended::Stopped
        }
        Interrupted::Failed(error) => {
            process::kill(&mut child, pid).await;
            let error = with_stderr(inner, stderr_task, error).await;
            Ended::Down {
                error,
                up_for: Some(up_since.elapsed()),
            }
        }
    }
}

/// Adds the last stderr line (often the reason) to an error, after giving
/// the reader a moment to catch up with a dead child's output.
async fn with_stderr(
    inner: &Inner,
    stderr_task: tokio::task::JoinHandle<()>,
    error: String,
) -> String {
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_task).await;
    match inner.last_stderr_line() {
        Some(line) if !line.trim().is_empty() => format!("{error}; last stderr line: {line}"),
        _ => error,
    }
}

async fn run_http(inner: &Arc<Inner>, stop: &CancellationToken) -> Ended {
    let config = &inner.config;
    let url = config.url.clone().unwrap_or_default();
    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(var) = &config.bearer_token_env {
        match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => {
                transport_config = transport_config.auth_header(token.trim().to_owned());
            }
            _ => {
                return Ended::Fatal(format!(
                    "the environment variable {var} (mcp.servers[].bearer_token_env) is not set"
                ));
            }
        }
    }
    let mut headers = HashMap::new();
    for (name, value) in &config.headers {
        match (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => return Ended::Fatal(format!("the header {name:?} is not valid")),
        }
    }
    let transport_config = transport_config
        .custom_headers(headers)
        .reinit_on_expired_session(true);
    let transport = StreamableHttpClientTransport::from_config(transport_config);
    let generation = inner.next_generation();
    let ct = CancellationToken::new();
    let started = tokio::select! {
        r = tokio::time::timeout(config.startup_timeout.0, connect(inner, transport, generation, ct.clone())) => match r {
            Ok(r) => r,
            Err(_) => Err(format!("it did not complete the MCP handshake and listing within {}", human(config.startup_timeout.0))),
        },
        () = stop.cancelled() => {
            ct.cancel();
            return Ended::Stopped;
        }
    };
    let (service, conn) = match started {
        Ok((service, conn, lists)) => {
            inner.connected(conn.clone(), lists);
            (service, conn)
        }
        Err(error) => {
            ct.cancel();
            return Ended::Down {
                error,
                up_for: None,
            };
        }
    };
    tracing::info!(server = %inner.id, server_info = ?inner.status().server, "mounted server is connected");
    resubscribe(inner, &conn).await;
    let up_since = Instant::now();
    let interrupted = serve(
        inner,
        service,
        &conn,
        stop,
        None::<std::future::Ready<String>>,
    )
    .await;
    ct.cancel();
    match interrupted {
        Interrupted::Stop => Ended::Stopped,
        Interrupted::Failed(error) => Ended::Down {
            error,
            up_for: Some(up_since.elapsed()),
        },
    }
}
