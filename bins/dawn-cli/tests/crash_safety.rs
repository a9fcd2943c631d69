//! Crash safety with real processes: a `dawn-node` under a write load through its API (agent
//! state writes and trust changes) is SIGKILLed at random moments, 30 times. After each kill
//! it restarts on the same data directory (so the database opened, verified and recovered),
//! and every write the API acknowledged before the kill is there. At the end the database
//! file opens cleanly on its own and holds exactly what the node reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup_support;
mod common;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use backup_support::{Api, Node, Rng};
use common::wait_for;
use serde_json::{Value, json};

const ROUNDS: usize = 30;
const AGENT: &str = "crashtest";

/// What the API acknowledged: agent state key to value, peer to trust level.
#[derive(Default)]
struct Acknowledged {
    state: BTreeMap<String, Value>,
    trust: BTreeMap<String, String>,
}

fn check_everything_acknowledged_is_there(api: &Api, acked: &Acknowledged, round: usize) {
    let state = api.agent_state(AGENT);
    for (key, value) in &acked.state {
        assert_eq!(
            state.get(key),
            Some(value),
            "round {round}: acknowledged state write {key} is missing after the kill"
        );
    }
    let trust = api.trust_levels();
    for (peer, level) in &acked.trust {
        assert_eq!(
            trust.get(peer),
            Some(level),
            "round {round}: acknowledged trust change for {peer} is missing after the kill"
        );
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let data_root = dir.path().join("data");
    let mut rng = Rng::from_env_or_time();
    // Peers to give trust levels to: fresh identities, one per trust write.
    let peers: Vec<String> = (0..ROUNDS * 150)
        .map(|_| {
            dawn_security::NodeIdentity::generate()
                .unwrap()
                .peer_id()
                .to_string()
        })
        .collect();
    let next_peer = Arc::new(Mutex::new(peers.into_iter()));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut writes_total = 0usize;

    for round in 0..ROUNDS {
        let log = dir.path().join(format!("node-{round}.log"));
        let node = Node::start(&data_root, &log, &[]);
        let api = node.api();
        check_everything_acknowledged_is_there(&api, &acked.lock().unwrap(), round);

        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        // Two agent-state writers with keys of their own.
        for writer in 0..2 {
            let (api, stop, acked) = (api.clone(), stop.clone(), acked.clone());
            writers.push(thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("r{round:02}-w{writer}-{n:05}");
                    let value = json!({ "round": round, "n": n });
                    let path = format!("/api/v1/agents/{AGENT}/state/{key}");
                    match api.try_request("PUT", &path, Some(&value)) {
                        Ok((200, answer)) if answer["stored"] == true => {
                            acked.lock().unwrap().state.insert(key, value);
                        }
                        Ok((status, answer)) => panic!("PUT {path}: HTTP {status}: {answer}"),
                        // The node was killed: this write was never acknowledged.
                        Err(_) => return n - 1,
                    }
                }
                n
            }));
        }
        // One trust writer: each change to a new peer, alternating levels.
        {
            let (api, stop, acked, next_peer) =
                (api.clone(), stop.clone(), acked.clone(), next_peer.clone());
            writers.push(thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Some(peer) = next_peer.lock().unwrap().next() else {
                        return n;
                    };
                    let level = if n.is_multiple_of(2) {
                        "trusted"
                    } else {
                        "verified"
                    };
                    let body = json!({ "level": level, "note": format!("round {round}") });
                    match api.try_request("PUT", &format!("/api/v1/trust/{peer}"), Some(&body)) {
                        Ok((200, _)) => {
                            acked.lock().unwrap().trust.insert(peer, level.to_owned());
                            n += 1;
                        }
                        Ok((status, answer)) => panic!("PUT trust {peer}: HTTP {status}: {answer}"),
                        Err(_) => return n,
                    }
                }
                n
            }));
        }

        // Let the load run for a random while (at least until some writes landed), then kill.
        let started = Instant::now();
        let run_for = Duration::from_millis(rng.range(50, 700));
        wait_for("writes to be acknowledged", Duration::from_secs(60), || {
            let enough = acked.lock().unwrap().state.len() > writes_total;
            (enough && started.elapsed() >= run_for).then_some(())
        });
        node.kill();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        let now = acked.lock().unwrap().state.len();
        assert!(now > writes_total, "round {round} acknowledged no write");
        writes_total = now;
    }

    // One last start: everything is there; then a graceful stop and a direct open.
    let node = Node::start(&data_root, &dir.path().join("node-final.log"), &[]);
    let api = node.api();
    let acked = acked.lock().unwrap();
    check_everything_acknowledged_is_there(&api, &acked, ROUNDS);
    let state = api.agent_state(AGENT);
    node.terminate();

    let store = dawn_store::Store::open(data_root.join("dawn.redb"))
        .expect("the database opens cleanly after the kills");
    store.check().unwrap();
    let agent = store.agent_store(AGENT).unwrap();
    assert_eq!(agent.keys("").unwrap().len(), state.len());
    for (key, value) in acked.state.iter() {
        let stored: Value = agent.get_json(key).unwrap().unwrap();
        assert_eq!(&stored, value);
    }
    for (peer, level) in acked.trust.iter() {
        assert_eq!(&store.trust_entry(peer).unwrap().unwrap().level, level);
    }
    eprintln!(
        "{ROUNDS} kills; {} acknowledged state writes and {} trust changes all survived",
        acked.state.len(),
        acked.trust.len()
    );
}
