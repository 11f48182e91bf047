//! Replies, edits and deletions (issue 18) between our client and matrix-sdk 0.18, both ways,
//! and the edits another member (matrix-sdk) may not make: each refused and journaled. (An
//! edit of a message of another room cannot come from matrix-sdk: it copies the relation into
//! the clear part, and Synapse refuses a relation across rooms; one sent with the relation
//! inside the encryption only is refused by us: `e2e relations::forged_edits_…`.)

use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::SyncSummary;
use tchap_secure_core::client::relations::Deletion;

use crate::ours::{Ours, new_ours, room_between, room_id};
use crate::{ARRIVES, new_peer};

/// Syncs `ours` until `done` says a summary brought what it waits for (or `ARRIVES`).
async fn sync_until(ours: &mut Ours, what: &str, mut done: impl FnMut(&SyncSummary) -> bool) {
    let deadline = tokio::time::Instant::now() + ARRIVES;
    while tokio::time::Instant::now() < deadline {
        let s = ours.sync().await;
        if done(&s) {
            return;
        }
    }
    panic!("{what} never arrived");
}

fn edit_of(target: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text",
        "body": format!("* {body}"),
        "m.new_content": { "msgtype": "m.text", "body": body },
        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_an_edit_and_a_deletion_are_shown_on_the_other_side_both_ways() {
    let mut ours = new_ours("io-rel").await;
    let peer = new_peer("io-sdk-rel").await;
    let room = room_between(&mut ours, &peer, true).await;
    let rid = room_id(&room);

    // matrix-sdk → ours: a message, a reply to ours, an edit, a deletion.
    let ours_first = ours.client.send_text(&room, "ours: first").await.unwrap();
    let sdk_first = peer.send_text(&rid, "sdk: first").await;
    ours.wait_for(&room, "sdk: first").await;
    let sdk_reply = peer
        .send_raw_message(
            &rid,
            json!({
                "msgtype": "m.text",
                "body": "sdk: a reply",
                "m.relates_to": { "m.in_reply_to": { "event_id": ours_first } },
                "m.mentions": { "user_ids": [ours.user_id] },
            }),
        )
        .await;
    let got = ours.wait_for(&room, "sdk: a reply").await;
    assert_eq!(got.event_id, sdk_reply.as_str());
    assert_eq!(got.reply_to.as_deref(), Some(ours_first.as_str()));
    peer.send_raw_message(&rid, edit_of(sdk_first.as_str(), "sdk: first, edited"))
        .await;
    let mut edited = None;
    sync_until(&mut ours, "matrix-sdk's edit", |s| {
        edited = s
            .edits
            .iter()
            .find(|m| m.event_id == sdk_first.as_str())
            .cloned();
        edited.is_some()
    })
    .await;
    let edited = edited.unwrap();
    assert_eq!(edited.body.as_deref(), Some("sdk: first, edited"));
    assert!(edited.edited);
    let listed = ours.client.messages(&room, 50).unwrap();
    let with_text: Vec<_> = listed
        .iter()
        .filter(|m| m.body.as_deref().is_some_and(|b| b.contains("sdk: first")))
        .collect();
    assert_eq!(
        with_text
            .iter()
            .map(|m| m.event_id.as_str())
            .collect::<Vec<_>>(),
        [sdk_first.as_str()],
        "the edit is not a message of its own: {listed:#?}"
    );
    peer.redact(&rid, &sdk_first).await;
    sync_until(&mut ours, "matrix-sdk's deletion", |s| {
        s.redactions
            .iter()
            .any(|r| r.event_id == sdk_first.as_str() && r.redacted_by == peer.user_id.as_str())
    })
    .await;
    let gone = ours
        .client
        .messages(&room, 50)
        .unwrap()
        .into_iter()
        .find(|m| m.event_id == sdk_first.as_str())
        .unwrap();
    assert_eq!((gone.state.as_str(), gone.body), ("redacted", None));

    // Ours → matrix-sdk: a reply to the peer, an edit, a deletion.
    let sdk_second = peer.send_text(&rid, "sdk: second").await;
    ours.wait_for(&room, "sdk: second").await;
    let ours_reply = ours
        .client
        .reply(&room, sdk_second.as_str(), "ours: a reply")
        .await
        .unwrap();
    let (sender, id, content) = peer
        .wait_for_content(&rid, |c| c["body"] == "ours: a reply", ARRIVES)
        .await
        .expect("matrix-sdk decrypts our reply");
    assert_eq!(
        (sender.as_str(), id.as_str()),
        (ours.user_id.as_str(), ours_reply.as_str())
    );
    assert_eq!(
        content["m.relates_to"]["m.in_reply_to"]["event_id"],
        sdk_second.as_str()
    );
    assert_eq!(content["m.mentions"]["user_ids"], json!([peer.user_id]));
    let ours_edit = ours
        .client
        .edit(&room, &ours_first, "ours: first, edited")
        .await
        .unwrap();
    let (_, id, content) = peer
        .wait_for_content(
            &rid,
            |c| c["m.new_content"]["body"] == "ours: first, edited",
            ARRIVES,
        )
        .await
        .expect("matrix-sdk decrypts our edit");
    assert_eq!(id.as_str(), ours_edit);
    assert_eq!(content["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(content["m.relates_to"]["event_id"], ours_first.as_str());
    // Shown at once on our side, and once only.
    let shown: Vec<_> = ours
        .client
        .messages(&room, 50)
        .unwrap()
        .into_iter()
        .filter(|m| m.body.as_deref().is_some_and(|b| b.contains("ours: first")))
        .collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert_eq!(shown[0].event_id, ours_first);
    assert!(shown[0].edited);
    let deletion = ours.client.redact(&room, &ours_first, None).await.unwrap();
    assert!(matches!(deletion, Deletion::Sent { .. }), "{deletion:?}");
    let seen = peer
        .wait_for_redaction(&rid, &ours_first, ARRIVES)
        .await
        .expect("matrix-sdk receives our redaction");
    assert_eq!(seen.sender.as_str(), ours.user_id);
    // The room key of our messages and the sync go on as before.
    ours.client.send_text(&room, "ours: after").await.unwrap();
    assert!(
        peer.wait_for_text(&rid, "ours: after", ARRIVES)
            .await
            .is_some()
    );
    let journal = ours.client.store().security_events().unwrap();
    assert!(
        !journal
            .iter()
            .any(|e| e.kind.starts_with("edit_") || e.kind.starts_with("redaction_")),
        "{journal:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_matrix_sdk_may_not_make_are_refused_and_journaled() {
    let mut ours = new_ours("io-forge").await;
    let peer = new_peer("io-sdk-forge").await;
    let room = room_between(&mut ours, &peer, true).await;
    let rid = room_id(&room);

    let ours_message = ours
        .client
        .send_text(&room, "ours: the original")
        .await
        .unwrap();
    let sdk_message = peer.send_text(&rid, "sdk: its own").await;
    ours.wait_for(&room, "sdk: its own").await;
    let deleted = peer.send_text(&rid, "sdk: deleted").await;
    ours.wait_for(&room, "sdk: deleted").await;
    peer.redact(&rid, &deleted).await;
    sync_until(&mut ours, "the deletion", |s| {
        s.redactions.iter().any(|r| r.event_id == deleted.as_str())
    })
    .await;
    let valid_edit = peer
        .send_raw_message(&rid, edit_of(sdk_message.as_str(), "sdk: its own, edited"))
        .await;
    sync_until(&mut ours, "the valid edit", |s| {
        s.edits.iter().any(|m| m.event_id == sdk_message.as_str())
    })
    .await;

    // The edits another member may not make.
    let hostile: [(&str, &str); 3] = [
        (ours_message.as_str(), "edit_not_by_sender"),
        (valid_edit.as_str(), "edit_of_edit"),
        (deleted.as_str(), "edit_of_redacted"),
    ];
    let mut sent = Vec::new();
    for (target, _) in &hostile {
        let id = peer
            .send_raw_message(&rid, edit_of(target, "FORGED TEXT"))
            .await;
        sent.push(id);
    }
    let deadline = tokio::time::Instant::now() + ARRIVES;
    let refused = loop {
        ours.sync().await;
        let refused: Vec<_> = ours
            .client
            .store()
            .security_events()
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "edit_refused")
            .collect();
        if refused.len() >= hostile.len() || tokio::time::Instant::now() >= deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.len(), hostile.len(), "{refused:#?}");
    for ((target, code), id) in hostile.iter().zip(&sent) {
        let entry = refused
            .iter()
            .find(|e| e.detail.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no journal entry for {code}: {refused:#?}"));
        assert_eq!(
            entry.detail,
            format!("{code}: {id} edits {target}"),
            "{entry:#?}"
        );
        assert_eq!(entry.user_id.as_deref(), Some(peer.user_id.as_str()));
    }
    // Nothing forged is shown anywhere; the original texts stand.
    let listed = ours.client.messages(&room, 100).unwrap();
    assert!(
        !listed
            .iter()
            .any(|m| m.body.as_deref().is_some_and(|b| b.contains("FORGED"))),
        "{listed:#?}"
    );
    let body_of = |r: &str, id: &str| {
        ours.client
            .messages(r, 100)
            .unwrap()
            .into_iter()
            .find(|m| m.event_id == id)
            .and_then(|m| m.body)
    };
    assert_eq!(
        body_of(&room, &ours_message).as_deref(),
        Some("ours: the original")
    );
    assert_eq!(
        body_of(&room, sdk_message.as_str()).as_deref(),
        Some("sdk: its own, edited")
    );
    assert_eq!(body_of(&room, deleted.as_str()), None);
}
