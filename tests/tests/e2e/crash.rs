//! Crash safety: a real `tchap-secure sync --loop` process killed with SIGKILL again and again
//! while the server keeps producing changes. A sync response and its `next_batch` are
//! committed together, so whatever token was stored, resuming from it loses nothing: in the
//! end every invite is in the store, and the database opened cleanly after every kill.

use std::process::{Command, Stdio};
use std::time::Duration;

use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::synapse::Synapse;

use crate::support::{InProcess, Member, PASSWORD, cli_bin, password, rt};

#[test]
fn sigkill_during_sync_loses_nothing_acknowledged() {
    let synapse = Synapse::shared();
    let bob = Member::new("crash-bob");
    bob.login().ok();

    let a = InProcess::new("crash-alice");
    let ua = synapse.unique_user("crash-alice");
    synapse.register(&ua, PASSWORD, false);
    let rt = rt();
    let mut alice = a.open().unwrap();
    rt.block_on(alice.login(&ua, &password(), "phone")).unwrap();

    const ROUNDS: usize = 8;
    const ROOMS_PER_ROUND: usize = 3;
    let mut created = Vec::new();
    for round in 0..ROUNDS {
        let data_dir = bob.data_dir();
        let mut child = Command::new(cli_bin())
            .args(["--json", "--config", bob.config_path.to_str().unwrap()])
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--token-label",
                &bob.token_label,
            ])
            .args(["sync", "--loop", "--timeout-ms", "300"])
            .envs(SoftHsmToken::process_wide().env())
            .env("TCHAP_SECURE_TOKEN_PIN", &bob.pin)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..ROOMS_PER_ROUND {
            let room = rt
                .block_on(alice.create_room(
                    Some("crash"),
                    std::slice::from_ref(&bob.user_id),
                    false,
                ))
                .unwrap();
            created.push(room);
            std::thread::sleep(Duration::from_millis(60 + 45 * round as u64));
        }
        // SIGKILL: no destructor, no flush, no checkpoint.
        child.kill().unwrap();
        child.wait().unwrap();
        // The database opens and reads after every kill.
        bob.run(&["security-events"]).ok();
    }
    let rooms = bob.run(&["rooms"]).ok().json();
    let invited: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["membership"] == "invite")
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    for room in &created {
        assert!(
            invited.contains(&room.as_str()),
            "invite to {room} lost; have {invited:?}"
        );
    }
    assert_eq!(invited.len(), ROUNDS * ROOMS_PER_ROUND);
}
