//! A small client for the node's HTTP API (`/api/v1/...`): one pooled
//! `reqwest` client, bearer auth, and errors that read as one clear line.

use std::{error::Error as _, fmt, time::Duration};

use bytes::Bytes;
use dawn_core::{AgentSummary, DataDir};
use reqwest::{
    StatusCode, Url,
    header::{self, HeaderValue},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use crate::endpoint::{AddressSource, Endpoint, TokenSource};

/// How long to wait for a TCP connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an answer when the caller sets no deadline.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Extra time given to the HTTP request beyond a call's own deadline, so the
/// node's deadline error arrives before the client gives up.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// An error reported by the node: a JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemoteError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// The node's message.
    pub message: String,
    /// Details; Dawn errors carry `{"kind": "<label>"}`.
    #[serde(default)]
    pub data: Option<Value>,
}

impl RemoteError {
    /// The error kind label (`unknown_agent`, ...), if the node gave one.
    pub fn kind(&self) -> Option<&str> {
        self.data.as_ref()?.get("kind")?.as_str()
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Some(kind) => write!(f, "{} ({kind}, code {})", self.message, self.code),
            None => write!(f, "{} (code {})", self.message, self.code),
        }
    }
}

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The node answered with an error object.
    #[error("{0}")]
    Remote(RemoteError),
    /// No connection could be made, or it broke.
    #[error("cannot reach the node API at {url}: {reason}{hint}")]
    Unreachable {
        /// The API base URL.
        url: String,
        /// What went wrong, e.g. "connection refused".
        reason: String,
        /// Extra advice (starts with "; "), or empty.
        hint: String,
    },
    /// No answer in time.
    #[error("no answer from the node API at {url} within {secs} s")]
    Timeout {
        /// The API base URL.
        url: String,
        /// The time waited.
        secs: u64,
    },
    /// The token is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// The answer is not what a Dawn node sends.
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected {
        /// The request URL.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// A client for one node's API.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    auth: Option<HeaderValue>,
    token_source: TokenSource,
    address_source: AddressSource,
    data_dir: DataDir,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .field("token_source", &self.token_source)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `endpoint`; `pool_size` idle connections are kept.
    pub fn new(endpoint: Endpoint, pool_size: usize) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("dawn-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(DEFAULT_REQUEST_TIMEOUT)
            .pool_max_idle_per_host(pool_size)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let auth = match &endpoint.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "the API token from {} is not a valid header value",
                            endpoint.token_source
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(ApiClient {
            http,
            base: endpoint.base,
            auth,
            token_source: endpoint.token_source,
            address_source: endpoint.address_source,
            data_dir: endpoint.data_dir,
        })
    }

    /// The base URL without its trailing slash, for messages.
    pub fn base_display(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, path: &str) -> Result<Url, ApiError> {
        self.base.join(path).map_err(|e| ApiError::Unexpected {
            url: self.base_display(),
            detail: format!("cannot build the URL for {path}: {e}"),
        })
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<Value, ApiError> {
        self.get(self.url("api/v1/status")?).await
    }

    /// `GET /api/v1/peers`.
    pub async fn peers(&self) -> Result<Value, ApiError> {
        self.get(self.url("api/v1/peers")?).await
    }

    /// `GET /api/v1/agents`.
    pub async fn agents(&self) -> Result<Value, ApiError> {
        self.get(self.url("api/v1/agents")?).await
    }

    /// `GET /api/v1/tools?agent=ADDRESS`.
    pub async fn tools(&self, agent: &str) -> Result<Value, ApiError> {
        let mut url = self.url("api/v1/tools")?;
        url.query_pairs_mut().append_pair("agent", agent);
        self.get(url).await
    }

    /// `POST /api/v1/call`; returns the answer, whose `result` member is
    /// the MCP `CallToolResult`.
    pub async fn call(
        &self,
        agent: &str,
        tool: &str,
        arguments: &Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, ApiError> {
        let mut body = json!({ "agent": agent, "tool": tool, "arguments": arguments });
        if let Some(t) = timeout {
            body["timeout_ms"] = json!(u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        }
        let body = Bytes::from(body.to_string());
        let request_timeout = timeout.map_or(DEFAULT_REQUEST_TIMEOUT, |t| t + DEADLINE_MARGIN);
        self.call_raw(body, request_timeout).await
    }

    /// `POST /api/v1/call` with a prepared body (the benchmark reuses one);
    /// returns the whole answer, `{"result": CallToolResult}`.
    pub async fn call_raw(&self, body: Bytes, timeout: Duration) -> Result<Value, ApiError> {
        let url = self.url("api/v1/call")?;
        let request = self
            .authorize(self.http.post(url.clone()))
            .header(header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        let answer: Value = self.send(url.clone(), request, timeout).await?;
        if answer.get("result").is_some_and(Value::is_object) {
            Ok(answer)
        } else {
            Err(ApiError::Unexpected {
                url: url.to_string(),
                detail: "the answer has no \"result\" object".into(),
            })
        }
    }

    /// `POST <path>` with a JSON body, waiting up to `timeout` for the answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let url = self.url(path)?;
        let request = self
            .authorize(self.http.post(url.clone()))
            .header(header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body.to_string());
        self.send(url, request, timeout).await
    }

    /// Any JSON request to `path` (relative to the base URL), with an
    /// optional JSON body; returns the answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = self.url(path)?;
        let mut request = self.authorize(self.http.request(method, url.clone()));
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        self.send(url, request, DEFAULT_REQUEST_TIMEOUT).await
    }

    /// `GET <path>` for endpoints whose error statuses carry a normal JSON
    /// body (the health endpoints answer 503 with their report): returns
    /// the HTTP status with the body.
    pub async fn get_with_status(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(u16, Value), ApiError> {
        let url = self.url(path)?;
        let response = self
            .authorize(self.http.get(url.clone()))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(&e, timeout))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, timeout))?;
        if status == StatusCode::UNAUTHORIZED {
            let remote = serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .map(|b| b.error);
            return Err(ApiError::Unauthorized(
                self.unauthorized_message(remote.as_ref()),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(|value| (status.as_u16(), value))
            .map_err(|_| ApiError::Unexpected {
                url: url.to_string(),
                detail: format!("HTTP {status}: {}", snippet(&bytes)),
            })
    }

    async fn get(&self, url: Url) -> Result<Value, ApiError> {
        let request = self.authorize(self.http.get(url.clone()));
        self.send(url, request, DEFAULT_REQUEST_TIMEOUT).await
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(value) => request.header(header::AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: Url,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&e, timeout))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, timeout))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ApiError::Unexpected {
                url: url.to_string(),
                detail: format!("{e} (is this a Dawn node API?)"),
            });
        }
        let remote = serde_json::from_slice::<ErrorBody>(&bytes)
            .ok()
            .map(|b| b.error);
        if status == StatusCode::UNAUTHORIZED {
            return Err(ApiError::Unauthorized(
                self.unauthorized_message(remote.as_ref()),
            ));
        }
        match remote {
            Some(error) => Err(ApiError::Remote(error)),
            None => Err(ApiError::Unexpected {
                url: url.to_string(),
                detail: format!("HTTP {status}: {}", snippet(&bytes)),
            }),
        }
    }

    fn unauthorized_message(&self, remote: Option<&RemoteError>) -> String {
        let url = self.base_display();
        let detail = remote.map(|e| e.message.as_str()).unwrap_or("HTTP 401");
        match &self.token_source {
            TokenSource::None { looked_for } => format!(
                "the node API at {url} requires a bearer token and none was found \
                 (no {}); pass --token-file FILE or set $DAWN_API_TOKEN",
                looked_for.display()
            ),
            source => {
                format!("the node API at {url} rejected the API token from {source} ({detail})")
            }
        }
    }

    fn transport_error(&self, error: &reqwest::Error, timeout: Duration) -> ApiError {
        let url = self.base_display();
        if error.is_timeout() {
            let secs = if error.is_connect() {
                CONNECT_TIMEOUT
            } else {
                timeout
            };
            return ApiError::Timeout {
                url,
                secs: secs.as_secs(),
            };
        }
        ApiError::Unreachable {
            url,
            reason: root_cause(error),
            hint: self.unreachable_hint(),
        }
    }

    /// When the address came from `api.addr` and no node holds the data
    /// directory any more, the file is stale.
    fn unreachable_hint(&self) -> String {
        match &self.address_source {
            AddressSource::AddrFile(file) if !self.data_dir.is_locked() => format!(
                "; no node holds {} any more ({} is stale); start one with dawn-node --data-root {}",
                self.data_dir.root().display(),
                file.display(),
                self.data_dir.root().display()
            ),
            _ => String::new(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: RemoteError,
}

/// The innermost cause of a transport error, phrased for people.
pub(crate) fn root_cause(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    let mut last = None;
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset by the node".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            };
        }
        last = Some(current);
        source = current.source();
    }
    match last {
        Some(cause) => cause.to_string(),
        None => error.to_string(),
    }
}

