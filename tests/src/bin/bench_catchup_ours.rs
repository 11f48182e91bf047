//! Catch-up after a flight, Tchap Secure (issue 14), in a fresh process with the shipped global
//! allocator.
//!
//! ```text
//! bench_catchup_ours prepare <fixture-dir>
//! bench_catchup_ours run <fixture-dir> [--spawned-at-ns <CLOCK_MONOTONIC ns>]
//! ```
//!
//! `<fixture-dir>` is a `CatchUpFixture` of `tchap_secure_tests::bench_setup` (`scenario.json`,
//! `expected.tsv`, `password`; `ours/token.json` and `ours/pin` of the SoftHSM2 token that
//! `SOFTHSM2_CONF` must name; the data directory is `ours/data`).
//!
//! `prepare` logs the member "ours" in on a new device (keys uploaded), syncs, joins every room
//! of the fixture, and syncs until each room is stored as joined with no gap: from then on a
//! `limited` sync timeline in these rooms is a gap after stored events, not a first join.
//!
//! `run` measures the catch-up: the token opened, a 2-worker runtime (as the JNI bridge),
//! `Client::open` (session restored: this is "reconnect"), then `Client::sync_once(0)` (which
//! opens a gap per limited room and fills every gap by `/messages?dir=b` back-pagination before
//! it returns) repeated until no gap is open and every message of `expected.tsv` is in the
//! store with state `decrypted` (`Client::messages`). Room keys come as to-device messages,
//! at most 100 per sync response, so several syncs are needed; the loop stops after
//! [`MAX_SYNCS`], or after [`STALL_SYNCS`] syncs in a row that changed nothing, and then
//! reports what is missing instead of failing. Prints one JSON line: `ms` (client open →
//! caught up), `spawn_to_caught_up_ms` (from the parent's `--spawned-at-ns`, else from
//! `main`), `messages` (expected messages stored and decrypted), `missing`, `undecryptable`,
//! `refused`, `body_mismatch` (a decrypted body that is not the one sent), per-sync figures,
//! and `peak_rss_kib` (`VmHWM`, read when caught up; the bodies are compared afterwards).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use zeroize::Zeroizing;

tchap_secure_memory::install_zeroizing_allocator!();

