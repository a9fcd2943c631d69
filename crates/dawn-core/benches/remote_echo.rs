//! Remote `echo` between two nodes over TCP on 127.0.0.1, against a plain
//! rust-libp2p request-response echo measured in the same run.
//!
//! Rows (all over TCP 127.0.0.1 + Noise + Yamux, 256-byte payloads):
//!
//! - `baseline`: two swarms with `request_response::cbor::Behaviour<Vec<u8>,
//!   Vec<u8>>` (one stream per request). The load generator runs inside the
//!   client swarm's event loop, so no channel hop is added: the tightest
//!   possible request-response figure, and the reference for the goals.
//! - `baseline-handle`: the same swarms driven through a cloneable handle
//!   (an mpsc channel into the swarm task, a oneshot back), the way programs
//!   usually wrap a swarm. Informational.
//! - `transport`: dawn-transport's raw `Transport::call` with an echo
//!   responder (one multiplexed stream per peer, opaque bodies). Shows the
//!   cost of the MCP/JSON layer separately.
//! - `dawn`: `Node::call_tool(peer/system, "echo", {"message": ...})`, the
//!   full remote MCP tools/call path, with every resilience mechanism on
//!   (rate limit with a quota far above the load, bulkhead, circuit breaker,
//!   retries, deadlines).
//! - `dawn-unguarded`: the same between two other nodes whose rate limit,
//!   bulkhead, circuit breaker and retries are switched off in their config.
//!   Against `dawn` in the same round it gives the cost of the resilience
//!   layer (goal: under 5% of throughput with 64 in flight).
//!
//! Each row is measured two ways: one call at a time (every call timed,
//! p50/p90/p99), and with 64 calls in flight for a fixed window (calls/s).
//! Goals (against `baseline` in the same run): dawn one-at-a-time p50 at most
//! 1.3x, dawn throughput with 64 in flight at least 3x.
//!
//! Run: `cargo bench -p dawn-core --bench remote_echo` (add `-- --quick` for a
//! few-second smoke run). Results are printed and written as JSON to
//! `<target>/bench-results/remote_echo.json`. See `docs/benchmarks.md`.
//!
//! Knobs (arguments after `--`, or environment):
//! `--quick` / `DAWN_BENCH_QUICK=1`, `--rounds N` / `DAWN_BENCH_ROUNDS`,
//! `--calls N` / `DAWN_BENCH_CALLS` (timed sequential calls per row),
//! `--secs S` / `DAWN_BENCH_SECS` (measurement window),
//! `--inflight N` / `DAWN_BENCH_INFLIGHT`, `--only a,b` / `DAWN_BENCH_ONLY`
//! (rows to run, e.g. `dawn` alone for profiling; ratios need `baseline`),
//! `--out PATH` / `DAWN_BENCH_OUT`,
//! `--no-concurrent`, `--no-sequential`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::{
    collections::{BTreeMap, HashMap},
    error::Error,
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use dawn_core::{AgentAddress, DawnConfig, Node, NodeBuilder};
use dawn_transport::{Transport, TransportConfig};
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, noise,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;
type CallFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Makes one call and checks its answer.
type CallFn = Arc<dyn Fn() -> CallFuture + Send + Sync>;
/// (completion time since the run started, latency), both in ns.
type Samples = Vec<(u64, u64)>;

const PAYLOAD_LEN: usize = 256;
const LAT_GOAL: f64 = 1.3;
const TPUT_GOAL: f64 = 3.0;
const ROWS: [&str; 5] = [
    "baseline",
    "baseline-handle",
    "transport",
    "dawn",
    "dawn-unguarded",
];
/// Most throughput the resilience layer may cost (`dawn` against
/// `dawn-unguarded`).
const RESILIENCE_OVERHEAD_GOAL: f64 = 0.05;

// ---------------------------------------------------------------- settings

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    rounds: usize,
    seq_warmup: usize,
    seq_calls: usize,
    inflight: usize,
    warmup: Duration,
    window: Duration,
    only: Vec<String>,
    sequential: bool,
    concurrent: bool,
    out: Option<PathBuf>,
}

fn env_parse<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