/// The start of a body, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short.replace('\n', " ")
}

/// `GET /api/v1/status`, typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The node's peer id.
    pub node_id: String,
    /// Its version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Addresses peers can dial (with `/p2p/`).
    pub listen_addrs: Vec<String>,
    /// The API's address.
    pub api_addr: Option<String>,
    /// Its data directory.
    pub data_root: String,
    /// Number of connected peers.
    pub peers_connected: u64,
    /// Local agent ids.
    pub agents: Vec<String>,
    /// Whether it is stopping.
    pub shutting_down: bool,
}

/// One entry of `GET /api/v1/peers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Peer {
    /// Peer id.
    pub peer_id: String,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `tcp`, `quic` or `memory`.
    pub transport: String,
    /// When the connection was made (ms since the Unix epoch).
    pub connected_since_ms: Option<u64>,
    /// The peer's software version.
    pub agent_version: Option<String>,
    /// Last ping round trip.
    pub rtt_ms: Option<f64>,
}

/// `GET /api/v1/peers`, typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Peers {
    /// Connected peers.
    pub peers: Vec<Peer>,
}

/// The agents of one remote peer.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteAgents {
    /// The peer.
    pub peer_id: String,
    /// Its agents.
    #[serde(default)]
    pub agents: Vec<AgentSummary>,
    /// Whether the registry considers it reachable now (older nodes, which
    /// listed connected peers only, do not say: reachable).
    #[serde(default = "yes")]
    pub available: bool,
    /// `false` while the entry comes from the node's cache and no peer has
    /// confirmed it yet.
    #[serde(default = "yes")]
    pub confirmed: bool,
}

fn yes() -> bool {
    true
}

/// `GET /api/v1/agents`, typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Agents {
    /// The node's peer id.
    pub node_id: String,
    /// Local agents.
    pub local: Vec<AgentSummary>,
    /// Agents of the other nodes of the mesh registry.
    pub remote: Vec<RemoteAgents>,
}

/// Decodes a typed view of an API answer.
pub fn decode<T: DeserializeOwned>(what: &str, value: &Value) -> Result<T, ApiError> {
    T::deserialize(value).map_err(|e| ApiError::Unexpected {
        url: what.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn remote_errors_name_kind_and_code() {
        let e: ErrorBody = serde_json::from_value(json!({"error": {
            "code": -32003, "message": "no agent nope", "data": {"kind": "unknown_agent"}
        }}))
        .unwrap();
        assert_eq!(
            e.error.to_string(),
            "no agent nope (unknown_agent, code -32003)"
        );
        let bare = RemoteError {
            code: -32600,
            message: "bad".into(),
            data: None,
        };
        assert_eq!(bare.to_string(), "bad (code -32600)");
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"a\nb"), "a b");
        assert!(snippet(&[b'x'; 1000]).chars().count() <= 201);
    }
}