/// Syncs allowed before giving up.
const MAX_SYNCS: usize = 30;
/// Syncs in a row without progress (no new decrypted message, no gap closed, no to-device
/// message) after which the catch-up is declared stuck.
const STALL_SYNCS: usize = 3;
/// Enough for every row of a room (250 new messages plus what `prepare` stored).
const ROOM_ROWS: u32 = 100_000;

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn arg_after(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

struct Inputs {
    config: Config,
    rooms: Vec<String>,
    localpart: String,
    scenario: String,
    vault: Pkcs11Vault,
}

fn inputs(fixture: &Path) -> Inputs {
    let conf = fixture.join("ours").join("softhsm").join("softhsm2.conf");
    assert_eq!(
        std::env::var_os("SOFTHSM2_CONF").as_deref(),
        Some(conf.as_os_str()),
        "SOFTHSM2_CONF must be {}",
        conf.display()
    );
    let meta = read_json(&fixture.join("scenario.json"));
    let config = Config::from_json(meta["config"].to_string().as_bytes()).expect("the config");
    let rooms = meta["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r.as_str().expect("a room id").to_owned())
        .collect();
    let token = read_json(&fixture.join("ours").join("token.json"));
    let pin = Zeroizing::new(std::fs::read(fixture.join("ours").join("pin")).expect("pin"));
    let vault = Pkcs11Vault::open(
        &Pkcs11Config {
            module: PathBuf::from(token["module"].as_str().expect("module")),
            token_label: token["label"].as_str().expect("label").to_owned(),
        },
        &SecretBytes::from(&pin[..]),
    )
    .expect("open the token");
    Inputs {
        config,
        rooms,
        localpart: meta["ours"]["localpart"]
            .as_str()
            .expect("ours.localpart")
            .to_owned(),
        scenario: meta["scenario"].as_str().expect("scenario").to_owned(),
        vault,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn main() {
    let t_main = monotonic_ns();
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("prepare"), Some(fixture)) => prepare(Path::new(fixture)),
        (Some("run"), Some(fixture)) => {
            let spawned_at = arg_after(&args, "--spawned-at-ns")
                .map(|s| s.parse::<u64>().expect("--spawned-at-ns <ns>"));
            run(Path::new(fixture), spawned_at.unwrap_or(t_main));
        }
        _ => panic!("usage: bench_catchup_ours prepare|run <fixture-dir> [--spawned-at-ns N]"),
    }
}

fn prepare(fixture: &Path) {
    let inputs = inputs(fixture);
    let password = SecretBytes::new(std::fs::read(fixture.join("password")).expect("password"));
    let runtime = runtime();
    let mut client = {
        let _entered = runtime.enter();
        Client::open(
            inputs.config,
            &fixture.join("ours").join("data"),
            &inputs.vault,
        )
        .expect("open the client")
    };
    let (syncs, joined) = runtime.block_on(async {
        client
            .login(&inputs.localpart, &password, "bench catch-up")
            .await
            .expect("log in");
        client.sync_once(Duration::ZERO).await.expect("sync_once");
        for room in &inputs.rooms {
            client.join(room).await.expect("join a room");
        }
        let mut syncs = 1;
        loop {
            let summary = client.sync_once(Duration::ZERO).await.expect("sync_once");
            syncs += 1;
            let joined = inputs
                .rooms
                .iter()
                .filter(|r| {
                    client
                        .store()
                        .room(r)
                        .ok()
                        .flatten()
                        .is_some_and(|s| s.membership == "join")
                })
                .count();
            if (joined == inputs.rooms.len() && summary.gaps_open == 0 && syncs >= 3) || syncs >= 10
            {
                return (syncs, joined);
            }
        }
    });
    assert_eq!(
        joined,
        inputs.rooms.len(),
        "rooms joined after {syncs} syncs"
    );
    let stored: usize = inputs
        .rooms
        .iter()
        .map(|r| client.messages(r, ROOM_ROWS).map_or(0, |m| m.len()))
        .sum();
    println!(
        "{}",
        json!({
            "prepared": "tchap-secure",
            "syncs": syncs,
            "rooms": joined,
            "timeline_rows": stored,
        })
    );
    drop(client);
    runtime.shutdown_background();
}

/// `expected.tsv`: the event ids sent, per room index (the bodies are read after the
/// measurement).
fn expected_ids(fixture: &Path, rooms: usize) -> Vec<std::collections::HashSet<String>> {
    let text = std::fs::read_to_string(fixture.join("expected.tsv")).expect("expected.tsv");
    let mut ids = vec![std::collections::HashSet::new(); rooms];
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(r), Some(id)) = (fields.next(), fields.next()) else {
            panic!("expected.tsv: {line:?}");
        };
        let r: usize = r.parse().expect("room index");
        ids[r].insert(id.to_owned());
    }
    ids
}

