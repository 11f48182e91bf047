//! Encrypted attachments between our client and matrix-sdk 0.18, both ways, on the content
//! scanner's testbed (issue 8): the legacy-media Synapse, matrix-content-scanner with ClamAV,
//! nginx as our client's only front. Our client reaches the media only through the scanner;
//! the matrix-sdk peer, which knows no scanner, talks to the same Synapse directly.
//!
//! What is proven:
//! - a file matrix-sdk encrypted and sent (`Room::send_attachment`) decrypts in our client as an
//!   attachment (name, media type, size), and `download_file` — scanner request, hash check,
//!   local decryption — yields exactly the bytes the peer sent;
//! - a file our client sent (`send_file`) decrypts in matrix-sdk as an `m.file` with an
//!   `EncryptedFile`, and the SDK's own download and decryption (which checks the SHA-256)
//!   yield exactly our bytes;
//! - either way, the event is Megolm-encrypted on the server, its decrypted content carries a
//!   `file` and no clear `url`, and what the media repository stores is ciphertext.

use std::io::Cursor;
use std::time::{Duration, Instant};

use matrix_sdk::attachment::{AttachmentConfig, AttachmentInfo, BaseFileInfo};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::{OwnedMxcUri, OwnedRoomId, OwnedUserId, UInt, UserId};
use tchap_secure_core::client::media::OutgoingFile;
use tchap_secure_core::store::TimelineEvent;
use tchap_secure_core::{Client, Config};
use tchap_secure_tests::content_scanner::{
    ContentScanner, assert_no_plain_download, count_requests, proxied_downloads,
};
use tchap_secure_tests::harness::{InProcess, contains_bytes, document, password};
use tchap_secure_tests::synapse::Synapse;

use crate::peer::{FileMessage, Peer};
use crate::{ARRIVES, PASSWORD};

/// Our client on the scanner's front and a matrix-sdk peer on the same Synapse, both joined
/// to an encrypted room the peer created.
struct Fixture {
    // Declared first: dropped (scanner and nginx stopped) after the clients.
    scanner: ContentScanner,
    _home: InProcess,
    ours: Client,
    ours_user: OwnedUserId,
    peer: Peer,
    room: OwnedRoomId,
}

async fn fixture(prefix: &str) -> Fixture {
    let started = Instant::now();
    let synapse = Synapse::shared_legacy_media();
    let scanner = ContentScanner::start(synapse);
    let config = Config::from_json(scanner.client_config().to_string().as_bytes())
        .unwrap_or_else(|e| panic!("the scanner front's client configuration: {e}"));

    let ours_localpart = synapse.unique_user(&format!("{prefix}-ours"));
    synapse.register(
        &ours_localpart,
        tchap_secure_tests::harness::PASSWORD,
        false,
    );
    let home = InProcess::new(prefix);
    let mut ours = home
        .open_with(config)
        .unwrap_or_else(|e| panic!("open our client: {e}"));
    let info = ours
        .login(&ours_localpart, &password(), &format!("{prefix}-phone"))
        .await
        .unwrap_or_else(|e| panic!("log {ours_localpart} in through the front: {e}"));
    let ours_user = UserId::parse(info.user_id.as_str()).expect("our user id");

    let peer_localpart = synapse.unique_user(&format!("{prefix}-sdk"));
    synapse.register(&peer_localpart, PASSWORD, false);
    let peer = Peer::login_on(synapse, &peer_localpart, PASSWORD).await;

    let room = peer
        .create_encrypted_room(std::slice::from_ref(&ours_user))
        .await;
    sync(&mut ours).await;
    ours.join(room.as_str())
        .await
        .unwrap_or_else(|e| panic!("{ours_user}: join {room}: {e}"));
    sync(&mut ours).await;
    assert!(
        peer.wait_for_membership(&room, &ours_user, MembershipState::Join, ARRIVES)
            .await,
        "the peer never saw {ours_user} join {room}"
    );
    eprintln!(
        "{prefix}: scanner, our client ({ours_user}) and the matrix-sdk peer ({}) in {room} after {:?}",
        peer.user_id,
        started.elapsed()
    );
    Fixture {
        scanner,
        _home: home,
        ours,
        ours_user,
        peer,
        room,
    }
}

async fn sync(ours: &mut Client) {
    ours.sync_once(Duration::from_millis(500))
        .await
        .unwrap_or_else(|e| panic!("our sync: {e}"));
}

/// Syncs our client until event `event_id` is in `room`'s timeline, decrypted (panics after
/// `ARRIVES`, with the timeline).
async fn ours_receive(ours: &mut Client, room: &str, event_id: &str) -> TimelineEvent {
    let deadline = Instant::now() + ARRIVES;
    loop {
        let timeline = ours
            .messages(room, 100)
            .unwrap_or_else(|e| panic!("our timeline of {room}: {e}"));
        if let Some(event) = timeline
            .iter()
            .find(|m| m.event_id == event_id && m.state == "decrypted")
        {
            return event.clone();
        }
        if Instant::now() >= deadline {
            panic!("{event_id} never decrypted in our client; timeline: {timeline:#?}");
        }
        sync(ours).await;
    }
}