impl Settings {
    fn from_env_and_args() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let flag = |name: &str| args.iter().any(|a| a == name);
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let quick = flag("--quick")
            || std::env::var("DAWN_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let mut s = if quick {
            Settings {
                quick,
                rounds: 1,
                seq_warmup: 300,
                seq_calls: 1_000,
                inflight: 64,
                warmup: Duration::from_millis(300),
                window: Duration::from_millis(700),
                only: Vec::new(),
                sequential: true,
                concurrent: true,
                out: None,
            }
        } else {
            Settings {
                quick,
                rounds: 3,
                seq_warmup: 2_000,
                seq_calls: 10_000,
                inflight: 64,
                warmup: Duration::from_secs(1),
                window: Duration::from_secs(5),
                only: Vec::new(),
                sequential: true,
                concurrent: true,
                out: None,
            }
        };
        if let Some(n) = value("--rounds")
            .and_then(|v| v.parse().ok())
            .or_else(|| env_parse("DAWN_BENCH_ROUNDS"))
        {
            s.rounds = std::cmp::max(1, n);
        }
        if let Some(n) = value("--calls")
            .and_then(|v| v.parse().ok())
            .or_else(|| env_parse("DAWN_BENCH_CALLS"))
        {
            s.seq_calls = std::cmp::max(1, n);
        }
        if let Some(secs) = value("--secs")
            .and_then(|v| v.parse::<f64>().ok())
            .or_else(|| env_parse("DAWN_BENCH_SECS"))
        {
            s.window = Duration::from_secs_f64(secs.max(0.05));
        }
        if let Some(n) = value("--inflight")
            .and_then(|v| v.parse().ok())
            .or_else(|| env_parse("DAWN_BENCH_INFLIGHT"))
        {
            s.inflight = std::cmp::max(1, n);
        }
        if let Some(only) = value("--only").or_else(|| std::env::var("DAWN_BENCH_ONLY").ok()) {
            s.only = only
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect();
        }
        s.out = value("--out")
            .or_else(|| std::env::var("DAWN_BENCH_OUT").ok())
            .map(PathBuf::from);
        if flag("--no-concurrent") {
            s.concurrent = false;
        }
        if flag("--no-sequential") {
            s.sequential = false;
        }
        s
    }

    fn runs(&self, row: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|r| r == row)
    }

    fn to_json(&self) -> Value {
        json!({
            "quick": self.quick,
            "rounds": self.rounds,
            "payload_bytes": PAYLOAD_LEN,
            "sequential_warmup_calls": self.seq_warmup,
            "sequential_calls": self.seq_calls,
            "inflight": self.inflight,
            "concurrent_warmup_secs": self.warmup.as_secs_f64(),
            "concurrent_window_secs": self.window.as_secs_f64(),
            "rows": ROWS.iter().filter(|r| self.runs(r)).collect::<Vec<_>>(),
        })
    }
}

// ---------------------------------------------------------------- statistics

#[derive(Debug, Clone, Copy)]
struct Latency {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

/// Nearest-rank percentiles, in µs.
fn latency(mut ns: Vec<u64>) -> Latency {
    ns.sort_unstable();
    let n = ns.len();
    let us = |v: u64| v as f64 / 1000.0;
    let pct = |p: f64| {
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        us(ns[rank.clamp(1, n) - 1])
    };
    Latency {
        n,
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        mean: if n == 0 {
            0.0
        } else {
            ns.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1000.0
        },
        min: ns.first().map_or(0.0, |&v| us(v)),
        max: ns.last().map_or(0.0, |&v| us(v)),
    }
}

impl Latency {
    fn to_json(self) -> Value {
        json!({
            "n": self.n, "p50_us": self.p50, "p90_us": self.p90, "p99_us": self.p99,
            "mean_us": self.mean, "min_us": self.min, "max_us": self.max,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sequential {
    latency: Latency,
    /// Timed calls divided by the wall time they took.
    calls_per_sec: f64,
    cpu: Option<CpuUse>,
}

/// Process CPU time spent per call, and how many cores were busy on average.
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    us_per_call: f64,
    cores_used: f64,
}

impl CpuUse {
    fn to_json(self) -> Value {
        json!({ "cpu_us_per_call": self.us_per_call, "cores_used": self.cores_used })
    }
}

/// CPU time (user + system, all threads) of this process so far. Linux only
/// (`/proc/self/stat`, 10 ms ticks); `None` elsewhere.
fn process_cpu() -> Option<Duration> {
    const CLK_TCK: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / CLK_TCK))
}

/// Measures CPU use between `start` and now over `calls` calls.
struct CpuMeter {
    cpu: Option<Duration>,
    wall: Instant,
}

impl CpuMeter {
    fn start() -> CpuMeter {
        CpuMeter {
            cpu: process_cpu(),
            wall: Instant::now(),
        }
    }

