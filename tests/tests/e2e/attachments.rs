//! Encrypted attachments (issue 8) between our own clients, through the real content scanner:
//! Synapse with the legacy media API, matrix-content-scanner 1.0.8 with ClamAV and the local
//! EICAR signatures, nginx as the only TLS front (the client's homeserver URL). The client
//! library does everything: encryption while uploading, the `m.file` event, the scanner
//! request encrypted to the scanner's key, the hash check and decryption.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tchap_secure_core::client::media::OutgoingFile;
use tchap_secure_core::store::TimelineEvent;
use tchap_secure_core::{Client, Config, Error};
use tchap_secure_tests::content_scanner::{
    ContentScanner, MEDIA_PROXY, assert_no_plain_download, count_requests, proxied_downloads,
};
use tchap_secure_tests::harness::{InProcess, contains_bytes, document, files_under, rt};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::{Pair, pair_on};
use crate::support::Member;

struct Fixture {
    scanner: ContentScanner,
    a: InProcess,
    b: InProcess,
    alice: Client,
    bob: Client,
    room: String,
}

fn scanner_config(scanner: &ContentScanner, extra: serde_json::Value) -> Config {
    let mut config = scanner.client_config();
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// Alice and Bob on the legacy-media Synapse, both through the scanner's front, in one
/// encrypted room.
fn fixture(rt: &tokio::runtime::Runtime, prefix: &str) -> Fixture {
    let synapse = Synapse::shared_legacy_media();
    let scanner = ContentScanner::start(synapse);
    let config = scanner_config(&scanner, json!({}));
    let Pair {
        a,
        b,
        alice,
        bob,
        room,
    } = pair_on(rt, prefix, synapse, config);
    Fixture {
        scanner,
        a,
        b,
        alice,
        bob,
        room,
    }
}

fn send(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    room: &str,
    bytes: &[u8],
    name: &str,
    mimetype: Option<&str>,
) -> String {
    rt.block_on(client.send_file(
        room,
        Cursor::new(bytes.to_vec()),
        OutgoingFile {
            name,
            mimetype,
            len: bytes.len() as u64,
        },
    ))
    .unwrap_or_else(|e| panic!("send {name}: {e}"))
}

/// Syncs `client` until event `event_id` is in `room`'s timeline, decrypted.
fn receive(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    room: &str,
    event_id: &str,
) -> TimelineEvent {
    for _ in 0..20 {
        if let Some(m) = client
            .messages(room, 100)
            .unwrap()
            .into_iter()
            .find(|m| m.event_id == event_id && m.state == "decrypted")
        {
            return m;
        }
        rt.block_on(client.sync_once(Duration::from_millis(500)))
            .unwrap();
    }
    panic!(
        "{event_id} never arrived; timeline: {:#?}",
        client.messages(room, 20).unwrap()
    );
}

fn download(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    room: &str,
    event_id: &str,
) -> (Result<u64, Error>, Vec<u8>) {
    let mut sink = Vec::new();
    let result = rt.block_on(client.download_file(room, event_id, &mut sink));
    (result, sink)
}

/// The stored media file of the upload whose size is `len` (unique in the test), in the
/// Synapse's media store.
fn stored_media(len: u64, after: SystemTime) -> PathBuf {
    let root = Synapse::shared_legacy_media()
        .data_dir
        .join("media_store/local_content");
    let mut found: Vec<PathBuf> = files_under(&root)
        .into_iter()
        .filter(|path| {
            let meta = std::fs::metadata(path).unwrap();
            meta.len() == len && meta.modified().unwrap() >= after
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "uploads of {len} bytes under {}: {found:?}",
        root.display()
    );
    found.remove(0)
}

/// Top-level entries of the temp directory changed since `since`, except other tests'
/// content scanners (whose temp dirs briefly hold the EICAR file they are scanning).
fn fresh_temp_entries(since: SystemTime, ours: &ContentScanner) -> Vec<PathBuf> {
    let own = ours.scanner_temp_dir();
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let other_scanner =
                name.starts_with("tchap-secure-scanner-") && !own.starts_with(e.path());
            !other_scanner
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_document_round_trips_through_the_scanner_and_the_eicar_file_is_refused_without_trace() {
    let rt = rt();
    let started = SystemTime::now();
    let mut f = fixture(&rt, "attach");

    // A clean document: Bob gets exactly Alice's bytes.
    let doc = document(300_001, 1);
    let doc_id = send(
        &rt,
        &mut f.alice,
        &f.room,
        &doc,
        "ordre du jour.pdf",
        Some("application/pdf"),
    );
    let event = receive(&rt, &mut f.bob, &f.room, &doc_id);
    let summary = event.attachment.clone().expect("an attachment summary");
    assert_eq!(summary.msgtype, "m.file");
    assert_eq!(summary.name, "ordre du jour.pdf");
    assert_eq!(summary.mimetype.as_deref(), Some("application/pdf"));
    assert_eq!(summary.size, Some(doc.len() as u64));
    let (result, got) = download(&rt, &mut f.bob, &f.room, &doc_id);
    assert_eq!(result.unwrap(), doc.len() as u64);
    assert!(
        got == doc,
        "the downloaded document differs from the one sent"
    );
    // Alice reads her own attachment too.
    receive(&rt, &mut f.alice, &f.room, &doc_id);
    let (result, got) = download(&rt, &mut f.alice, &f.room, &doc_id);
    assert_eq!(result.unwrap(), doc.len() as u64);
    assert!(got == doc);

    // An image is an m.image; a hostile name is sanitised.
    let png = document(4_000, 2);
    let png_id = send(
        &rt,
        &mut f.alice,
        &f.room,
        &png,
        "../../\u{202e}gnp.exe",
        Some("image/png"),
    );
    let summary = receive(&rt, &mut f.bob, &f.room, &png_id)
        .attachment
        .unwrap();
    assert_eq!(summary.msgtype, "m.image");
    assert!(
        !summary.name.contains('/') && !summary.name.contains('\u{202e}'),
        "{:?}",
        summary.name
    );
    assert!(download(&rt, &mut f.bob, &f.room, &png_id).1 == png);

    // The EICAR file: refused by the scanner, nothing handed over, a security event.
    let eicar = std::fs::read(f.scanner.eicar_path()).unwrap();
    assert_eq!(eicar.len(), 68, "not the EICAR file");
    let eicar_id = send(
        &rt,
        &mut f.alice,
        &f.room,
        &eicar,
        "rapport.txt",
        Some("text/plain"),
    );
    receive(&rt, &mut f.bob, &f.room, &eicar_id);
    let (result, got) = download(&rt, &mut f.bob, &f.room, &eicar_id);
    let error = result.expect_err("the EICAR file was handed over");
    assert!(
        error.is_infected_file(),
        "refused for another reason: {error:?}"
    );
    assert_eq!(error.code(), "infected_file");
    assert!(
        got.is_empty(),
        "{} bytes of the infected file were written",
        got.len()
    );
    let journal = f.bob.store().security_events().unwrap();
    let infected: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == "infected_file")
        .collect();
    assert_eq!(infected.len(), 1, "{journal:#?}");
    assert_eq!(infected[0].room_id.as_deref(), Some(f.room.as_str()));
    assert!(
        infected[0].detail.contains(&eicar_id),
        "{:?}",
        infected[0].detail
    );
    let scanner_log = f.scanner.scanner_log();
    assert!(
        scanner_log.contains("Tchap.Test.EICAR") && scanner_log.contains("FOUND"),
        "ClamAV did not detect it:\n{scanner_log}"
    );

    // No trace of it in clear: ClamAV (the same signatures) over both data directories, the
    // scanner's directory (its temp files, nginx's buffers) and whatever appeared in the temp
    // directory during the test; a byte search of the data directories too. The scan can
    // fail: it finds the EICAR file itself.
    let positive = f.scanner.clamscan(&[f.scanner.eicar_path()]);
    assert_eq!(
        positive.len(),
        1,
        "clamscan does not detect the EICAR file: {positive:?}"
    );
    let mut paths = vec![
        f.a.data_dir(),
        f.b.data_dir(),
        f.scanner.scanner_temp_dir(),
        f.scanner.nginx_dir(),
    ];
    for path in &paths {
        assert!(path.is_dir(), "{} is not a directory", path.display());
    }
    paths.extend(fresh_temp_entries(started, &f.scanner));
    let found = f.scanner.clamscan(&paths);
    assert!(found.is_empty(), "the EICAR file in clear: {found:?}");
    for dir in [f.a.data_dir(), f.b.data_dir()] {
        for file in files_under(&dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !contains_bytes(&bytes, &eicar[..24]),
                "EICAR bytes in {}",
                file.display()
            );
        }
    }

    // Every download went through the scanner (Bob's document, Alice's, the image, the
    // EICAR file); none through the plain media API.
    let log = f.scanner.access_log_after_downloads(4);
    assert_eq!(proxied_downloads(&log), 4, "{log}");
    assert_no_plain_download(&log);
    // The upload carried no file name.
    assert!(!log.contains("filename="), "{log}");
}

#[test]
fn a_ciphertext_altered_or_truncated_on_the_server_is_refused() {
    let rt = rt();
    let mut f = fixture(&rt, "attach-tamper");

    // Flipped byte, before any download: the scanner reports the digest mismatch.
    let before = SystemTime::now() - Duration::from_secs(1);
    let doc = document(70_001, 3);
    let id = send(&rt, &mut f.alice, &f.room, &doc, "budget.ods", None);
    let stored = stored_media(doc.len() as u64, before);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[40_000] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();
    receive(&rt, &mut f.bob, &f.room, &id);
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    let error = result.expect_err("an altered ciphertext was accepted");
    assert!(
        error.is_attachment_tampered(),
        "refused for another reason: {error:?}"
    );
    assert!(
        got.is_empty(),
        "{} bytes of an altered file were written",
        got.len()
    );

    // Truncated after a clean download: whatever the scanner remembers of the file, the
    // client checks the bytes it gets.
    let before = SystemTime::now() - Duration::from_secs(1);
    let doc = document(90_001, 4);
    let id = send(
        &rt,
        &mut f.alice,
        &f.room,
        &doc,
        "notes.txt",
        Some("text/plain"),
    );
    let stored = stored_media(doc.len() as u64, before);
    receive(&rt, &mut f.bob, &f.room, &id);
    assert!(download(&rt, &mut f.bob, &f.room, &id).1 == doc);
    // The server serves the shorter file as a whole one: its length is in Synapse's
    // database too (else Synapse announces the old length and the transfer stalls).
    let bytes = std::fs::read(&stored).unwrap();
    let short = bytes.len() - 1000;
    std::fs::write(&stored, &bytes[..short]).unwrap();
    let media_id = stored.file_name().unwrap().to_string_lossy().into_owned();
    let db = rusqlite::Connection::open(Synapse::shared_legacy_media().database_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let updated = db
        .execute(
            "UPDATE local_media_repository SET media_length = ?1 WHERE media_id LIKE '%' || ?2",
            rusqlite::params![short as i64, media_id],
        )
        .unwrap();
    assert_eq!(updated, 1, "media {media_id} not in Synapse's database");
    drop(db);
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    let error = result.expect_err("a truncated ciphertext was accepted");
    assert!(
        error.is_attachment_tampered(),
        "refused for another reason: {error:?}"
    );
    assert!(
        got.is_empty(),
        "{} bytes of a truncated file were written",
        got.len()
    );
}

/// Bob's journal entries of `kind`.
fn journal_of(client: &Client, kind: &str) -> Vec<tchap_secure_core::store::SecurityEvent> {
    let journal = client.store().security_events().unwrap();
    journal.into_iter().filter(|e| e.kind == kind).collect()
}

/// Issue 15 item 1: the scanner's key is pinned by the configuration. A rotation to a key the
/// configuration lists works (one refused request with the old key, one retry); a rotation to
/// an unlisted key — a front serving its own key — is refused: typed error, security event,
/// and no request encrypted to it. No pinned key at all: nothing is requested.
#[test]
fn the_scanner_key_is_pinned_a_listed_rotation_works_and_an_unlisted_key_is_refused() {
    let rt = rt();
    let mut f = fixture(&rt, "attach-scanner");
    let doc = document(20_001, 5);
    let id = send(&rt, &mut f.alice, &f.room, &doc, "compte rendu.odt", None);
    receive(&rt, &mut f.bob, &f.room, &id);

    // The operator makes the next key pair before rotating, and the MDM pushes both keys.
    let current = f.scanner.public_key();
    let current_pair = f.scanner.saved_key();
    f.scanner.rotate_key();
    let next = f.scanner.public_key();
    let next_pair = f.scanner.saved_key();
    assert_ne!(next, current);
    f.scanner.install_key(&current_pair);
    assert_eq!(f.scanner.public_key(), current);
    let both = f
        .scanner
        .client_config_pinning(&[current.clone(), next.clone()]);
    let both = Config::from_json(both.to_string().as_bytes()).unwrap();
    drop(std::mem::replace(
        &mut f.bob,
        f.b.open_with(both.clone()).unwrap(),
    ));
    assert!(download(&rt, &mut f.bob, &f.room, &id).1 == doc);
    let log = f.scanner.access_log_after_downloads(1);
    assert_eq!(proxied_downloads(&log), 1, "{log}");

    // Rotation to the listed key: the client's cached key is refused once, it fetches the new
    // one, finds it pinned and retries.
    f.scanner.install_key(&next_pair);
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    assert_eq!(result.unwrap(), doc.len() as u64);
    assert!(got == doc);
    let log = f.scanner.access_log_after_downloads(3);
    assert_eq!(
        proxied_downloads(&log),
        3,
        "one refused request with the old key, one retry:\n{log}"
    );
    assert!(journal_of(&f.bob, "scanner_key_unpinned").is_empty());

    // Rotation to a key nobody announced (the front's own, say): refused after the one
    // request made with the pinned key the client held; nothing encrypted to the new one.
    f.scanner.rotate_key();
    let rogue = f.scanner.public_key();
    assert!(rogue != current && rogue != next);
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    let error = result.expect_err("a download went through an unpinned scanner key");
    assert_eq!(error.code(), "scanner_key_unpinned", "{error:?}");
    assert!(error.to_string().contains(&rogue), "{error}");
    assert!(!error.is_network(), "{error:?}");
    assert!(got.is_empty());
    let log = f.scanner.access_log_after_downloads(4);
    assert_eq!(
        proxied_downloads(&log),
        4,
        "no retry with the rogue key:\n{log}"
    );
    let events = journal_of(&f.bob, "scanner_key_unpinned");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(events[0].detail.contains(&rogue) && events[0].detail.contains(&id));
    assert_eq!(events[0].room_id.as_deref(), Some(f.room.as_str()));

    // A fresh client (nothing cached) never sends a download request at all.
    drop(std::mem::replace(&mut f.bob, f.b.open_with(both).unwrap()));
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    assert_eq!(result.unwrap_err().code(), "scanner_key_unpinned");
    assert!(got.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let log = f.scanner.nginx_access_log();
    assert_eq!(proxied_downloads(&log), 4, "{log}");
    assert_eq!(journal_of(&f.bob, "scanner_key_unpinned").len(), 2);

    // No key configured: refused before any request.
    let keys_before = count_requests(&log, &format!("{MEDIA_PROXY}/public_key"));
    let unpinned = f.scanner.client_config_pinning(&[]);
    let unpinned = Config::from_json(unpinned.to_string().as_bytes()).unwrap();
    drop(std::mem::replace(
        &mut f.bob,
        f.b.open_with(unpinned).unwrap(),
    ));
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    assert_eq!(result.unwrap_err().code(), "scanner_keys_not_configured");
    assert!(got.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let log = f.scanner.nginx_access_log();
    assert_eq!(
        count_requests(&log, &format!("{MEDIA_PROXY}/public_key")),
        keys_before,
        "{log}"
    );
    assert_eq!(proxied_downloads(&log), 4, "{log}");
}

#[test]
fn a_stopped_scanner_is_a_typed_error_and_never_a_plain_download() {
    let rt = rt();
    let mut f = fixture(&rt, "attach-stopped");
    let doc = document(20_001, 7);
    let id = send(&rt, &mut f.alice, &f.room, &doc, "compte rendu.odt", None);
    receive(&rt, &mut f.bob, &f.room, &id);
    assert!(download(&rt, &mut f.bob, &f.room, &id).1 == doc);
    f.scanner.access_log_after_downloads(1);

    // Scanner stopped: a typed "unavailable" error, nothing written, and no fallback to the
    // plain media API.
    f.scanner.stop_scanner();
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    let error = result.expect_err("a download succeeded with the scanner stopped");
    assert_eq!(error.code(), "scanner_unavailable", "{error:?}");
    assert!(error.is_network(), "{error:?}");
    assert!(got.is_empty());
    let log = f.scanner.access_log_after_downloads(2);
    assert_eq!(proxied_downloads(&log), 2, "{log}");
    assert_no_plain_download(&log);

    // Back up: it works again.
    f.scanner.start_scanner();
    assert!(download(&rt, &mut f.bob, &f.room, &id).1 == doc);
}

#[test]
fn attachments_over_the_configured_cap_are_refused_before_upload_and_before_decryption() {
    let rt = rt();
    let mut f = fixture(&rt, "attach-cap");
    let doc = document(5_000, 6);
    let id = send(&rt, &mut f.alice, &f.room, &doc, "annexe.pdf", None);
    receive(&rt, &mut f.bob, &f.room, &id);

    // Alice and Bob again, with a 4 KiB cap.
    let capped = scanner_config(&f.scanner, json!({ "max_attachment_bytes": 4096 }));
    drop(std::mem::replace(
        &mut f.alice,
        f.a.open_with(capped.clone()).unwrap(),
    ));
    drop(std::mem::replace(
        &mut f.bob,
        f.b.open_with(capped).unwrap(),
    ));
    assert_eq!(rt.block_on(f.alice.attachment_limit()).unwrap(), 4096);
    let uploads_before = count_requests(&f.scanner.nginx_access_log(), "/_matrix/media/v3/upload");
    let error = rt
        .block_on(f.alice.send_file(
            &f.room,
            Cursor::new(doc.clone()),
            OutgoingFile {
                name: "annexe.pdf",
                mimetype: None,
                len: doc.len() as u64,
            },
        ))
        .expect_err("a file over the cap was sent");
    assert_eq!(error.code(), "attachment_too_large", "{error:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count_requests(&f.scanner.nginx_access_log(), "/_matrix/media/v3/upload"),
        uploads_before
    );

    // A received file over the cap: refused, nothing written.
    let (result, got) = download(&rt, &mut f.bob, &f.room, &id);
    assert_eq!(
        result.expect_err("over the cap").code(),
        "attachment_too_large"
    );
    assert!(got.is_empty());

    // A source shorter than announced fails the upload, and no event is sent.
    let messages_before = f.bob.messages(&f.room, 100).unwrap().len();
    let error = rt
        .block_on(f.alice.send_file(
            &f.room,
            Cursor::new(vec![7u8; 1000]),
            OutgoingFile {
                name: "short.bin",
                mimetype: None,
                len: 2000,
            },
        ))
        .expect_err("a short source was sent");
    assert_eq!(error.code(), "attachment_io", "{error:?}");
    rt.block_on(f.bob.sync_once(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(f.bob.messages(&f.room, 100).unwrap().len(), messages_before);
}

/// The CLI end to end: `send-file`, `listen` showing the file, `download --out` writing the
/// exact bytes, never overwriting; the EICAR file refused with exit status 9 and
/// `infected_file`, no output file and no partial file left next to it.
#[test]
fn the_cli_sends_and_downloads_files_and_exits_9_on_an_infected_one() {
    let synapse = Synapse::shared_legacy_media();
    let scanner = ContentScanner::start(synapse);
    let config = scanner.client_config();
    let alice = Member::on(synapse, &config, "cli-attach-a");
    let bruno = Member::on(synapse, &config, "cli-attach-b");
    alice.login().ok();
    bruno.login().ok();
    let room = alice
        .run(&["create-room", "--invite", &bruno.user_id])
        .ok()
        .json()["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bruno.run(&["rooms"]).ok();
    bruno.run(&["join", &room]).ok();
    alice.run(&["rooms"]).ok();

    let work = tempfile::tempdir().unwrap();
    let doc = document(150_001, 7);
    let doc_path = work.path().join("compte-rendu.pdf");
    std::fs::write(&doc_path, &doc).unwrap();
    let event_id = alice
        .run(&["send-file", &room, doc_path.to_str().unwrap()])
        .ok()
        .json()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listen = bruno
        .run(&["listen", "--max-messages", "1", "--timeout-ms", "5000"])
        .ok()
        .json();
    assert_eq!(listen["event_id"], event_id.as_str(), "{listen}");
    assert_eq!(listen["attachment"]["name"], "compte-rendu.pdf", "{listen}");
    assert_eq!(
        listen["attachment"]["mimetype"], "application/pdf",
        "{listen}"
    );
    assert_eq!(listen["attachment"]["size"], doc.len(), "{listen}");
    assert!(
        listen["attachment"].get("file").is_none(),
        "key material in the output: {listen}"
    );

    let out = work.path().join("received.pdf");
    let downloaded = bruno
        .run(&["download", &room, &event_id, "--out", out.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(downloaded["bytes"], doc.len(), "{downloaded}");
    assert!(
        std::fs::read(&out).unwrap() == doc,
        "the downloaded file differs"
    );
    // Never overwrites.
    let again = bruno.run(&["download", &room, &event_id, "--out", out.to_str().unwrap()]);
    assert_eq!(again.status, 2, "{again:?}");
    assert!(std::fs::read(&out).unwrap() == doc);

    let eicar_path = work.path().join("rapport.txt");
    std::fs::copy(scanner.eicar_path(), &eicar_path).unwrap();
    let eicar_event = alice
        .run(&["send-file", &room, eicar_path.to_str().unwrap()])
        .ok()
        .json()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused_path = work.path().join("refused.txt");
    let refused = bruno.run(&[
        "download",
        &room,
        &eicar_event,
        "--out",
        refused_path.to_str().unwrap(),
    ]);
    assert_eq!(refused.status, 9, "{refused:?}");
    assert_eq!(refused.error()["error"], "infected_file", "{refused:?}");
    assert!(!refused_path.exists(), "the infected file was written");
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tchap-secure-download-"))
        .collect();
    assert!(left.is_empty(), "partial downloads left: {left:?}");
    let journal = bruno.run(&["security-events"]).ok().stdout;
    assert!(journal.contains("infected_file"), "{journal}");
}
