//! Edits and "delete for everyone" between our clients on the real Synapse (issue 18), proved
//! at rest: every page of the database and every frame of its write-ahead log decrypted with
//! the key the vault gives (free space included: `tchap_secure_tests::at_rest`), and every
//! other file of the data directory, searched for the text.

use std::time::Duration;

use serde_json::json;
use tchap_secure_core::client::relations::Deletion;
use tchap_secure_core::{Client, Config, SyncSummary};
use tchap_secure_tests::hostile_proxy::{HostileProxy, Reply, Route, Rule};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::{Pair, pair, pair_on, receive};
use crate::support::{canary, left_at_rest, rt};

fn sync_until(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    what: &str,
    mut done: impl FnMut(&SyncSummary) -> bool,
) {
    for _ in 0..40 {
        let s = rt
            .block_on(client.sync_once(Duration::from_millis(500)))
            .unwrap();
        if done(&s) {
            return;
        }
    }
    panic!("{what} never arrived");
}

#[test]
fn an_edit_erases_the_former_text_and_a_deletion_every_text_from_both_phones() {
    let rt = rt();
    let mut p = pair(&rt, "rel-rest");
    let first = canary("Note du cabinet, version 1");
    let second = canary("Note du cabinet, version 2");
    let event_id = rt.block_on(p.alice.send_text(&p.room, &first)).unwrap();
    receive(&rt, &mut p.bob, &p.room, &first);
    // Control: the scan finds a text that is there.
    assert!(!left_at_rest(&p.b, &first).is_empty(), "control: stored");
    assert!(!left_at_rest(&p.a, &first).is_empty(), "control: stored");

    // An edit: the former text goes, on both phones.
    rt.block_on(p.alice.edit(&p.room, &event_id, &second))
        .unwrap();
    sync_until(&rt, &mut p.bob, "the edit", |s| {
        s.edits
            .iter()
            .any(|m| m.event_id == event_id && m.body.as_deref() == Some(second.as_str()))
    });
    for (who, member) in [("alice", &p.a), ("bob", &p.b)] {
        assert_eq!(left_at_rest(member, &first), Vec::<String>::new(), "{who}");
        assert!(!left_at_rest(member, &second).is_empty(), "{who}: control");
    }
    let shown = p.bob.messages(&p.room, 10).unwrap();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(shown[0].edited);

    // Deleted for everyone: no text left, open or closed.
    let deletion = rt
        .block_on(p.alice.redact(&p.room, &event_id, None))
        .unwrap();
    assert!(matches!(deletion, Deletion::Sent { .. }), "{deletion:?}");
    sync_until(&rt, &mut p.bob, "the redaction", |s| {
        s.redactions.iter().any(|r| r.event_id == event_id)
    });
    for (who, member) in [("alice", &p.a), ("bob", &p.b)] {
        for text in [&first, &second] {
            assert_eq!(left_at_rest(member, text), Vec::<String>::new(), "{who}");
        }
    }
    let gone = p.bob.messages(&p.room, 10).unwrap();
    assert_eq!(
        (gone[0].state.as_str(), gone[0].body.as_deref()),
        ("redacted", None)
    );
    drop(p.alice);
    drop(p.bob);
    for (who, member) in [("alice", &p.a), ("bob", &p.b)] {
        assert_eq!(left_at_rest(member, &second), Vec::<String>::new(), "{who}");
    }
    // The event is never fetched and decrypted again: a fresh open and a sync keep it erased.
    let mut bob = p.b.open().unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    let again = bob.messages(&p.room, 10).unwrap();
    assert_eq!(again[0].body, None);
    assert!(left_at_rest(&p.b, &second).is_empty());
}