    fn finish(&self, calls: usize) -> Option<CpuUse> {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = process_cpu()?.checked_sub(self.cpu?)?.as_secs_f64();
        if calls == 0 || wall <= 0.0 {
            return None;
        }
        Some(CpuUse {
            us_per_call: cpu * 1e6 / calls as f64,
            cores_used: cpu / wall,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Concurrent {
    inflight: usize,
    calls: usize,
    window_secs: f64,
    calls_per_sec: f64,
    latency: Latency,
    /// Over the whole run (warm-up and window), per completed call.
    cpu: Option<CpuUse>,
}

fn concurrent_result(
    samples: &Samples,
    inflight: usize,
    warmup: Duration,
    window: Duration,
    cpu: Option<CpuUse>,
) -> Concurrent {
    let from = warmup.as_nanos() as u64;
    let to = (warmup + window).as_nanos() as u64;
    let lat: Vec<u64> = samples
        .iter()
        .filter(|(end, _)| *end >= from && *end < to)
        .map(|(_, l)| *l)
        .collect();
    let calls = lat.len();
    Concurrent {
        inflight,
        calls,
        window_secs: window.as_secs_f64(),
        calls_per_sec: calls as f64 / window.as_secs_f64(),
        latency: latency(lat),
        cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

// ---------------------------------------------------------------- generic drivers

/// One call at a time: `warmup` untimed calls, then `n` timed ones.
async fn run_sequential(call: &CallFn, warmup: usize, n: usize) -> Sequential {
    for _ in 0..warmup {
        call().await.expect("warm-up call failed");
    }
    let mut lat = Vec::with_capacity(n);
    let meter = CpuMeter::start();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        call().await.expect("call failed");
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let total = started.elapsed().as_secs_f64();
    Sequential {
        latency: latency(lat),
        calls_per_sec: n as f64 / total,
        cpu: meter.finish(n),
    }
}

/// `inflight` tasks, each calling in a loop until `warmup + window` has
/// passed; only calls completing inside the window count.
async fn run_concurrent(
    call: &CallFn,
    inflight: usize,
    warmup: Duration,
    window: Duration,
) -> Concurrent {
    let meter = CpuMeter::start();
    let start = Instant::now();
    let end = start + warmup + window;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..inflight {
        let call = call.clone();
        tasks.spawn(async move {
            let mut samples: Samples = Vec::with_capacity(1 << 14);
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                call().await.expect("call failed");
                let now = Instant::now();
                samples.push(((now - start).as_nanos() as u64, (now - t).as_nanos() as u64));
            }
            samples
        });
    }
    let mut all = Samples::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("worker panicked"));
    }
    let cpu = meter.finish(all.len());
    concurrent_result(&all, inflight, warmup, window, cpu)
}

// ---------------------------------------------------------------- baseline: request-response

type EchoBehaviour = request_response::cbor::Behaviour<Vec<u8>, Vec<u8>>;
const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/dawn-bench/echo/1");

fn rr_swarm() -> BoxResult<Swarm<EchoBehaviour>> {
    let swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            // Same stack as dawn-transport's TCP path.
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            EchoBehaviour::new(
                [(ECHO_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(1024),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

async fn listen(swarm: &mut Swarm<EchoBehaviour>) -> BoxResult<Multiaddr> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok(address);
        }
    }
}

enum RrCommand {
    Call {
        payload: Vec<u8>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    Sequential {
        payload: Vec<u8>,
        warmup: usize,
        n: usize,
        reply: oneshot::Sender<Sequential>,
    },
    Concurrent {
        payload: Vec<u8>,
        inflight: usize,
        warmup: Duration,
        window: Duration,
        reply: oneshot::Sender<Concurrent>,
    },
}

/// Starts the responder and the client swarm task; returns the handle.
async fn start_baseline() -> BoxResult<mpsc::Sender<RrCommand>> {
    let mut server = rr_swarm()?;
    let server_id = *server.local_peer_id();
    let addr = listen(&mut server).await?;
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = server.select_next_some().await
            {
                let _ = server.behaviour_mut().send_response(channel, request);
            }
        }
    });
    let mut client = rr_swarm()?;
    client.dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))?;
    loop {
        match client.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == server_id => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                return Err(format!("baseline dial failed: {error}").into());
            }
            _ => {}
        }
    }
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(baseline_client(client, server_id, rx));
    Ok(tx)
}

/// The client swarm's task: serves handle calls, and runs the in-loop
/// measurements on request.
async fn baseline_client(
    mut swarm: Swarm<EchoBehaviour>,
    server: PeerId,
    mut commands: mpsc::Receiver<RrCommand>,
) {
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Vec<u8>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(RrCommand::Call { payload, reply }) => {
                    let id = swarm.behaviour_mut().send_request(&server, payload);
                    pending.insert(id, reply);
                }
                Some(RrCommand::Sequential { payload, warmup, n, reply }) => {
                    assert!(pending.is_empty(), "in-loop measurement with handle calls in flight");
                    let result = in_loop_sequential(&mut swarm, server, &payload, warmup, n).await;
                    let _ = reply.send(result);
                }
                Some(RrCommand::Concurrent { payload, inflight, warmup, window, reply }) => {
                    assert!(pending.is_empty(), "in-loop measurement with handle calls in flight");
                    let result = in_loop_concurrent(&mut swarm, server, &payload, inflight, warmup, window).await;
                    let _ = reply.send(result);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response },
                    ..
                }) => {
                    if let Some(reply) = pending.remove(&request_id) {
                        let _ = reply.send(response);
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                    panic!("baseline request failed: {error}");
                }
                _ => {}
            },
        }
    }
}

/// Waits for the response to any outstanding request; returns its id.
async fn next_response(swarm: &mut Swarm<EchoBehaviour>, len: usize) -> OutboundRequestId {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) => {
                assert_eq!(response.len(), len, "baseline echo returned other bytes");
                return request_id;
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("baseline request failed: {error}");
            }
            _ => {}
        }
    }
}