/// The decrypted content of a file message carries an `EncryptedFile` (v2, A256CTR, a
/// SHA-256) as `file` and no clear `url`, as the sender wrote it and as ruma parses it;
/// returns the `mxc://` URI of the ciphertext.
fn assert_encrypted_file(message: &FileMessage) -> OwnedMxcUri {
    let json = &message.json;
    assert!(
        json.get("url").is_none(),
        "{}: a clear url in {json}",
        message.event_id
    );
    let file = &json["file"];
    assert_eq!(file["v"], "v2", "{}: {json}", message.event_id);
    assert_eq!(
        file["key"]["alg"], "A256CTR",
        "{}: {json}",
        message.event_id
    );
    assert!(
        file["hashes"]["sha256"].as_str().is_some(),
        "{}: no SHA-256 in {json}",
        message.event_id
    );
    let MediaSource::Encrypted(encrypted) = &message.content.source else {
        panic!(
            "{}: ruma reads a plain source: {:?}",
            message.event_id, message.content.source
        );
    };
    assert_eq!(encrypted.info.version(), "v2");
    assert_eq!(
        file["url"].as_str(),
        Some(encrypted.url.as_str()),
        "{}: {json}",
        message.event_id
    );
    encrypted.url.clone()
}

/// What the media repository holds at `uri` (fetched by the peer as a plain media) is the
/// ciphertext of `plaintext`: same length (AES-CTR), different bytes, and not even the
/// document's recognisable first line.
async fn assert_stored_as_ciphertext(peer: &Peer, uri: &OwnedMxcUri, plaintext: &[u8]) {
    let stored = peer.download_stored(uri).await;
    assert_eq!(
        stored.len(),
        plaintext.len(),
        "{uri}: stored {} bytes for a {}-byte file",
        stored.len(),
        plaintext.len()
    );
    assert!(stored != plaintext, "{uri} is stored in clear");
    assert!(
        !contains_bytes(&stored, &plaintext[..40]),
        "{uri}: the document's first line is in the stored bytes"
    );
}

/// matrix-sdk → us: the SDK encrypts and uploads a document; our client decrypts the event,
/// shows the attachment, and opens it only through the content scanner, getting the peer's
/// exact bytes.
#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_from_matrix_sdk_is_scanned_and_opened_by_us() {
    let mut f = fixture("io-attach-in").await;
    let room = f.room.as_str().to_owned();
    let doc = document(100_003, 11);
    let name = "note du cabinet.pdf";

    let started = Instant::now();
    let size = UInt::new(doc.len() as u64).expect("a small size");
    let config =
        AttachmentConfig::new().info(AttachmentInfo::File(BaseFileInfo { size: Some(size) }));
    let event_id = f
        .peer
        .send_attachment(&f.room, name, "application/pdf", doc.clone(), config)
        .await;
    eprintln!(
        "matrix-sdk encrypted, uploaded and sent {} bytes in {:?}",
        doc.len(),
        started.elapsed()
    );
    // On the server: a Megolm event, whose content (as the peer itself decrypts it) holds an
    // `EncryptedFile`, and whose media is ciphertext.
    let session = f.peer.megolm_session_of(&f.room, &event_id).await;
    let own = f
        .peer
        .wait_for_file(&f.room, &event_id, ARRIVES)
        .await
        .unwrap_or_else(|| panic!("the peer never saw its own {event_id}"));
    let uri = assert_encrypted_file(&own);
    assert_stored_as_ciphertext(&f.peer, &uri, &doc).await;

    // Our client decrypts the event and shows the attachment.
    let started = Instant::now();
    let event = ours_receive(&mut f.ours, &room, event_id.as_str()).await;
    eprintln!(
        "our client decrypted the attachment's event {:?} after it was sent",
        started.elapsed()
    );
    assert_eq!(event.sender, f.peer.user_id.as_str());
    assert_eq!(
        event.sender_device.as_deref(),
        Some(f.peer.device_id.as_str())
    );
    assert_eq!(event.trust.as_deref(), Some("tofu"));
    assert_eq!(event.session_id.as_deref(), Some(session.as_str()));
    let summary = event
        .attachment
        .clone()
        .unwrap_or_else(|| panic!("no attachment in {event:#?}"));
    assert_eq!(summary.msgtype, "m.file", "{summary:?}");
    assert_eq!(summary.name, name, "{summary:?}");
    assert_eq!(
        summary.mimetype.as_deref(),
        Some("application/pdf"),
        "{summary:?}"
    );
    assert_eq!(summary.size, Some(doc.len() as u64), "{summary:?}");

    // Opened through the scanner: exactly the peer's bytes.
    let started = Instant::now();
    let mut got = Vec::new();
    let written = f
        .ours
        .download_file(&room, event_id.as_str(), &mut got)
        .await
        .unwrap_or_else(|e| panic!("our download of {event_id} through the scanner: {e}"));
    eprintln!(
        "our client downloaded {written} bytes through the scanner in {:?}",
        started.elapsed()
    );
    assert_eq!(written, doc.len() as u64);
    assert!(
        got == doc,
        "the document we opened differs from the one matrix-sdk sent ({} bytes, {} expected)",
        got.len(),
        doc.len()
    );

    // Our only media request went through the scanner: one `download_encrypted`, no plain
    // download. The peer's upload went to Synapse directly, so the front saw no upload.
    let log = f.scanner.access_log_after_downloads(1);
    assert_eq!(proxied_downloads(&log), 1, "{log}");
    assert_no_plain_download(&log);
    assert_eq!(count_requests(&log, "/_matrix/media/v3/upload"), 0, "{log}");
}

