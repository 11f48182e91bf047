//! The physical limit of a cold open (issue 7, scenario 3), in a fresh process: the fixture's
//! SQLCipher database opened with its raw key (no token, no vault, no client), the rooms
//! counted, one inbound session read, unpickled and used to decrypt a probe with bare
//! vodozemac (no checks).
//!
//! ```text
//! bench_cold_open_raw_sqlcipher run <fixture-dir> [--spawned-at-ns <CLOCK_MONOTONIC ns>] [--probe <k>]
//! ```
//!
//! Needs the fixture written by `bench_cold_open_ours prepare` (its `raw-keys.json`, mode
//! 0600, holds the derived database and pickle keys). System allocator. Prints one JSON line
//! like `bench_cold_open_ours` (`open_ms`: the database opened and its first page decrypted).

use std::path::{Path, PathBuf};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};

use serde_json::{Value, json};
use vodozemac::megolm::{InboundGroupSession, InboundGroupSessionPickle, MegolmMessage};
use zeroize::Zeroizing;

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn unhex32(hex: &str) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    assert_eq!(hex.len(), 64, "a 32-byte hex key");
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).expect("hex");
        key[i] = u8::from_str_radix(pair, 16).expect("hex digit");
    }
    key
}

fn main() {
    let t_main = monotonic_ns();
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: bench_cold_open_raw_sqlcipher run <fixture-dir> [--spawned-at-ns N] [--probe K]";
    let (Some("run"), Some(dir)) = (args.get(1).map(String::as_str), args.get(2)) else {
        panic!("{usage}");
    };
    let mut spawned_at: Option<u64> = None;
    let mut probe: Option<usize> = None;
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| panic!("{usage}"));
        match flag.as_str() {
            "--spawned-at-ns" => spawned_at = Some(value.parse().expect("--spawned-at-ns")),
            "--probe" => probe = Some(value.parse().expect("--probe")),
            _ => panic!("{usage}"),
        }
    }
    let fixture = PathBuf::from(dir);
    let probes = read_json(&fixture.join("probes.json"));
    let probes = probes.as_array().expect("probes");
    let manifest = read_json(&fixture.join("ours-manifest.json"));
    let index = probe.unwrap_or(std::process::id() as usize) % probes.len();
    let probe = &probes[index];
    let keys = Zeroizing::new(
        std::fs::read_to_string(fixture.join("raw-keys.json")).expect("read raw-keys.json"),
    );
    let keys: Value = serde_json::from_str(&keys).expect("raw-keys.json");
    let database_key = Zeroizing::new(
        keys["database_key_hex"]
            .as_str()
            .expect("database key")
            .to_owned(),
    );
    let pickle_key = unhex32(keys["pickle_key_hex"].as_str().expect("pickle key"));
    let t_inputs = monotonic_ns();

    let conn = rusqlite::Connection::open(fixture.join("ours").join("tchap-secure.db"))
        .expect("open the database");
    let pragma = Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", database_key.as_str()));
    conn.execute_batch(&pragma).expect("PRAGMA key");
    let _: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .expect("the key opens the database");
    let t_open = monotonic_ns();
    let rooms: i64 = conn
        .query_row("SELECT count(*) FROM rooms", [], |r| r.get(0))
        .expect("count the rooms");
    let t_rooms = monotonic_ns();
    let room_id = probe["room_id"].as_str().expect("probe room");
    let session_id = probe["session_id"].as_str().expect("probe session");
    let pickle: String = conn
        .query_row(
            "SELECT pickle FROM inbound_group_sessions WHERE room_id = ?1 AND session_id = ?2",
            [room_id, session_id],
            |r| r.get(0),
        )
        .expect("read the probe's session");
    let pickle = InboundGroupSessionPickle::from_encrypted(&pickle, &pickle_key)
        .expect("unpickle the session");
    let mut session = InboundGroupSession::from_pickle(pickle);
    let ciphertext = probe
        .pointer("/event/content/ciphertext")
        .and_then(Value::as_str)
        .expect("probe ciphertext");
    let message = MegolmMessage::from_base64(ciphertext).expect("a Megolm message");
    let decrypted = session.decrypt(&message).expect("decrypt the probe");
    let t_ready = monotonic_ns();
    let plain: Value =
        serde_json::from_slice(&decrypted.plaintext).expect("the probe's plaintext is JSON");
    assert_eq!(
        plain.pointer("/content/body"),
        probe.get("body"),
        "the probe decrypted to another body"
    );
    assert_eq!(Some(rooms as u64), manifest["rooms"].as_u64(), "room count");

    let start = spawned_at.unwrap_or(t_main);
    println!(
        "{}",
        json!({
            "scenario": "cold_open",
            "implementation": "raw-sqlcipher",
            "ms": elapsed_ms(start, t_ready),
            "open_ms": elapsed_ms(start, t_open),
            "from": if spawned_at.is_some() { "spawn" } else { "main" },
            "spawn_to_main_ms": spawned_at.map(|s| elapsed_ms(s, t_main)),
            "inputs_ms": elapsed_ms(t_main, t_inputs),
            "database_open_ms": elapsed_ms(t_inputs, t_open),
            "rooms_ms": elapsed_ms(t_open, t_rooms),
            "first_decrypt_ms": elapsed_ms(t_rooms, t_ready),
            "rooms": rooms,
            "inbound_sessions": manifest["inbound_sessions"],
            "probe": index,
            "peak_rss_kib": peak_rss_kib(),
        })
    );
}