async fn in_loop_sequential(
    swarm: &mut Swarm<EchoBehaviour>,
    server: PeerId,
    payload: &[u8],
    warmup: usize,
    n: usize,
) -> Sequential {
    let mut lat = Vec::with_capacity(n);
    let mut started = Instant::now();
    let mut meter = CpuMeter::start();
    for i in 0..warmup + n {
        if i == warmup {
            started = Instant::now();
            meter = CpuMeter::start();
        }
        let t = Instant::now();
        let id = swarm
            .behaviour_mut()
            .send_request(&server, payload.to_vec());
        let got = next_response(swarm, payload.len()).await;
        assert_eq!(got, id);
        if i >= warmup {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    let total = started.elapsed().as_secs_f64();
    Sequential {
        latency: latency(lat),
        calls_per_sec: n as f64 / total,
        cpu: meter.finish(n),
    }
}

async fn in_loop_concurrent(
    swarm: &mut Swarm<EchoBehaviour>,
    server: PeerId,
    payload: &[u8],
    inflight: usize,
    warmup: Duration,
    window: Duration,
) -> Concurrent {
    let meter = CpuMeter::start();
    let start = Instant::now();
    let end = start + warmup + window;
    let mut sent: HashMap<OutboundRequestId, Instant> = HashMap::with_capacity(inflight * 2);
    let mut samples = Samples::with_capacity(1 << 16);
    for _ in 0..inflight {
        let id = swarm
            .behaviour_mut()
            .send_request(&server, payload.to_vec());
        sent.insert(id, Instant::now());
    }
    while !sent.is_empty() {
        let id = next_response(swarm, payload.len()).await;
        let now = Instant::now();
        let t = sent.remove(&id).expect("response to an unknown request");
        samples.push(((now - start).as_nanos() as u64, (now - t).as_nanos() as u64));
        if now < end {
            let id = swarm
                .behaviour_mut()
                .send_request(&server, payload.to_vec());
            sent.insert(id, Instant::now());
        }
    }
    let cpu = meter.finish(samples.len());
    concurrent_result(&samples, inflight, warmup, window, cpu)
}

fn baseline_handle_call(handle: mpsc::Sender<RrCommand>, payload: Vec<u8>) -> CallFn {
    let payload = Arc::new(payload);
    Arc::new(move || {
        let handle = handle.clone();
        let payload = payload.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            handle
                .send(RrCommand::Call {
                    payload: payload.to_vec(),
                    reply,
                })
                .await
                .map_err(|_| "baseline client task is gone".to_owned())?;
            let response = rx.await.map_err(|_| "baseline call dropped".to_owned())?;
            if response != *payload {
                return Err("baseline echo returned other bytes".into());
            }
            Ok(())
        })
    })
}

// ---------------------------------------------------------------- dawn-transport raw

async fn start_transport_pair() -> BoxResult<(Transport, Transport, PeerId)> {
    let config = TransportConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        ..TransportConfig::default()
    };
    let (a, mut a_calls) = Transport::start(
        libp2p::identity::Keypair::generate_ed25519(),
        config.clone(),
    )
    .await?;
    let (b, mut b_calls) =
        Transport::start(libp2p::identity::Keypair::generate_ed25519(), config).await?;
    // a answers nothing, but keeps its queue drained.
    tokio::spawn(async move { while a_calls.recv().await.is_some() {} });
    // b echoes each call from its own task, as the node does.
    tokio::spawn(async move {
        while let Some(call) = b_calls.recv().await {
            tokio::spawn(async move {
                let body = call.body().clone();
                call.respond(body).await;
            });
        }
    });
    let peer = a.dial(b.listen_addrs()[0].clone()).await?;
    Ok((a, b, peer))
}

fn transport_call(t: Transport, peer: PeerId, payload: Bytes) -> CallFn {
    Arc::new(move || {
        let t = t.clone();
        let payload = payload.clone();
        Box::pin(async move {
            let reply = t
                .call(peer, "echo", payload.clone(), Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())?;
            if reply != payload {
                return Err("transport echo returned other bytes".into());
            }
            Ok(())
        })
    })
}

// ---------------------------------------------------------------- dawn

/// A node for the `dawn` rows. `guarded`: every resilience mechanism on,
/// with a rate limit far above the load, so that the cost of the checks is
/// measured and not refusals (the default quota, 100 calls per minute for a
/// peer of unknown trust, would refuse almost every call). Otherwise the
/// rate limit, bulkhead, circuit breaker and retries are switched off.
async fn start_node(dir: PathBuf, guarded: bool) -> BoxResult<Node> {
    let mut config = DawnConfig::ephemeral(dir);
    config.api.enabled = false;
    let resilience = &mut config.resilience;
    if guarded {
        resilience.rate_limit.max_requests = 1_000_000;
        resilience.rate_limit.time_window = Duration::from_secs(1).into();
    } else {
        resilience.rate_limit.enabled = false;
        resilience.bulkhead.enabled = false;
        resilience.circuit_breaker.enabled = false;
        resilience.retry.max_attempts = 1;
    }
    Ok(NodeBuilder::new(config).start().await?)
}