fn expected_bodies(fixture: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(fixture.join("expected.tsv")).expect("expected.tsv");
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            fields.next()?;
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// Per room: (expected messages stored and decrypted, stored but undecryptable, refused).
fn tally(
    client: &Client,
    rooms: &[String],
    expected: &[std::collections::HashSet<String>],
) -> Vec<(usize, usize, usize)> {
    rooms
        .iter()
        .zip(expected)
        .map(|(room, ids)| {
            let rows = client.messages(room, ROOM_ROWS).expect("read a timeline");
            let mut counts = (0, 0, 0);
            for row in rows.iter().filter(|e| ids.contains(&e.event_id)) {
                match row.state.as_str() {
                    "decrypted" => counts.0 += 1,
                    "undecryptable" => counts.1 += 1,
                    _ => counts.2 += 1,
                }
            }
            counts
        })
        .collect()
}

fn run(fixture: &Path, spawned_at: u64) {
    let inputs = inputs(fixture);
    let expected = expected_ids(fixture, inputs.rooms.len());
    let total: usize = expected.iter().map(|s| s.len()).sum();
    let runtime = runtime();
    let mut client = {
        let _entered = runtime.enter();
        Client::open(
            inputs.config,
            &fixture.join("ours").join("data"),
            &inputs.vault,
        )
        .expect("open the client")
    };
    let t_ready = monotonic_ns();
    let mut per_sync = Vec::new();
    let mut error = None;
    let counts = runtime.block_on(async {
        let mut decrypted = 0;
        let mut stalled = 0;
        let mut counts = Vec::new();
        for _ in 0..MAX_SYNCS {
            let t = monotonic_ns();
            let summary = match client.sync_once(Duration::ZERO).await {
                Ok(s) => s,
                Err(e) => {
                    error = Some(format!("sync_once: {e}"));
                    break;
                }
            };
            counts = tally(&client, &inputs.rooms, &expected);
            let now: usize = counts.iter().map(|c| c.0).sum();
            per_sync.push(json!({
                "ms": elapsed_ms(t, monotonic_ns()),
                "to_device_events": summary.to_device_events,
                "room_keys": summary.room_keys,
                "gaps_opened": summary.gaps_opened,
                "backfilled": summary.backfilled,
                "gaps_open": summary.gaps_open,
                "messages": summary.messages.len(),
                "expected_decrypted": now,
            }));
            if summary.gaps_open == 0 && now == total {
                break;
            }
            let progress = now > decrypted
                || summary.to_device_events > 0
                || summary.backfilled > 0
                || summary.gaps_opened > 0;
            decrypted = now;
            stalled = if progress { 0 } else { stalled + 1 };
            if stalled >= STALL_SYNCS {
                error = Some(format!("stuck: {STALL_SYNCS} syncs without progress"));
                break;
            }
        }
        counts
    });
    let t_done = monotonic_ns();
    let peak = peak_rss_kib().expect("VmHWM in /proc/self/status");

    // Not measured: what is there, room by room, and whether each body is the one sent.
    let bodies = expected_bodies(fixture);
    let mut body_mismatch = 0;
    let mut rooms_incomplete = Vec::new();
    for (r, (room, ids)) in inputs.rooms.iter().zip(&expected).enumerate() {
        let rows = client.messages(room, ROOM_ROWS).expect("read a timeline");
        for row in rows
            .iter()
            .filter(|e| ids.contains(&e.event_id) && e.state == "decrypted")
        {
            if row.body.as_deref() != bodies.get(&row.event_id).map(String::as_str) {
                body_mismatch += 1;
            }
        }
        let (ok, utd, refused) = counts.get(r).copied().unwrap_or_default();
        if ok < ids.len() {
            let mut errors: Vec<String> = rows
                .iter()
                .filter(|e| ids.contains(&e.event_id) && e.state != "decrypted")
                .filter_map(|e| e.error.clone())
                .collect();
            errors.sort();
            errors.dedup();
            rooms_incomplete.push(json!({
                "room": r,
                "decrypted": ok,
                "undecryptable": utd,
                "refused": refused,
                "missing": ids.len() - ok - utd - refused,
                "errors": errors,
            }));
        }
    }
    let sum = |f: fn(&(usize, usize, usize)) -> usize| counts.iter().map(f).sum::<usize>();
    let (messages, undecryptable, refused) = (sum(|c| c.0), sum(|c| c.1), sum(|c| c.2));
    println!(
        "{}",
        json!({
            "scenario": inputs.scenario,
            "implementation": "tchap-secure",
            "ms": elapsed_ms(t_ready, t_done),
            "spawn_to_caught_up_ms": elapsed_ms(spawned_at, t_done),
            "spawn_to_ready_ms": elapsed_ms(spawned_at, t_ready),
            "peak_rss_kib": peak,
            "messages": messages,
            "expected_messages": total,
            "missing": total - messages - undecryptable - refused,
            "undecryptable": undecryptable,
            "refused": refused,
            "body_mismatch": body_mismatch,
            "syncs": per_sync.len(),
            "per_sync": per_sync,
            "rooms_incomplete": rooms_incomplete,
            "error": error,
        })
    );
    drop(client);
    runtime.shutdown_background();
}
