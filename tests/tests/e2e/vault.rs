//! The hardware-bound vault at the level of a data directory, on real SoftHSM2 tokens: wrong
//! PIN, another token, tampered or swapped `vault.bin` are typed errors that overwrite nothing;
//! after a wipe nobody can open the database again.

use tchap_secure_core::Error;
use tchap_secure_core::store::{DATABASE_FILE, StoreError};
use tchap_secure_hsm::{VAULT_FILE, VaultError};

use crate::support::{InProcess, Member, snapshot, synapse_config};

#[test]
fn wrong_pin_and_unknown_token_are_typed_and_write_nothing() {
    let alice = Member::new("vault-pin");
    alice.login().ok();
    let before = snapshot(&alice.data_dir());
    let run = alice.run_with_token(&alice.token_label, "not-the-pin", &["whoami"]);
    assert_eq!(
        (run.status, run.error()["error"].as_str().unwrap()),
        (6, "wrong_pin"),
        "{run:?}"
    );
    let run = alice.run_with_token("no-such-token", &alice.pin, &["whoami"]);
    assert_eq!(
        (run.status, run.error()["error"].as_str().unwrap()),
        (6, "token_not_found"),
        "{run:?}"
    );
    assert_eq!(before, snapshot(&alice.data_dir()));
    alice.run(&["whoami"]).ok();
}

#[test]
fn another_token_cannot_open_the_data_directory() {
    let alice = Member::new("vault-other");
    alice.login().ok();
    let before = snapshot(&alice.data_dir());
    // The thief's own token, next to Alice's (same token store).
    alice.token.add_token("vault-thief", "thief-pin");
    let run = alice.run_with_token("vault-thief", "thief-pin", &["whoami"]);
    assert_eq!(run.status, 6, "{run:?}");
    let reason = run.error()["error"].as_str().unwrap().to_owned();
    assert!(reason == "kek_not_found" || reason == "unwrap", "{reason}");
    assert_eq!(before, snapshot(&alice.data_dir()));
}

#[test]
fn a_tampered_vault_file_is_refused_and_nothing_is_overwritten() {
    let m = InProcess::new("vault-tamper");
    drop(m.open().unwrap());
    let vault_path = m.data_dir().join(VAULT_FILE);
    let original = std::fs::read(&vault_path).unwrap();
    // Flip one byte in each region: magic, version, KEK id, wrapped length, nonce, ciphertext, tag.
    for index in [0, 8, 12, 25, 30, 50, original.len() - 1] {
        let mut tampered = original.clone();
        tampered[index] ^= 0x01;
        std::fs::write(&vault_path, &tampered).unwrap();
        let before = snapshot(&m.data_dir());
        let e = m.open().unwrap_err();
        assert!(matches!(e, Error::Vault(_)), "byte {index}: {e:?}");
        assert_eq!(before, snapshot(&m.data_dir()), "byte {index}");
    }
    std::fs::write(&vault_path, &original).unwrap();
    drop(m.open().unwrap());
}

#[test]
fn a_swapped_vault_file_does_not_open_the_other_database() {
    // Two data directories on the same token: each has its own KEK and its own root secret.
    let a = InProcess::new("vault-swap");
    drop(a.open().unwrap());
    let other_dir = tempfile::tempdir().unwrap();
    let other_data = other_dir.path().join("data");
    drop(tchap_secure_core::Client::open(synapse_config(), &other_data, &a.vault).unwrap());

    std::fs::copy(other_data.join(VAULT_FILE), a.data_dir().join(VAULT_FILE)).unwrap();
    let before = snapshot(&a.data_dir());
    let e = a.open().unwrap_err();
    assert!(matches!(e, Error::Store(StoreError::WrongKey)), "{e:?}");
    assert_eq!(before, snapshot(&a.data_dir()));
}

#[test]
fn a_database_without_its_vault_is_not_silently_replaced() {
    let m = InProcess::new("vault-orphan");
    drop(m.open().unwrap());
    std::fs::remove_file(m.data_dir().join(VAULT_FILE)).unwrap();
    let before = snapshot(&m.data_dir());
    let e = m.open().unwrap_err();
    assert!(matches!(e, Error::Vault(VaultError::NotFound)), "{e:?}");
    assert_eq!(before, snapshot(&m.data_dir()));
}