fn dawn_call(node: Node, address: AgentAddress, message: String) -> CallFn {
    let address = Arc::new(address);
    let message = Arc::new(message);
    Arc::new(move || {
        let node = node.clone();
        let address = address.clone();
        let message = message.clone();
        Box::pin(async move {
            let result = node
                .call_tool(&address, "echo", json!({ "message": message.as_str() }))
                .await
                .map_err(|e| e.to_string())?;
            let text = result
                .content
                .first()
                .and_then(|c| c.as_text())
                .map(|t| t.text.as_str());
            if text != Some(message.as_str()) {
                return Err(format!("dawn echo returned {result:?}"));
            }
            Ok(())
        })
    })
}

// ---------------------------------------------------------------- report

#[derive(Default)]
struct RowResult {
    sequential: Option<Sequential>,
    concurrent: Option<Concurrent>,
}

type Round = BTreeMap<&'static str, RowResult>;

fn row_json(r: &RowResult) -> Value {
    json!({
        "sequential": r.sequential.map(|s| json!({
            "latency": s.latency.to_json(),
            "calls_per_sec": s.calls_per_sec,
            "cpu": s.cpu.map(CpuUse::to_json),
        })),
        "concurrent": r.concurrent.map(|c| json!({
            "inflight": c.inflight,
            "calls": c.calls,
            "window_secs": c.window_secs,
            "calls_per_sec": c.calls_per_sec,
            "latency": c.latency.to_json(),
            "cpu": c.cpu.map(CpuUse::to_json),
        })),
    })
}

/// Baseline CPU time per call (64 in flight) divided by `row`'s: how many
/// times less CPU a call costs. Less sensitive than calls/s to other load on
/// the machine.
fn cpu_ratio(round: &Round, row: &str) -> Option<f64> {
    let base = round.get("baseline")?.concurrent?.cpu?.us_per_call;
    let this = round.get(row)?.concurrent?.cpu?.us_per_call;
    Some(base / this)
}

/// The 1-minute load average (Linux), a hint of other work on the machine.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (p50 ratio, throughput ratio) of `row` against the baseline in one round.
fn ratios(round: &Round, row: &str) -> (Option<f64>, Option<f64>) {
    let (Some(base), Some(r)) = (round.get("baseline"), round.get(row)) else {
        return (None, None);
    };
    let lat = match (r.sequential, base.sequential) {
        (Some(a), Some(b)) => Some(a.latency.p50 / b.latency.p50),
        _ => None,
    };
    let tput = match (r.concurrent, base.concurrent) {
        (Some(a), Some(b)) => Some(a.calls_per_sec / b.calls_per_sec),
        _ => None,
    };
    (lat, tput)
}

