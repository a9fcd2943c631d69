//! Resilience on the real call paths, with nodes talking over TCP on
//! 127.0.0.1: per-peer rate limits and bulkheads on inbound calls, retries of
//! safe calls only (with a budget), the deadline ceiling, a slow peer that
//! must not hold up calls to others, and redials of a flapping peer counted
//! on a real socket.
//!
//! Process-level faults (SIGKILL mid-call, SIGTERM under load) are in
//! `bins/dawn-cli/tests/resilience_faults.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use dawn_core::{
    CallError, CallOptions, DawnConfig, ErrorKind, Multiaddr, Node, NodeBuilder, NodeEvent,
    config::{ConfigLoader, HumanDuration as CoreDuration},
    jsonrpc::Request,
};
use dawn_resilience::{HumanDuration, RateQuota};
use serde_json::json;

/// Generous bound for anything awaited on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Dials `b` from `a` and waits until `a` knows `b`'s agents, without
/// setting any trust: both stay at the default level (`unknown`).
async fn connect_as_strangers(a: &Node, b: &Node) {
    let mut events = a.subscribe();
    let peer = a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    wait_for(
        &mut events,
        |e| matches!(e, NodeEvent::RemoteAgentsChanged(p) if *p == peer),
    )
    .await;
}

async fn echo(from: &Node, to: &Node, message: &str) -> Result<String, CallError> {
    let target = addr(Some(to.peer_id()), "system");
    from.call_tool(&target, "echo", json!({ "message": message }))
        .await
        .map(|r| text_of(&r))
}

/// Polls `probe` every 20 ms until it returns `Some`, for at most
/// [`PATIENCE`].
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_gets_rate_limited_while_another_peer_is_served() {
    let dir = tempfile::tempdir().unwrap();
    // 40 calls per hour for peers at the default trust level: the refill is
    // so slow that it plays no part in the test.
    let target = start_node(&dir, "target", |c| {
        c.resilience.rate_limit.max_requests = 40;
        c.resilience.rate_limit.time_window = HumanDuration::secs(3600);
    })
    .await;
    let flooder = start_node(&dir, "flooder", |_| {}).await;
    let neighbour = start_node(&dir, "neighbour", |_| {}).await;
    connect_as_strangers(&flooder, &target).await;
    connect_as_strangers(&neighbour, &target).await;

    // The flood: 4 workers, 60 calls each, as fast as answers come back.
    let mut workers = Vec::new();
    for w in 0..4 {
        let (flooder, target) = (flooder.clone(), target.clone());
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..60 {
                results.push(echo(&flooder, &target, &format!("flood {w}-{i}")).await);
            }
            results
        }));
    }
    // Meanwhile the neighbour's calls all succeed.
    for i in 0..15 {
        let message = format!("neighbour {i}");
        assert_eq!(echo(&neighbour, &target, &message).await.unwrap(), message);
    }
    let mut admitted = 0;
    let mut refused = Vec::new();
    for worker in workers {
        for result in worker.await.unwrap() {
            match result {
                Ok(_) => admitted += 1,
                Err(e) => refused.push(e),
            }
        }
    }
    assert!(admitted <= 40, "{admitted} flood calls were admitted");
    assert!(refused.len() >= 200, "only {} refused", refused.len());
    for e in &refused {
        assert_eq!(e.code, -32005, "{e}");
        assert_eq!(e.kind(), Some(ErrorKind::RateLimited));
        let data = e.data.as_ref().unwrap();
        assert_eq!(data["kind"], "rate_limited");
        let retry_after = data["retry_after_ms"].as_u64().unwrap();
        assert!(retry_after > 0, "{data}");
        assert!(retry_after <= 3_600_000, "{data}");
    }
    // After the flood the neighbour is still served.
    assert_eq!(echo(&neighbour, &target, "after").await.unwrap(), "after");

    // Memory: the flood left state for the two callers only, and no call
    // is still holding a slot.
    let stats = target.resilience_stats();
    assert!(stats.rate_limited_peers <= 2, "{stats:?}");
    assert!(stats.bulkhead_peers <= 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_answers_a_rate_limited_call_with_429_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_node(&dir, "target", |c| {
        c.resilience.rate_limit.max_requests = 3;
        c.resilience.rate_limit.time_window = HumanDuration::secs(3600);
    })
    .await;
    let gateway = start_node(&dir, "gateway", |c| {
        c.api.enabled = true;
        c.api.require_token = false;
    })
    .await;
    connect_as_strangers(&gateway, &target).await;
    let url = format!("http://{}/api/v1/call", gateway.api_addr().unwrap());
    let body = json!({"agent": format!("{}/system", target.peer_id()), "tool": "echo", "arguments": {"message": "hi"}});
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = client.post(&url).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        statuses.push(status);
        if status == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3600).contains(&retry_after), "{retry_after}");
            let error: serde_json::Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], -32005, "{error}");
            assert!(error["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
            return;
        }
        assert_eq!(status, 200);
    }
    panic!("never rate limited: {statuses:?}");
}