#[test]
fn after_wipe_nobody_can_open_the_database() {
    let alice = Member::new("vault-wipe");
    alice.login().ok();
    let saved = tempfile::tempdir().unwrap();
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(alice.data_dir().join(name), saved.path().join(name)).unwrap();
    }
    let refused = alice.run(&["wipe"]);
    assert_eq!(refused.status, 2, "wipe needs --yes: {refused:?}");
    alice.run(&["wipe", "--yes"]).ok();
    assert!(crate::support::files_under(&alice.data_dir()).is_empty());

    // Put the old files back: the KEK is gone from the token, so the root secret is gone.
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(saved.path().join(name), alice.data_dir().join(name)).unwrap();
    }
    let run = alice.run(&["whoami"]);
    assert_eq!(
        (run.status, run.error()["error"].as_str().unwrap()),
        (6, "kek_not_found"),
        "{run:?}"
    );
}

#[test]
fn a_new_mdm_wipe_command_crypto_shreds_the_data_directory() {
    let alice = Member::new("vault-mdm-wipe");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&alice.config_path).unwrap()).unwrap();
    config["wipe_command_nonce"] = serde_json::json!("baseline-1");
    std::fs::write(&alice.config_path, config.to_string()).unwrap();
    alice.login().ok();
    alice.run(&["whoami"]).ok();
    // The same nonce at every start: nothing happens.
    alice.run(&["whoami"]).ok();
    let saved = tempfile::tempdir().unwrap();
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(alice.data_dir().join(name), saved.path().join(name)).unwrap();
    }
    // The MDM pushes a new nonce: the next start wipes.
    config["wipe_command_nonce"] = serde_json::json!("wipe-2026-11-28");
    std::fs::write(&alice.config_path, config.to_string()).unwrap();
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error()["error"], "remote_wipe", "{run:?}");
    assert!(crate::support::files_under(&alice.data_dir()).is_empty());
    // Copies taken before are useless: the KEK is gone from the token.
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(saved.path().join(name), alice.data_dir().join(name)).unwrap();
    }
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error()["error"], "kek_not_found", "{run:?}");
}

/// Issue 15 item 2: a new remote-wipe command is carried out even when the vault does not open
/// (here vault.bin damaged after the KEK id; on a phone, also the Keystore key of a locked
/// device under `unlocked_device_required`, which can be deleted but not used): the KEK is
/// destroyed by the id vault.bin names, and everything is erased.
#[test]
fn a_new_mdm_wipe_command_is_carried_out_even_when_the_vault_does_not_open() {
    let alice = Member::new("vault-mdm-wipe-closed");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&alice.config_path).unwrap()).unwrap();
    config["wipe_command_nonce"] = serde_json::json!("baseline-1");
    std::fs::write(&alice.config_path, config.to_string()).unwrap();
    alice.login().ok();
    alice.run(&["whoami"]).ok();
    let saved = tempfile::tempdir().unwrap();
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(alice.data_dir().join(name), saved.path().join(name)).unwrap();
    }
    // vault.bin damaged after the KEK id: the vault no longer opens.
    let vault = alice.data_dir().join(VAULT_FILE);
    let mut bytes = std::fs::read(&vault).unwrap();
    bytes.truncate(30);
    std::fs::write(&vault, &bytes).unwrap();
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error()["error"], "format", "{run:?}");
    assert!(alice.data_dir().join(DATABASE_FILE).exists());

    // The MDM pushes a new nonce: the next start wipes, vault or not.
    config["wipe_command_nonce"] = serde_json::json!("wipe-2026-12-06");
    std::fs::write(&alice.config_path, config.to_string()).unwrap();
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error()["error"], "remote_wipe", "{run:?}");
    assert!(crate::support::files_under(&alice.data_dir()).is_empty());
    // The KEK is gone from the token: the copies taken before are useless.
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(saved.path().join(name), alice.data_dir().join(name)).unwrap();
    }
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error()["error"], "kek_not_found", "{run:?}");
}