fn summarize(rounds: &[Round], settings: &Settings, load_before: Option<f64>) -> Value {
    let rows: Vec<&str> = ROWS.iter().copied().filter(|r| settings.runs(r)).collect();
    let med = |row: &str, f: &dyn Fn(&RowResult) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.get(row).and_then(f))
            .collect();
        if v.is_empty() { None } else { Some(median(v)) }
    };
    let spread = |v: &[f64]| -> Value {
        if v.is_empty() {
            return Value::Null;
        }
        json!({
            "median": median(v.to_vec()),
            "min": v.iter().copied().fold(f64::INFINITY, f64::min),
            "max": v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "per_round": v,
        })
    };

    println!();
    println!(
        "remote_echo — {PAYLOAD_LEN}-byte echo, TCP 127.0.0.1 + Noise + Yamux, both peers in one process, \
         tokio multi-thread ({} workers), {} CPU(s)",
        workers(),
        cpus()
    );
    println!(
        "rounds: {}; one at a time: {} timed calls (+{} warm-up); concurrent: {} in flight, {:.1} s window (+{:.1} s warm-up)",
        settings.rounds,
        settings.seq_calls,
        settings.seq_warmup,
        settings.inflight,
        settings.window.as_secs_f64(),
        settings.warmup.as_secs_f64()
    );
    println!(
        "medians over rounds; latencies and cpu/call (process CPU time per call, both peers) in µs; \
         cores = process CPU time / wall time"
    );
    println!();
    println!(
        "{:<16} | {:>8} {:>8} {:>8} {:>9} {:>8} | {:>10} {:>8} {:>8} {:>8} {:>6}",
        "", "one call", "at a", "time", "", "", "", "", "", "", ""
    );
    println!(
        "{:<16} | {:>8} {:>8} {:>8} {:>9} {:>8} | {:>10} {:>8} {:>8} {:>8} {:>6}",
        "row",
        "p50",
        "p90",
        "p99",
        "calls/s",
        "cpu/call",
        format!("calls/s@{}", settings.inflight),
        "p50",
        "p99",
        "cpu/call",
        "cores"
    );
    println!("{}", "-".repeat(118));
    let mut rows_json = serde_json::Map::new();
    let fmt =
        |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"));
    for row in &rows {
        let s_p50 = med(row, &|r| r.sequential.map(|s| s.latency.p50));
        let s_p90 = med(row, &|r| r.sequential.map(|s| s.latency.p90));
        let s_p99 = med(row, &|r| r.sequential.map(|s| s.latency.p99));
        let s_cps = med(row, &|r| r.sequential.map(|s| s.calls_per_sec));
        let c_cps = med(row, &|r| r.concurrent.map(|c| c.calls_per_sec));
        let c_p50 = med(row, &|r| r.concurrent.map(|c| c.latency.p50));
        let c_p99 = med(row, &|r| r.concurrent.map(|c| c.latency.p99));
        let s_cpu = med(row, &|r| {
            r.sequential.and_then(|s| s.cpu).map(|c| c.us_per_call)
        });
        let c_cpu = med(row, &|r| {
            r.concurrent.and_then(|c| c.cpu).map(|c| c.us_per_call)
        });
        let c_cores = med(row, &|r| {
            r.concurrent.and_then(|c| c.cpu).map(|c| c.cores_used)
        });
        println!(
            "{:<16} | {:>8} {:>8} {:>8} {:>9} {:>8} | {:>10} {:>8} {:>8} {:>8} {:>6}",
            row,
            fmt(s_p50, 1),
            fmt(s_p90, 1),
            fmt(s_p99, 1),
            fmt(s_cps, 0),
            fmt(s_cpu, 1),
            fmt(c_cps, 0),
            fmt(c_p50, 1),
            fmt(c_p99, 1),
            fmt(c_cpu, 1),
            fmt(c_cores, 2)
        );
        let lat_r: Vec<f64> = rounds.iter().filter_map(|r| ratios(r, row).0).collect();
        let tput_r: Vec<f64> = rounds.iter().filter_map(|r| ratios(r, row).1).collect();
        rows_json.insert(
            (*row).to_owned(),
            json!({
                "sequential": {"p50_us": s_p50, "p90_us": s_p90, "p99_us": s_p99, "calls_per_sec": s_cps, "cpu_us_per_call": s_cpu},
                "concurrent": {"inflight": settings.inflight, "calls_per_sec": c_cps, "p50_us": c_p50, "p99_us": c_p99, "cpu_us_per_call": c_cpu, "cores_used": c_cores},
                "p50_ratio_vs_baseline": spread(&lat_r),
                "throughput_ratio_vs_baseline": spread(&tput_r),
            }),
        );
    }
    println!();
    println!("ratios against `baseline` in the same round (median [min..max] over rounds):");
    for row in rows.iter().filter(|r| **r != "baseline") {
        let lat_r: Vec<f64> = rounds.iter().filter_map(|r| ratios(r, row).0).collect();
        let tput_r: Vec<f64> = rounds.iter().filter_map(|r| ratios(r, row).1).collect();
        let show = |v: &[f64]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{:.2}x [{:.2}..{:.2}]",
                    median(v.to_vec()),
                    v.iter().copied().fold(f64::INFINITY, f64::min),
                    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                )
            }
        };
        let cpu_r: Vec<f64> = rounds.iter().filter_map(|r| cpu_ratio(r, row)).collect();
        println!(
            "  {:<16} p50 latency {:<22} throughput@{} {:<22} cpu/call {}",
            row,
            show(&lat_r),
            settings.inflight,
            show(&tput_r),
            show(&cpu_r).replace('x', "x less")
        );
        if let Some(Value::Object(entry)) = rows_json.get_mut(*row) {
            entry.insert("cpu_per_call_advantage_vs_baseline".into(), spread(&cpu_r));
        }
    }

    let mut goals = Vec::new();
    let overhead_json = resilience_overhead(rounds, settings, &mut goals);
    let lat_r: Vec<f64> = rounds.iter().filter_map(|r| ratios(r, "dawn").0).collect();
    let tput_r: Vec<f64> = rounds.iter().filter_map(|r| ratios(r, "dawn").1).collect();
    println!();
    if !lat_r.is_empty() {
        let m = median(lat_r.clone());
        let pass = m <= LAT_GOAL;
        println!(
            "goal: dawn one-at-a-time p50 <= {LAT_GOAL}x baseline: {m:.2}x  {}",
            if pass { "PASS" } else { "MISS" }
        );
        goals.push(json!({
            "name": "dawn_p50_latency_ratio",
            "description": format!("dawn one-at-a-time p50 latency / baseline p50 <= {LAT_GOAL}"),
            "target_max": LAT_GOAL, "value": m, "per_round": lat_r,
            "pass": pass,
        }));
    }
    if !tput_r.is_empty() {
        let m = median(tput_r.clone());
        let pass = m >= TPUT_GOAL;
        println!(
            "goal: dawn throughput with {} in flight >= {TPUT_GOAL}x baseline: {m:.2}x  {}",
            settings.inflight,
            if pass { "PASS" } else { "MISS" }
        );
        goals.push(json!({
            "name": "dawn_throughput_ratio",
            "description": format!("dawn calls/s with {} in flight / baseline calls/s >= {TPUT_GOAL}", settings.inflight),
            "target_min": TPUT_GOAL, "value": m, "per_round": tput_r,
            "pass": pass,
        }));
    }
    if settings.inflight != 64 || settings.quick {
        println!(
            "note: non-standard settings (quick={}, inflight={}); goals are defined for the full run with 64 in flight",
            settings.quick, settings.inflight
        );
    }
    let busy = load_before.is_some_and(|l| l > 0.5 * cpus() as f64);
    if busy {
        println!(
            "warning: the machine looked busy (1-minute load average before the run: {}): \
             throughput figures are depressed and noisy; prefer a quiet machine, and compare cpu/call and cores",
            load_before.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"))
        );
    }
    json!({
        "rows": Value::Object(rows_json),
        "resilience_overhead": overhead_json,
        "goals": goals,
        "machine_busy_warning": busy,
    })
}