#[tokio::test]
async fn bad_resilience_settings_are_refused_with_their_key() {
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    let message = ConfigLoader::new()
        .env_vars(env(&[
            ("DAWN_RESILIENCE__RATE_LIMIT__MAX_REQUESTS", "0"),
            ("DAWN_RESILIENCE__CIRCUIT_BREAKER__FAILURE_RATIO", "2"),
            ("DAWN_RESILIENCE__DEADLINES__DEFAULT", "10m"),
        ]))
        .load()
        .unwrap_err()
        .to_string();
    for needle in [
        "resilience.rate_limit.max_requests: 0 is out of range (allowed: 1 to 1000000)",
        "resilience.circuit_breaker.failure_ratio: 2 is out of range",
        "resilience.deadlines.default: 10m is more than max (5m)",
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    let message = ConfigLoader::new()
        .env_vars(env(&[("DAWN_RESILIENCE__RETRY__MAX_ATTEMPT", "2")]))
        .load()
        .unwrap_err()
        .to_string();
    assert!(message.contains("max_attempt"), "{message}");
    // A node is not started with such a configuration.
    let dir = tempfile::tempdir().unwrap();
    let mut config = DawnConfig::ephemeral(dir.path().join("n"));
    config.resilience.bulkhead.max_concurrent = 0;
    let e = NodeBuilder::new(config).start().await.unwrap_err();
    assert!(
        e.to_string().contains("resilience.bulkhead.max_concurrent"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_gets_the_quota_of_its_trust_level() {
    let dir = tempfile::tempdir().unwrap();
    let target = start_node(&dir, "target", |c| {
        c.resilience.rate_limit.max_requests = 5;
        c.resilience.rate_limit.time_window = HumanDuration::secs(3600);
        c.resilience.rate_limit.per_trust_level.insert(
            "trusted".into(),
            RateQuota {
                max_requests: 1000,
                time_window: HumanDuration::secs(3600),
            },
        );
    })
    .await;
    let friend = start_node(&dir, "friend", |_| {}).await;
    // `connect` makes both sides trust each other.
    connect(&friend, &target).await;
    for i in 0..50 {
        echo(&friend, &target, &format!("{i}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_does_not_delay_calls_to_other_peers() {
    let dir = tempfile::tempdir().unwrap();
    let caller = start_node(&dir, "caller", |_| {}).await;
    let (slow, mut probe) = start_probed(&dir, "slow", |_| {}).await;
    let fast = start_node(&dir, "fast", |_| {}).await;
    connect(&caller, &slow).await;
    connect(&caller, &fast).await;

    // Ten calls to the slow peer that would take ten minutes each.
    let mut slow_calls = Vec::new();
    for _ in 0..10 {
        let caller = caller.clone();
        let target = addr(Some(slow.peer_id()), "tester");
        slow_calls.push(tokio::spawn(async move {
            caller
                .call_tool(&target, "sleep", json!({"ms": 600_000}))
                .await
        }));
    }
    for _ in 0..10 {
        expect_probe(&mut probe, "sleep-started").await;
    }
    // Calls to the fast peer complete while every slow call is in flight.
    for i in 0..30 {
        let message = format!("fast {i}");
        assert_eq!(echo(&caller, &fast, &message).await.unwrap(), message);
    }
    for call in &slow_calls {
        assert!(!call.is_finished(), "a slow call finished early");
    }
    for call in slow_calls {
        call.abort();
    }
}

/// A target whose bulkhead admits one call per peer and never waits, so a
/// second concurrent call is refused as `busy` (transient).
async fn single_slot_target(
    dir: &tempfile::TempDir,
) -> (Node, tokio::sync::broadcast::Receiver<&'static str>) {
    start_probed(dir, "target", |c| {
        c.resilience.bulkhead.max_concurrent = 1;
        c.resilience.bulkhead.max_wait = HumanDuration::secs(0);
    })
    .await
}

/// Occupies the caller's only slot on `target` with a sleep until aborted.
async fn occupy_slot(
    caller: &Node,
    target: &Node,
    probe: &mut tokio::sync::broadcast::Receiver<&'static str>,
) -> tokio::task::JoinHandle<Result<dawn_core::mcp::CallToolResult, CallError>> {
    let (caller, address) = (caller.clone(), addr(Some(target.peer_id()), "tester"));
    let sleeper = tokio::spawn(async move {
        caller
            .call_tool(&address, "sleep", json!({"ms": 600_000}))
            .await
    });
    expect_probe(probe, "sleep-started").await;
    sleeper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_calls_are_retried_and_state_changing_calls_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (target, mut probe) = single_slot_target(&dir).await;
    let caller = start_node(&dir, "caller", |c| {
        // Long enough to see the first failure before the retry.
        c.resilience.retry.initial_backoff = HumanDuration::secs(4);
        c.resilience.retry.max_backoff = HumanDuration::secs(4);
        c.resilience.circuit_breaker.enabled = false;
    })
    .await;
    connect(&caller, &target).await;
    let tester = addr(Some(target.peer_id()), "tester");

    // A state-changing tool refused as busy is reported as it is.
    let sleeper = occupy_slot(&caller, &target, &mut probe).await;
    let e = caller
        .call_tool(&tester, "set_memo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Busy), "{e}");
    assert_eq!(caller.resilience_stats().retries, 0);

    // A read-only tool is retried: free the slot once the first attempt
    // has failed, and the retry succeeds.
    let add = {
        let (caller, tester) = (caller.clone(), tester.clone());
        tokio::spawn(async move {
            caller
                .call_tool(&tester, "add", json!({"a": 2, "b": 3}))
                .await
        })
    };
    eventually("a retry to be scheduled", || {
        (caller.resilience_stats().retries == 1).then_some(())
    })
    .await;
    sleeper.abort();
    expect_probe(&mut probe, "sleep-stopped").await;
    let result = add.await.unwrap().unwrap();
    assert_eq!(result.structured_content, Some(json!({"sum": 5})));
    assert!(caller.resilience_stats().retries >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_after_max_attempts_and_when_the_budget_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let (target, mut probe) = single_slot_target(&dir).await;
    let patient = start_node(&dir, "patient", |c| {
        c.resilience.retry.max_attempts = 3;
        c.resilience.retry.initial_backoff = HumanDuration::millis(20);
        c.resilience.retry.max_backoff = HumanDuration::millis(40);
        c.resilience.circuit_breaker.enabled = false;
    })
    .await;
    let broke = start_node(&dir, "broke", |c| {
        c.resilience.retry.budget_ratio = 0.0;
        c.resilience.retry.budget_max_tokens = 0;
        c.resilience.circuit_breaker.enabled = false;
    })
    .await;
    connect(&patient, &target).await;
    connect(&broke, &target).await;
    let tester = addr(Some(target.peer_id()), "tester");

    let sleeper = occupy_slot(&patient, &target, &mut probe).await;
    let e = patient
        .call_tool(&tester, "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.code, -32013, "{e}");
    let data = e.data.unwrap();
    assert_eq!(data["kind"], "retry_exhausted");
    assert_eq!(data["attempts"], 3);
    assert_eq!(data["budget_exhausted"], false);
    assert_eq!(data["last_error"]["code"], -32006, "{data}");
    assert_eq!(patient.resilience_stats().retries, 2);
    sleeper.abort();
    expect_probe(&mut probe, "sleep-stopped").await;

    // No retry tokens at all: the first failure ends the call.
    let sleeper = occupy_slot(&broke, &target, &mut probe).await;
    let e = broke
        .call_tool(&tester, "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.code, -32013, "{e}");
    let data = e.data.unwrap();
    assert_eq!(data["attempts"], 1);
    assert_eq!(data["budget_exhausted"], true);
    assert_eq!(broke.resilience_stats().retries, 0);
    sleeper.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cuts_deadlines_to_its_maximum_and_stops_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let (target, mut probe) = start_probed(&dir, "target", |c| {
        c.resilience.deadlines.default = HumanDuration::secs(2);
        c.resilience.deadlines.max = HumanDuration::secs(2);
    })
    .await;
    let caller = start_node(&dir, "caller", |_| {}).await;
    connect(&caller, &target).await;
    // The caller allows a minute; the target gives the call 2 s.
    let request = Request::new(
        1,
        "tools/call",
        Some(json!({"name": "sleep", "arguments": {"ms": 600_000}})),
    );
    let tester = addr(Some(target.peer_id()), "tester");
    let call = caller.request(
        &tester,
        request,
        CallOptions::default().with_timeout(Duration::from_secs(60)),
    );
    let e = tokio::time::timeout(Duration::from_secs(50), call)
        .await
        .expect("the target did not enforce its deadline ceiling")
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::DeadlineExceeded), "{e}");
    expect_probe(&mut probe, "sleep-started").await;
    expect_probe(&mut probe, "sleep-stopped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_opens_the_breaker_which_fails_fast_and_closes_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let caller = start_node(&dir, "caller", |c| {
        c.resilience.circuit_breaker.failure_threshold = 2;
        c.resilience.circuit_breaker.timeout = HumanDuration::millis(500);
        c.resilience.retry.max_attempts = 1;
    })
    .await;
    // The peer listens on a fixed port so it can come back where it was.
    let port = free_port();
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let peer_config = {
        let listen = listen.clone();
        move |c: &mut DawnConfig| c.node.listen = vec![listen]
    };
    let peer = start_node(&dir, "peer", peer_config.clone()).await;
    let peer_id = peer.peer_id();
    connect(&caller, &peer).await;
    echo(&caller, &peer, "before").await.unwrap();
    peer.shutdown().await;
    drop(peer);

    let mut events = caller.subscribe();
    let system = addr(Some(peer_id), "system");
    let call = || caller.call_tool(&system, "echo", json!({"message": "hi"}));
    for _ in 0..2 {
        let e = call().await.unwrap_err();
        assert!(
            matches!(
                e.kind(),
                Some(
                    ErrorKind::Unreachable | ErrorKind::ConnectionLost | ErrorKind::NetworkTimeout
                )
            ),
            "{e}"
        );
    }
    assert_eq!(
        caller.breaker_state(&peer_id),
        dawn_core::BreakerState::Open
    );
    let e = call().await.unwrap_err();
    assert_eq!(e.code, -32007, "{e}");
    let retry_after = e.data.as_ref().unwrap()["retry_after_ms"].as_u64().unwrap();
    assert!((1..=500).contains(&retry_after), "{e:?}");

    // The peer comes back on the same address; after the open timeout a
    // trial call goes through and closes the breaker.
    let peer = start_node(&dir, "peer", peer_config).await;
    assert_eq!(peer.peer_id(), peer_id);
    let answer = eventually_async(|| async {
        match call().await {
            Ok(r) => Some(text_of(&r)),
            Err(e) => {
                assert!(e.kind().is_some_and(ErrorKind::is_transient), "{e}");
                None
            }
        }
    })
    .await;
    assert_eq!(answer, "hi");
    assert_eq!(
        caller.breaker_state(&peer_id),
        dawn_core::BreakerState::Closed
    );
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let NodeEvent::CircuitBreaker { peer, from, to } = event {
            assert_eq!(peer, peer_id);
            seen.push((from, to));
        }
    }
    use dawn_core::BreakerState::{Closed, HalfOpen, Open};
    assert_eq!(seen.first(), Some(&(Closed, Open)), "{seen:?}");
    assert_eq!(seen.last(), Some(&(HalfOpen, Closed)), "{seen:?}");
}

/// Like [`eventually`], for an async probe, pausing 100 ms between tries.
async fn eventually_async<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for success");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Binds 127.0.0.1:`port` as soon as the node that had it has let go.
async fn bind_again(port: u16) -> tokio::net::TcpListener {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(e) => assert!(Instant::now() < deadline, "port {port} stays taken: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Accepts TCP connections on `listener` and closes them at once, counting
/// them: a peer whose port is up but that never completes a handshake.
fn count_connections(
    listener: tokio::net::TcpListener,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    })
}

/// Most dials possible in `elapsed` when the k-th wait between dials is at
/// least half of `min(initial * 2^k, max)`, as `resilience.retry.dial`
/// promises.
fn most_dials(elapsed: Duration, initial: Duration, max: Duration) -> usize {
    let mut dials = 1;
    let mut spent = Duration::ZERO;
    let mut bound = initial;
    loop {
        spent += bound / 2;
        if spent > elapsed {
            return dials;
        }
        dials += 1;
        bound = (bound * 2).min(max);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redials_of_a_flapping_peer_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let initial = Duration::from_millis(400);
    let max = Duration::from_secs(3);
    let redial_interval = Duration::from_millis(50);

    // The flapping peer's identity and its fixed address.
    let port = free_port();
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let peer_id = {
        let node = start_node(&dir, "flapper", |_| {}).await;
        let id = node.peer_id();
        node.shutdown().await;
        id
    };
    let flapper_config = {
        let listen = listen.clone();
        move |c: &mut DawnConfig| c.node.listen = vec![listen]
    };

    // While the peer is down its port accepts TCP and closes it at once:
    // every dial of the observer shows up as one connection here.
    let dials = Arc::new(AtomicUsize::new(0));
    let down = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut counter = count_connections(down, dials.clone());

    let started = Instant::now();
    let mut config = DawnConfig::ephemeral(dir.path().join("observer"));
    config.api.enabled = false;
    config.node.bootstrap = vec![format!("{listen}/p2p/{peer_id}").parse().unwrap()];
    config.node.redial_interval = CoreDuration(redial_interval);
    config.resilience.retry.dial.initial_backoff = HumanDuration(initial);
    config.resilience.retry.dial.max_backoff = HumanDuration(max);
    config.resilience.retry.dial.stable_after = HumanDuration::secs(3600);
    let observer = NodeBuilder::new(config).start().await.unwrap();

    // Three flaps: down until the observer has dialed again, then up until
    // it is connected, then down.
    let mut ups = 0;
    for _ in 0..3 {
        let before = dials.load(Ordering::SeqCst);
        eventually("the observer to dial the downed peer", || {
            (dials.load(Ordering::SeqCst) > before).then_some(())
        })
        .await;
        counter.abort();
        let _ = counter.await;
        let flapper = start_node(&dir, "flapper", flapper_config.clone()).await;
        ups += 1;
        eventually("the observer to reconnect", || {
            observer
                .connected_peers()
                .iter()
                .any(|p| p.peer_id == peer_id)
                .then_some(())
        })
        .await;
        flapper.shutdown().await;
        drop(flapper);
        counter = count_connections(bind_again(port).await, dials.clone());
    }
    // Then watch the downed peer for a while: an observation window, not a
    // synchronisation.
    tokio::time::sleep(Duration::from_secs(4)).await;
    counter.abort();
    let elapsed = started.elapsed();
    let counted = dials.load(Ordering::SeqCst);
    let bound = most_dials(elapsed, initial, max);
    let stats = observer.resilience_stats();
    // Without backoff the redial loop would dial every 50 ms.
    let naive = (elapsed.as_millis() / redial_interval.as_millis()) as usize;
    eprintln!(
        "flapping peer: {counted} refused dials + {ups} reconnections in {elapsed:?}; backoff bound {bound}, naive {naive}; {stats:?}"
    );
    assert!(
        counted + ups <= bound + 2,
        "{counted} refused dials + {ups} successful ones in {elapsed:?}; backoff allows at most {bound} (naive redialing: {naive}); {stats:?}"
    );
    assert!(
        stats.dials as usize <= bound,
        "the redial loop dialed {} times in {elapsed:?}; backoff allows {bound}",
        stats.dials
    );
    assert!(counted >= 3, "the observer stopped dialing: {counted}");
    observer.shutdown().await;
}