#[test]
fn others_may_not_delete_or_edit_and_a_reply_keeps_what_it_answers() {
    let rt = rt();
    let mut p = pair(&rt, "rel-rules");
    let alices = canary("Message d'Alice");
    let event_id = rt.block_on(p.alice.send_text(&p.room, &alices)).unwrap();
    receive(&rt, &mut p.bob, &p.room, &alices);
    // Bob (no power level) may not delete Alice's message: refused before anything is sent.
    let err = rt
        .block_on(p.bob.redact(&p.room, &event_id, None))
        .unwrap_err();
    assert_eq!(err.code(), "redaction_not_allowed");
    // Nor edit it.
    let err = rt
        .block_on(p.bob.edit(&p.room, &event_id, "forged"))
        .unwrap_err();
    assert_eq!(err.code(), "edit_not_allowed");
    // A reason in clear is refused under the default configuration.
    let err = rt
        .block_on(p.alice.redact(&p.room, &event_id, Some("wrong room")))
        .unwrap_err();
    assert_eq!(err.code(), "reason_in_clear_refused");
    assert_eq!(
        p.bob.messages(&p.room, 10).unwrap()[0].body.as_deref(),
        Some(alices.as_str())
    );
    // A deletion of a message that is not there.
    let err = rt
        .block_on(p.alice.redact(&p.room, "$nothing:here", None))
        .unwrap_err();
    assert_eq!(err.code(), "unknown_event");
    // A reply keeps what it answers, on the other side.
    let reply = rt
        .block_on(p.bob.reply(&p.room, &event_id, "bien reçu"))
        .unwrap();
    let got = receive(&rt, &mut p.alice, &p.room, "bien reçu");
    assert_eq!(
        (got.event_id.as_str(), got.reply_to.as_deref()),
        (reply.as_str(), Some(event_id.as_str()))
    );
    // The server's copy: encrypted, and no relation in its clear part.
    let stored = tchap_secure_tests::harness::raw_event(
        &tchap_secure_tests::harness::access_token(&p.bob),
        &p.room,
        &reply,
    );
    assert_eq!(stored["type"], "m.room.encrypted", "{stored}");
    assert!(stored["content"].get("m.relates_to").is_none(), "{stored}");
    assert!(!stored.to_string().contains(&event_id), "{stored}");
    assert!(p.alice.store().security_events().unwrap().is_empty());
}

fn edit_of(target: &str, body: &str) -> serde_json::Value {
    json!({
        "msgtype": "m.text",
        "body": format!("* {body}"),
        "m.new_content": { "msgtype": "m.text", "body": body },
        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
    })
}

/// Bob as a hostile member: edits sent with the relation inside the encryption only (where the
/// server cannot judge them), each refused by Alice's client with its reason, journaled, and
/// nothing forged shown.
#[test]
fn forged_edits_with_the_relation_hidden_from_the_server_are_refused() {
    let rt = rt();
    let mut p = pair(&rt, "rel-forge");
    let bob_id = p.bob.session().unwrap().user_id;
    let other_room = rt
        .block_on(
            p.alice
                .create_room(Some("Autre"), std::slice::from_ref(&bob_id), false),
        )
        .unwrap();
    rt.block_on(p.bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(p.bob.join(&other_room)).unwrap();
    let alices = rt
        .block_on(p.alice.send_text(&p.room, "Alice: original"))
        .unwrap();
    let elsewhere = rt
        .block_on(p.bob.send_text(&other_room, "Bob: ailleurs"))
        .unwrap();
    let bobs = rt
        .block_on(p.bob.send_text(&p.room, "Bob: le sien"))
        .unwrap();
    let valid = rt
        .block_on(p.bob.edit(&p.room, &bobs, "Bob: le sien, corrigé"))
        .unwrap();
    let deleted = rt
        .block_on(p.bob.send_text(&p.room, "Bob: supprimé"))
        .unwrap();
    rt.block_on(p.bob.redact(&p.room, &deleted, None)).unwrap();
    // (Synapse hands the deleted message over already redacted: a tombstone, no report.)
    for _ in 0..40 {
        let arrived = p
            .alice
            .messages(&p.room, 50)
            .unwrap()
            .iter()
            .any(|m| m.event_id == deleted && m.state == "redacted")
            && p.alice
                .messages(&p.room, 50)
                .unwrap()
                .iter()
                .any(|m| m.edited);
        if arrived {
            break;
        }
        rt.block_on(p.alice.sync_once(Duration::from_millis(300)))
            .unwrap();
    }
    let hostile = [
        (alices.as_str(), "edit_not_by_sender"),
        (elsewhere.as_str(), "edit_other_room"),
        (valid.as_str(), "edit_of_edit"),
        (deleted.as_str(), "edit_of_redacted"),
    ];
    let mut sent = Vec::new();
    for (target, _) in &hostile {
        sent.push(
            rt.block_on(tchap_secure_core::bench_internals::send_raw_message(
                &mut p.bob,
                &p.room,
                edit_of(target, "TEXTE FALSIFIÉ"),
            ))
            .unwrap(),
        );
    }
    let refused = |alice: &Client| -> Vec<_> {
        alice
            .store()
            .security_events()
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "edit_refused")
            .collect()
    };
    for _ in 0..40 {
        if refused(&p.alice).len() >= hostile.len() {
            break;
        }
        rt.block_on(p.alice.sync_once(Duration::from_millis(300)))
            .unwrap();
    }
    let refused = refused(&p.alice);
    assert_eq!(refused.len(), hostile.len(), "{refused:#?}");
    for ((target, code), id) in hostile.iter().zip(&sent) {
        assert!(
            refused
                .iter()
                .any(|e| e.detail == format!("{code}: {id} edits {target}")
                    && e.user_id.as_deref() == Some(bob_id.as_str())),
            "{code}: {refused:#?}"
        );
    }
    for room in [&p.room, &other_room] {
        let listed = p.alice.messages(room, 50).unwrap();
        assert!(
            !listed
                .iter()
                .any(|m| m.body.as_deref().is_some_and(|b| b.contains("FALSIFIÉ"))),
            "{listed:#?}"
        );
    }
    let body = |room: &str, id: &str| {
        p.alice
            .messages(room, 50)
            .unwrap()
            .into_iter()
            .find(|m| m.event_id == id)
            .and_then(|m| m.body)
    };
    assert_eq!(body(&p.room, &alices).as_deref(), Some("Alice: original"));
    assert_eq!(
        body(&other_room, &elsewhere).as_deref(),
        Some("Bob: ailleurs")
    );
    assert_eq!(
        body(&p.room, &bobs).as_deref(),
        Some("Bob: le sien, corrigé")
    );
}

