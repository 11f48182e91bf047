//! At rest: after a real session (login, encrypted room, invite, join, sync), no file of the
//! data directory — database, WAL, shared memory, vault — contains any known plaintext.
//!
//! Positive control: the same needles are found, by the same scanning function, in the
//! plaintext of that very database (opened with the key the vault gives, every value of every
//! table dumped to a file): so they were really written, and the scan would see them if they
//! were stored in clear.

use std::time::Duration;

use serde_json::json;
use tchap_secure_core::store::DATABASE_FILE;
use tchap_secure_hsm::{Vault, VaultBinding};
use tchap_secure_tests::synapse::Synapse;

use crate::support::{InProcess, PASSWORD, files_under, password, rt};

fn find_plaintexts(dir: &std::path::Path, needles: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for path in files_under(dir) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.starts_with(b"SQLite format 3"),
            "{} is a plaintext SQLite file",
            path.display()
        );
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{what} in {}", path.display()));
            }
        }
    }
    found
}

/// The plaintext of `member`'s database: a copy of its files opened with the database key from
/// the vault, every value of every table written to `out/plaintext` (text and blobs as they
/// are, numbers in decimal).
fn decrypted_copy(member: &InProcess, server_name: &str, out: &std::path::Path) {
    let vault = Vault::open(
        &member.data_dir(),
        &member.vault,
        &VaultBinding {
            server_name: server_name.to_owned(),
        },
    )
    .unwrap();
    let copy = tempfile::tempdir().unwrap();
    for path in files_under(&member.data_dir()) {
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.starts_with(DATABASE_FILE) {
            std::fs::copy(&path, copy.path().join(name)).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(copy.path().join(DATABASE_FILE)).unwrap();
    let pragma = vault.database_key().sqlcipher_pragma_value();
    conn.execute_batch(&format!("PRAGMA key = \"{}\";", &*pragma))
        .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!tables.is_empty(), "the database key opened no table");
    let mut dump = Vec::new();
    for table in &tables {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))
            .unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                use rusqlite::types::ValueRef;
                match row.get_ref(i).unwrap() {
                    ValueRef::Null => {}
                    ValueRef::Integer(n) => dump.extend_from_slice(n.to_string().as_bytes()),
                    ValueRef::Real(x) => dump.extend_from_slice(x.to_string().as_bytes()),
                    ValueRef::Text(bytes) | ValueRef::Blob(bytes) => dump.extend_from_slice(bytes),
                }
                dump.push(b'\n');
            }
        }
    }
    std::fs::write(out.join("plaintext"), dump).unwrap();
}

#[test]
fn no_known_plaintext_in_the_data_directory() {
    let synapse = Synapse::shared();
    let rt = rt();
    let (a, b) = (InProcess::new("rest-a"), InProcess::new("rest-b"));
    let (ua, ub) = (synapse.unique_user("rest-a"), synapse.unique_user("rest-b"));
    synapse.register(&ua, PASSWORD, false);
    let reg_b = synapse.register(&ub, PASSWORD, false);
    let display_name = "Camille Canary [Ministère de l'Intérieur]";
    let (status, _) = synapse.request(
        "PUT",
        &format!("/_matrix/client/v3/profile/{}/displayname", reg_b.user_id),
        Some(&reg_b.access_token),
        Some(&json!({ "displayname": display_name })),
    );
    assert_eq!(status, 200);

    let mut alice = a.open().unwrap();
    let mut bob = b.open().unwrap();
    let info = rt
        .block_on(alice.login(&ua, &password(), "canary-device-name"))
        .unwrap();
    rt.block_on(bob.login(&ub, &password(), "phone")).unwrap();
    let room_name = "Cellule de crise canary";
    let room = rt
        .block_on(alice.create_room(Some(room_name), std::slice::from_ref(&reg_b.user_id), false))
        .unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    assert_eq!(
        alice.store().room(&room).unwrap().unwrap().joined_members,
        2
    );

    // Messages both ways: decrypted bodies and Megolm/Olm state end up in both stores.
    let body_a = "Canary: le ministre arrive à 7h31";
    let body_b = "Canary: compris, escorte prête";
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.send_text(&room, body_a)).unwrap();
    crate::messaging::receive(&rt, &mut bob, &room, body_a);
    rt.block_on(bob.send_text(&room, body_b)).unwrap();
    crate::messaging::receive(&rt, &mut alice, &room, body_b);

    let token = tchap_secure_tests::harness::access_token(&alice);
    let needles = vec![
        ("alice's user id", info.user_id.clone()),
        ("bob's user id", reg_b.user_id.clone()),
        ("room id", room.clone()),
        ("access token", token),
        ("display name", display_name.to_owned()),
        ("room name", room_name.to_owned()),
        ("device id", info.device_id.clone()),
        ("server name", synapse.server_name.clone()),
        ("alice's message", body_a.to_owned()),
        ("bob's message", body_b.to_owned()),
        ("alice's identity key", alice.identity_keys().unwrap().0),
    ];
    // While the client is open (WAL and shared memory present) …
    let found = find_plaintexts(&a.data_dir(), &needles);
    assert!(found.is_empty(), "plaintext found: {found:?}");
    assert!(files_under(&a.data_dir()).len() >= 2);
    // … and after it closed (WAL checkpointed).
    drop(alice);
    let found = find_plaintexts(&a.data_dir(), &needles);
    assert!(found.is_empty(), "plaintext found: {found:?}");
    drop(bob);
    let found = find_plaintexts(&b.data_dir(), &needles);
    assert!(
        found.is_empty(),
        "plaintext found in bob's store: {found:?}"
    );

    // Positive control: every needle is in the plaintext of alice's database, found there by
    // the same function: the needles were written, and the scan above could have seen them.
    let dumps = tempfile::tempdir().unwrap();
    decrypted_copy(&a, &synapse.server_name, dumps.path());
    let found = find_plaintexts(dumps.path(), &needles);
    let missing: Vec<&str> = needles
        .iter()
        .map(|(what, _)| *what)
        .filter(|what| !found.iter().any(|f| f.starts_with(&format!("{what} in "))))
        .collect();
    assert!(
        missing.is_empty(),
        "control: not in the plaintext of alice's database, so the scan proves nothing for \
         them: {missing:?}"
    );
}