/// The cost of the resilience layer in one round: `dawn` (mechanisms on)
/// against `dawn-unguarded` (off), as fractions (0.03 = 3% worse):
/// (throughput lost @N, extra CPU per call @N, extra one-at-a-time p50).
fn overhead(round: &Round) -> (Option<f64>, Option<f64>, Option<f64>) {
    let (Some(on), Some(off)) = (round.get("dawn"), round.get("dawn-unguarded")) else {
        return (None, None, None);
    };
    let tput = match (on.concurrent, off.concurrent) {
        (Some(a), Some(b)) => Some(1.0 - a.calls_per_sec / b.calls_per_sec),
        _ => None,
    };
    let cpu = match (
        on.concurrent.and_then(|c| c.cpu),
        off.concurrent.and_then(|c| c.cpu),
    ) {
        (Some(a), Some(b)) => Some(a.us_per_call / b.us_per_call - 1.0),
        _ => None,
    };
    let p50 = match (on.sequential, off.sequential) {
        (Some(a), Some(b)) => Some(a.latency.p50 / b.latency.p50 - 1.0),
        _ => None,
    };
    (tput, cpu, p50)
}

/// Prints the resilience overhead (median and range over rounds) and adds
/// its goal; returns the JSON summary.
fn resilience_overhead(rounds: &[Round], settings: &Settings, goals: &mut Vec<Value>) -> Value {
    let per_round: Vec<_> = rounds.iter().map(overhead).collect();
    let tput: Vec<f64> = per_round.iter().filter_map(|o| o.0).collect();
    let cpu: Vec<f64> = per_round.iter().filter_map(|o| o.1).collect();
    let p50: Vec<f64> = per_round.iter().filter_map(|o| o.2).collect();
    if tput.is_empty() && cpu.is_empty() && p50.is_empty() {
        return Value::Null;
    }
    let show = |v: &[f64]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:+.1}% [{:+.1}%..{:+.1}%]",
                100.0 * median(v.to_vec()),
                100.0 * v.iter().copied().fold(f64::INFINITY, f64::min),
                100.0 * v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            )
        }
    };
    println!();
    println!(
        "resilience overhead, `dawn` (mechanisms on) against `dawn-unguarded` (off), median [min..max] over rounds:"
    );
    println!(
        "  throughput lost @{} {}   cpu/call @{} {}   one-at-a-time p50 {}",
        settings.inflight,
        show(&tput),
        settings.inflight,
        show(&cpu),
        show(&p50)
    );
    let summary = |v: &[f64]| {
        if v.is_empty() {
            Value::Null
        } else {
            json!({ "median": median(v.to_vec()), "per_round": v })
        }
    };
    if !tput.is_empty() {
        let m = median(tput.clone());
        let pass = m < RESILIENCE_OVERHEAD_GOAL;
        println!(
            "goal: resilience layer costs < {:.0}% of throughput with {} in flight: {:+.1}%  {}",
            100.0 * RESILIENCE_OVERHEAD_GOAL,
            settings.inflight,
            100.0 * m,
            if pass { "PASS" } else { "MISS" }
        );
        goals.push(json!({
            "name": "resilience_throughput_overhead",
            "description": format!("1 - dawn calls/s / dawn-unguarded calls/s with {} in flight < {RESILIENCE_OVERHEAD_GOAL}", settings.inflight),
            "target_max": RESILIENCE_OVERHEAD_GOAL, "value": m, "per_round": tput,
            "pass": pass,
        }));
    }
    json!({
        "throughput_lost": summary(&tput),
        "cpu_per_call_extra": summary(&cpu),
        "p50_extra": summary(&p50),
    })
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn workers() -> usize {
    env_parse("TOKIO_WORKER_THREADS").unwrap_or_else(cpus)
}