fn unreachable_rule(fragment: &str) -> Rule {
    Rule::replace(Route::new("PUT", fragment), |_| Reply::Json {
        status: 503,
        body: json!({"errcode": "M_UNKNOWN", "error": "unreachable"}),
    })
}

#[test]
fn a_deletion_while_the_server_is_unreachable_is_erased_at_once_and_sent_later() {
    let rt = rt();
    // Both through a proxy that can make the server unreachable for Alice's requests.
    let synapse = Synapse::shared();
    let proxy = HostileProxy::start(synapse);
    let config = Config::from_json(proxy.client_config().to_string().as_bytes()).unwrap();
    let Pair {
        a,
        b,
        mut alice,
        mut bob,
        room,
    } = pair_on(&rt, "rel-offline", synapse, config);
    let text = canary("Envoyé dans le mauvais salon");
    let event_id = rt.block_on(alice.send_text(&room, &text)).unwrap();
    receive(&rt, &mut bob, &room, &text);

    // The server cannot be reached: the deletion is queued, the text gone here at once.
    let rule = proxy.add(unreachable_rule("/redact/"));
    let deletion = rt.block_on(alice.redact(&room, &event_id, None)).unwrap();
    let Deletion::Queued { local_id } = deletion else {
        panic!("expected a queued deletion, got {deletion:?}");
    };
    assert!(proxy.hits(rule) >= 1);
    assert_eq!(left_at_rest(&a, &text), Vec::<String>::new());
    assert_eq!(alice.messages(&room, 10).unwrap()[0].state, "redacted");
    // Bob still sees it: nothing reached the server.
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    assert_eq!(
        bob.messages(&room, 10).unwrap()[0].body.as_deref(),
        Some(text.as_str())
    );

    // A message never sent, deleted: it never leaves the phone.
    let send_rule = proxy.add(unreachable_rule(&format!("/rooms/{room}/send/")));
    let unsent = canary("Jamais envoyé");
    let queued = rt.block_on(alice.send_text(&room, &unsent));
    let Err(tchap_secure_core::Error::SendQueued {
        local_id: unsent_id,
        ..
    }) = queued
    else {
        panic!("expected a queued message, got {queued:?}");
    };
    let echo = alice
        .messages(&room, 10)
        .unwrap()
        .into_iter()
        .find(|m| m.local_id.as_deref() == Some(unsent_id.as_str()))
        .unwrap();
    assert_eq!(
        rt.block_on(alice.redact(&room, &echo.event_id, None))
            .unwrap(),
        Deletion::NeverSent
    );
    assert_eq!(left_at_rest(&a, &unsent), Vec::<String>::new());

    // Back online: the queued deletion goes out with the next sync, reported by its local id.
    proxy.remove(rule);
    proxy.remove(send_rule);
    let mut sent = None;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let s = rt
            .block_on(alice.sync_once(Duration::from_millis(200)))
            .unwrap();
        if let Some(u) = s.outgoing.iter().find(|u| u.local_id == local_id) {
            sent = Some(u.clone());
            break;
        }
    }
    let sent = sent.expect("the queued deletion was never sent");
    assert_eq!(sent.state, "sent");
    sync_until(&rt, &mut bob, "the redaction", |s| {
        s.redactions.iter().any(|r| r.event_id == event_id)
    });
    assert_eq!(left_at_rest(&b, &text), Vec::<String>::new());
    // The message deleted before it was sent never reached Bob.
    rt.block_on(bob.sync_once(Duration::from_millis(500)))
        .unwrap();
    assert!(
        !bob.messages(&room, 20)
            .unwrap()
            .iter()
            .any(|m| m.body.as_deref() == Some(unsent.as_str()))
    );
}