/// Us → matrix-sdk: our client encrypts while uploading and sends an `m.file`; matrix-sdk
/// decrypts the event, reads an `EncryptedFile`, and its own download and decryption (hash
/// checked) give back our exact bytes.
#[tokio::test(flavor = "multi_thread")]
async fn our_attachment_opens_in_matrix_sdk() {
    let mut f = fixture("io-attach-out").await;
    let room = f.room.as_str().to_owned();
    let doc = document(99_989, 12);
    let name = "ordre du jour.pdf";

    let started = Instant::now();
    let sent = f
        .ours
        .send_file(
            &room,
            Cursor::new(doc.clone()),
            OutgoingFile {
                name,
                mimetype: Some("application/pdf"),
                len: doc.len() as u64,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("our send_file: {e}"));
    eprintln!(
        "our client encrypted, uploaded and sent {} bytes in {:?}",
        doc.len(),
        started.elapsed()
    );
    let event_id = matrix_sdk::ruma::EventId::parse(sent.as_str())
        .unwrap_or_else(|e| panic!("our event id {sent:?}: {e}"));
    let session = f.peer.megolm_session_of(&f.room, &event_id).await;
    assert_eq!(
        f.ours
            .outbound_session_id(&room)
            .unwrap_or_else(|e| panic!("our outbound session: {e}")),
        Some(session),
        "the server's copy is not encrypted with our current Megolm session"
    );

    // matrix-sdk decrypts the event: an `m.file` with an `EncryptedFile`.
    let started = Instant::now();
    let message = f
        .peer
        .wait_for_file(&f.room, &event_id, ARRIVES)
        .await
        .unwrap_or_else(|| {
            panic!(
                "matrix-sdk never decrypted our file message {event_id}; undecryptable: {:?}",
                f.peer.undecryptable(&f.room)
            )
        });
    eprintln!(
        "matrix-sdk decrypted our attachment's event {:?} after it was sent",
        started.elapsed()
    );
    assert_eq!(message.sender, f.ours_user);
    let content = &message.content;
    assert_eq!(content.filename(), name, "{content:?}");
    assert_eq!(content.caption(), None, "{content:?}");
    let info = content
        .info
        .as_deref()
        .unwrap_or_else(|| panic!("no info in {:?}", message.json));
    assert_eq!(info.mimetype.as_deref(), Some("application/pdf"));
    assert_eq!(info.size, UInt::new(doc.len() as u64));
    let uri = assert_encrypted_file(&message);
    assert_stored_as_ciphertext(&f.peer, &uri, &doc).await;

    // matrix-sdk downloads (from Synapse, directly) and decrypts: exactly our bytes.
    let endpoint = f.peer.media_download_endpoint().await;
    let started = Instant::now();
    let got = f.peer.download_file(content).await;
    eprintln!(
        "matrix-sdk downloaded and decrypted {} bytes in {:?} (from Synapse directly, {endpoint})",
        got.len(),
        started.elapsed()
    );
    assert!(
        got == doc,
        "the document matrix-sdk opened differs from ours ({} bytes, {} expected)",
        got.len(),
        doc.len()
    );

    // And our client reads its own attachment back, through the scanner.
    ours_receive(&mut f.ours, &room, &sent).await;
    let mut own = Vec::new();
    f.ours
        .download_file(&room, &sent, &mut own)
        .await
        .unwrap_or_else(|e| panic!("our download of our own {sent}: {e}"));
    assert!(own == doc, "our own document differs once downloaded");

    // The front saw our upload and our scanned download, and no plain download: matrix-sdk's
    // went to Synapse directly.
    let log = f.scanner.access_log_after_downloads(1);
    assert_eq!(count_requests(&log, "/_matrix/media/v3/upload"), 1, "{log}");
    assert_eq!(proxied_downloads(&log), 1, "{log}");
    assert_no_plain_download(&log);
}