fn output_path(settings: &Settings) -> PathBuf {
    if let Some(out) = &settings.out {
        return out.clone();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // <target>/<profile>/deps/remote_echo-<hash>
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-results").join("remote_echo.json")
}

// ---------------------------------------------------------------- main

fn main() -> BoxResult<()> {
    let settings = Settings::from_env_and_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> BoxResult<()> {
    let payload: Vec<u8> = (0..PAYLOAD_LEN)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
        .collect();
    let message = String::from_utf8(payload.clone())?;

    let load_before = load_average();
    eprintln!("remote_echo: setting up peers…");
    let baseline = start_baseline().await?;
    let handle_call = baseline_handle_call(baseline.clone(), payload.clone());

    let (ta, _tb, tpeer) = start_transport_pair().await?;
    let transport = transport_call(ta.clone(), tpeer, Bytes::from(payload.clone()));

    let dir = tempfile::tempdir()?;
    let node_a = start_node(dir.path().join("a"), true).await?;
    let node_b = start_node(dir.path().join("b"), true).await?;
    node_a.dial(node_b.dial_addrs()[0].clone()).await?;
    let address: AgentAddress = format!("{}/system", node_b.peer_id()).parse()?;
    let dawn = dawn_call(node_a.clone(), address, message.clone());
    let node_c = start_node(dir.path().join("c"), false).await?;
    let node_d = start_node(dir.path().join("d"), false).await?;
    node_c.dial(node_d.dial_addrs()[0].clone()).await?;
    let address: AgentAddress = format!("{}/system", node_d.peer_id()).parse()?;
    let unguarded = dawn_call(node_c.clone(), address, message);
    // Let identify and the agent exchange that follow a new connection settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=settings.rounds {
        // The two `dawn` rows run back to back, in alternating order, so
        // that drift in the machine's load does not favour one of them.
        let (first, second) = if round % 2 == 1 {
            (("dawn", &dawn), ("dawn-unguarded", &unguarded))
        } else {
            (("dawn-unguarded", &unguarded), ("dawn", &dawn))
        };
        let generic: [(&'static str, &CallFn); 4] = [
            ("baseline-handle", &handle_call),
            ("transport", &transport),
            first,
            second,
        ];
        let mut results = Round::new();
        for row in ROWS {
            if settings.runs(row) {
                results.insert(row, RowResult::default());
            }
        }
        if settings.sequential {
            eprintln!("round {round}/{}: one call at a time…", settings.rounds);
        }
        if settings.sequential && settings.runs("baseline") {
            let (reply, rx) = oneshot::channel();
            baseline
                .send(RrCommand::Sequential {
                    payload: payload.clone(),
                    warmup: settings.seq_warmup,
                    n: settings.seq_calls,
                    reply,
                })
                .await
                .map_err(|_| "baseline task gone")?;
            let s = rx.await?;
            eprintln!("  {:<16} p50 {:>7.1} µs", "baseline", s.latency.p50);
            results.entry("baseline").or_default().sequential = Some(s);
        }
        if settings.sequential {
            for (row, call) in generic.iter().filter(|(r, _)| settings.runs(r)) {
                let s = run_sequential(call, settings.seq_warmup, settings.seq_calls).await;
                eprintln!("  {:<16} p50 {:>7.1} µs", row, s.latency.p50);
                results.entry(row).or_default().sequential = Some(s);
            }
        }
        if settings.concurrent {
            eprintln!(
                "round {round}/{}: {} in flight…",
                settings.rounds, settings.inflight
            );
        }
        if settings.concurrent && settings.runs("baseline") {
            let (reply, rx) = oneshot::channel();
            baseline
                .send(RrCommand::Concurrent {
                    payload: payload.clone(),
                    inflight: settings.inflight,
                    warmup: settings.warmup,
                    window: settings.window,
                    reply,
                })
                .await
                .map_err(|_| "baseline task gone")?;
            let c = rx.await?;
            eprintln!("  {:<16} {:>9.0} calls/s", "baseline", c.calls_per_sec);
            results.entry("baseline").or_default().concurrent = Some(c);
        }
        if settings.concurrent {
            for (row, call) in generic.iter().filter(|(r, _)| settings.runs(r)) {
                let c =
                    run_concurrent(call, settings.inflight, settings.warmup, settings.window).await;
                eprintln!("  {:<16} {:>9.0} calls/s", row, c.calls_per_sec);
                results.entry(row).or_default().concurrent = Some(c);
            }
        }
        rounds.push(results);
    }

    let summary = summarize(&rounds, &settings, load_before);
    let report = json!({
        "benchmark": "remote_echo",
        "schema_version": 1,
        "unix_time": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": {
            "cpus": cpus(),
            "tokio_workers": workers(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "setup": "both peers of every row in one process on one multi-thread tokio runtime; TCP on 127.0.0.1 with Noise and Yamux",
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "settings": settings.to_json(),
        "summary": summary,
        "rounds": rounds.iter().map(|r| {
            let mut m = serde_json::Map::new();
            for (row, result) in r {
                m.insert((*row).to_owned(), row_json(result));
            }
            Value::Object(m)
        }).collect::<Vec<_>>(),
    });
    let path = output_path(&settings);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!();
    println!("results written to {}", path.display());

    for node in [node_a, node_b, node_c, node_d] {
        node.shutdown().await;
    }
    Ok(())
}
