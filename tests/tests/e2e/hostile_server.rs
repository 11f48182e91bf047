//! A hostile homeserver: the victim's client talks to the real Synapse through a
//! man-in-the-middle that holds the pinned certificate ([`HostileProxy`]). The client logs in
//! and syncs for real, then the server turns hostile: it forges device lists, swaps a device's
//! keys, contradicts itself, replays old answers, never finishes an answer, or sends oversized
//! and absurdly nested JSON. Each ends in a typed error or a safe refusal (journaled where it
//! is an attack), never a panic, and nothing already stored is lost.
//!
//! The victim is Alice (through the proxy); her contacts use their own clients directly on
//! Synapse, so what they receive is what Alice really sent.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tchap_secure_core::api::ApiError;
use tchap_secure_core::crypto::CryptoError;
use tchap_secure_core::crypto::signing::sign_json;
use tchap_secure_core::net::{Limits, Transport, TransportError};
use tchap_secure_core::store::DeviceState;
use tchap_secure_core::{Client, Config, Error};
use tchap_secure_hsm::{Vault, VaultBinding};
use tchap_secure_tests::harness::{access_token, raw_event};
use tchap_secure_tests::hostile_proxy::{HostileProxy, Reply, Route, Rule};
use tchap_secure_tests::synapse::{SERVER_NAME, Synapse};

use crate::messaging::receive;
use crate::support::{InProcess, PASSWORD, logged_in, password, rt};

// ---------------------------------------------------------------------------------------------
// The scene

/// Alice (the victim, through the proxy), Bob (direct to Synapse), one encrypted room both
/// joined, both synced.
struct Scene {
    proxy: HostileProxy,
    a: InProcess,
    alice: Client,
    _b: InProcess,
    bob: Client,
    bob_id: String,
    room: String,
}

fn proxy_config(proxy: &HostileProxy) -> Config {
    Config::from_json(proxy.client_config().to_string().as_bytes()).unwrap()
}

/// Alice's client: through the proxy, with the product's limits or `limits`.
fn victim(
    rt: &tokio::runtime::Runtime,
    proxy: &HostileProxy,
    prefix: &str,
    limits: Option<Limits>,
) -> (InProcess, Client) {
    let synapse = Synapse::shared();
    let a = InProcess::new(prefix);
    let localpart = synapse.unique_user(&format!("{prefix}-alice"));
    synapse.register(&localpart, PASSWORD, false);
    let config = proxy_config(proxy);
    let mut alice = match limits {
        None => Client::open(config, &a.data_dir(), &a.vault).unwrap(),
        Some(limits) => {
            let transport = Transport::with_limits(&config, limits).unwrap();
            Client::open_with_transport(config, &a.data_dir(), &a.vault, transport).unwrap()
        }
    };
    rt.block_on(alice.login(&localpart, &password(), "alice-phone"))
        .unwrap();
    (a, alice)
}

fn scene(rt: &tokio::runtime::Runtime, prefix: &str, limits: Option<Limits>) -> Scene {
    let synapse = Synapse::shared();
    let proxy = HostileProxy::start(synapse);
    let (a, mut alice) = victim(rt, &proxy, prefix, limits);
    let bob_localpart = synapse.unique_user(&format!("{prefix}-bob"));
    let bob_id = synapse.register(&bob_localpart, PASSWORD, false).user_id;
    let (b, mut bob) = logged_in(rt, prefix, &bob_localpart, "bob-phone");
    let room = rt
        .block_on(alice.create_room(Some("Cellule"), std::slice::from_ref(&bob_id), false))
        .unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    Scene {
        proxy,
        a,
        alice,
        _b: b,
        bob,
        bob_id,
        room,
    }
}

impl Scene {
    /// Alice sends `text`; Bob receives it. Then Bob sends `reply`; Alice receives it.
    fn exchange(&mut self, rt: &tokio::runtime::Runtime, text: &str, reply: &str) {
        rt.block_on(self.alice.send_text(&self.room, text)).unwrap();
        receive(rt, &mut self.bob, &self.room, text);
        rt.block_on(self.bob.send_text(&self.room, reply)).unwrap();
        receive(rt, &mut self.alice, &self.room, reply);
    }
}

fn journal(client: &Client) -> Vec<(String, String)> {
    client
        .store()
        .security_events()
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect()
}

fn journal_kinds(client: &Client) -> Vec<String> {
    journal(client).into_iter().map(|(k, _)| k).collect()
}

// ---------------------------------------------------------------------------------------------
// The store, read directly (a second SQLCipher connection on the client's database)

/// Everything a hostile answer must not lose or corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    next_batch: Option<String>,
    /// `(room_id, membership, name, encryption)`.
    rooms: Vec<(String, String, Option<String>, Option<String>)>,
    /// `(room_id, user_id, membership)`.
    members: Vec<(String, String, String)>,
    /// `(event_id, room_id, state, body)`, in timeline order.
    timeline: Vec<(String, String, String, Option<String>)>,
    /// `(user_id, device_id, ed25519, curve25519, state, deleted)`.
    devices: Vec<(String, String, String, String, String, bool)>,
    /// `(room_id, session_id, sender_key, first_index)`.
    inbound: Vec<(String, String, String, i64)>,
}

struct StoreReader {
    conn: rusqlite::Connection,
}

impl StoreReader {
    fn open(member: &InProcess) -> StoreReader {
        let binding = VaultBinding {
            server_name: SERVER_NAME.to_owned(),
        };
        let vault = Vault::open(&member.data_dir(), &member.vault, &binding).unwrap();
        let conn = rusqlite::Connection::open_with_flags(
            member
                .data_dir()
                .join(tchap_secure_core::store::DATABASE_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .unwrap();
        let key = vault.database_key();
        let pragma = zeroize::Zeroizing::new(format!(
            "PRAGMA key = \"{}\";",
            &*key.sqlcipher_pragma_value()
        ));
        conn.execute_batch(&pragma).unwrap();
        StoreReader { conn }
    }

    fn rows<T>(
        &self,
        sql: &str,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Vec<T> {
        let mut stmt = self.conn.prepare(sql).unwrap();
        stmt.query_map([], f)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn snapshot(&self) -> Snapshot {
        let next_batch = self
            .rows("SELECT value FROM kv WHERE key = 'sync.next_batch'", |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .pop()
            .map(|v| String::from_utf8(v).unwrap());
        Snapshot {
            next_batch,
            rooms: self.rows(
                "SELECT room_id, membership, name, encryption FROM rooms ORDER BY room_id",
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ),
            members: self.rows(
                "SELECT room_id, user_id, membership FROM members ORDER BY room_id, user_id",
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ),
            timeline: self.rows(
                "SELECT event_id, room_id, state, body FROM timeline ORDER BY seq",
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ),
            devices: self.rows(
                "SELECT user_id, device_id, ed25519, curve25519, state, deleted FROM devices
                 ORDER BY user_id, device_id",
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get::<_, i64>(5)? != 0,
                    ))
                },
            ),
            inbound: self.rows(
                "SELECT room_id, session_id, sender_key, first_index FROM inbound_group_sessions
                 ORDER BY room_id, session_id",
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forged device keys

/// A fresh device identity, as an attacker makes one.
struct Forger {
    account: vodozemac::olm::Account,
}

impl Forger {
    fn new() -> Forger {
        Forger {
            account: vodozemac::olm::Account::new(),
        }
    }

    fn ed25519(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    fn curve25519(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// Device keys for `(user, device)` naming `curve25519` (its own unless given), self-signed
    /// by this identity and labelled `(label_user, label_device)` inside the object.
    fn keys(&self, label_user: &str, label_device: &str, curve25519: Option<&str>) -> Value {
        let curve = curve25519.map_or_else(|| self.curve25519(), str::to_owned);
        let mut keys = json!({
            "user_id": label_user,
            "device_id": label_device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{label_device}"): curve,
                format!("ed25519:{label_device}"): self.ed25519(),
            },
        });
        sign_json(
            &mut keys,
            label_user,
            &format!("ed25519:{label_device}"),
            |m| self.account.sign(m),
        )
        .unwrap();
        keys
    }

    /// A one-time key for a `/keys/claim` answer, signed by this identity.
    fn one_time_key(&mut self, user: &str, device: &str) -> (String, Value) {
        self.account.generate_one_time_keys(1);
        let (id, key) = self.account.one_time_keys().into_iter().next().unwrap();
        self.account.mark_keys_as_published();
        let mut signed = json!({ "key": key.to_base64() });
        sign_json(&mut signed, user, &format!("ed25519:{device}"), |m| {
            self.account.sign(m)
        })
        .unwrap();
        (format!("signed_curve25519:{}", id.to_base64()), signed)
    }
}

/// Room keys Alice sent, as `(user, device, recipient curve25519)`, from the proxy's log.
fn room_key_recipients(proxy: &HostileProxy) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in proxy.exchanges_on(&Route::new("PUT", "/sendToDevice/m.room.encrypted/")) {
        let Some(body) = e.request.json() else {
            continue;
        };
        let Some(users) = body["messages"].as_object() else {
            continue;
        };
        for (user, devices) in users {
            for (device, content) in devices.as_object().unwrap() {
                for curve in content["ciphertext"].as_object().unwrap().keys() {
                    out.push((user.clone(), device.clone(), curve.clone()));
                }
            }
        }
    }
    out
}

/// Devices Alice asked one-time keys for, from the proxy's log.
fn claimed_devices(proxy: &HostileProxy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in proxy.exchanges_on(&Route::keys_claim()) {
        let body = e.request.json().unwrap();
        for (user, devices) in body["one_time_keys"].as_object().unwrap() {
            for device in devices.as_object().unwrap().keys() {
                out.push((user.clone(), device.clone()));
            }
        }
    }
    out
}

#[test]
fn forged_devices_in_a_key_query_are_refused_and_never_get_a_room_key() {
    let rt = rt();
    let synapse = Synapse::shared();
    let proxy = HostileProxy::start(synapse);
    let (a, mut alice) = victim(&rt, &proxy, "forged", None);
    let reader = StoreReader::open(&a);
    let bob_localpart = synapse.unique_user("forged-bob");
    let bob_id = synapse.register(&bob_localpart, PASSWORD, false).user_id;
    let (_bp, mut bob_phone) = logged_in(&rt, "forged", &bob_localpart, "bob-phone");
    let (_bl, mut bob_laptop) = logged_in(&rt, "forged", &bob_localpart, "bob-laptop");
    let phone = bob_phone.session().unwrap().device_id;
    let laptop = bob_laptop.session().unwrap().device_id;
    let (_, phone_curve) = bob_phone.identity_keys().unwrap();

    // From Alice's very first look at Bob's devices, the server adds forgeries next to them;
    // later (once Bob's phone is pinned) also a device claiming the phone's identity key.
    let bad_signature = Forger::new();
    let other_user = Forger::new();
    let other_device = Forger::new();
    let duplicate = Forger::new();
    let stolen_curve = Forger::new();
    let forged_curves: Vec<String> = [&bad_signature, &other_user, &other_device, &duplicate]
        .iter()
        .map(|f| f.curve25519())
        .collect();
    let forged_ids = ["EVILSIG", "EVILUSER", "EVILDEV", "EVILCURVE"];
    let steal = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (bob_id, laptop, phone_curve, steal) = (
            bob_id.clone(),
            laptop.clone(),
            phone_curve.clone(),
            steal.clone(),
        );
        proxy.add(Rule::intercept(Route::keys_query(), move |_, upstream| {
            let mut answer = upstream.json().unwrap();
            let Some(devices) = answer["device_keys"][&bob_id].as_object_mut() else {
                return upstream.reply();
            };
            // 1. A signature that does not verify (content changed after signing).
            let mut tampered = bad_signature.keys(&bob_id, "EVILSIG", None);
            tampered["algorithms"] = json!(["m.olm.v1.curve25519-aes-sha2"]);
            devices.insert("EVILSIG".into(), tampered);
            // 2. Listed under Bob, but the (validly self-signed) keys say another user.
            devices.insert(
                "EVILUSER".into(),
                other_user.keys("@mallory:secure.tchap.test", "EVILUSER", None),
            );
            // 3. Listed as EVILDEV, but the keys say another device id.
            devices.insert(
                "EVILDEV".into(),
                other_device.keys(&bob_id, "OTHERDEV", None),
            );
            // 4. Later: a device that claims the identity (Curve25519) key of Bob's real phone.
            if steal.load(std::sync::atomic::Ordering::SeqCst) {
                devices.insert(
                    "EVILCURVE".into(),
                    stolen_curve.keys(&bob_id, "EVILCURVE", Some(&phone_curve)),
                );
            }
            // 5. Bob's laptop listed twice: the genuine keys, then the attacker's (raw JSON: a
            //    parser keeping the last copy would pin the attacker's).
            devices.insert(
                "DUPLICATE-PLACEHOLDER".into(),
                duplicate.keys(&bob_id, &laptop, None),
            );
            let text = answer
                .to_string()
                .replace("\"DUPLICATE-PLACEHOLDER\"", &format!("\"{laptop}\""));
            Reply::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: text.into_bytes(),
            }
        }));
    }

    let room = rt
        .block_on(alice.create_room(Some("Forgeries"), std::slice::from_ref(&bob_id), false))
        .unwrap();
    for bob in [&mut bob_phone, &mut bob_laptop] {
        rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    }
    rt.block_on(bob_phone.join(&room)).unwrap();
    for bob in [&mut bob_phone, &mut bob_laptop] {
        rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    }
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.send_text(&room, "pour le téléphone de Bob"))
        .unwrap();

    // Bob's real phone got the key and reads the message.
    let got = receive(&rt, &mut bob_phone, &room, "pour le téléphone de Bob");
    assert_eq!(got.state, "decrypted");
    // No forged device was pinned; the laptop, listed with two different keys, was not either.
    let pinned = |reader: &StoreReader| -> Vec<(String, String)> {
        reader
            .snapshot()
            .devices
            .into_iter()
            .filter(|d| d.0 == bob_id)
            .map(|d| (d.1, d.4))
            .collect()
    };
    assert_eq!(pinned(&reader), [(phone.clone(), "tofu".to_owned())]);
    let journal_of = |alice: &Client, needle: &str| {
        journal(alice)
            .iter()
            .any(|(k, d)| k == "invalid_device_keys" && d.contains(needle))
    };
    for needle in ["EVILSIG", "EVILUSER", "EVILDEV", laptop.as_str()] {
        assert!(
            journal_of(&alice, needle),
            "no invalid_device_keys for {needle}: {:#?}",
            journal(&alice)
        );
    }

    // Now a device claiming the phone's identity key appears (the server says Bob's devices
    // changed): refused too, the phone keeps its pin.
    steal.store(true, std::sync::atomic::Ordering::SeqCst);
    {
        let bob_id = bob_id.clone();
        proxy.add(
            Rule::rewrite(Route::sync(), move |_, mut answer| {
                answer["device_lists"]["changed"] = json!([bob_id]);
                answer
            })
            .times(1),
        );
    }
    let summary = rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    assert!(summary.security_events >= 1, "{summary:?}");
    assert!(
        journal(&alice)
            .iter()
            .any(|(k, d)| k == "invalid_device_keys"
                && d.contains("EVILCURVE")
                && d.contains(&phone)),
        "{:#?}",
        journal(&alice)
    );
    assert_eq!(pinned(&reader), [(phone.clone(), "tofu".to_owned())]);
    rt.block_on(alice.send_text(&room, "encore pour le téléphone"))
        .unwrap();
    receive(&rt, &mut bob_phone, &room, "encore pour le téléphone");

    // No room key went to a forged key or device, and no one-time key was claimed for one.
    let recipients = room_key_recipients(&proxy);
    assert!(
        recipients
            .iter()
            .any(|(u, d, c)| u == &bob_id && d == &phone && c == &phone_curve),
        "{recipients:#?}"
    );
    for (user, device, curve) in &recipients {
        assert!(
            !forged_curves.contains(curve) && !forged_ids.contains(&device.as_str()),
            "room key sent to a forged device: {user} {device} {curve}"
        );
        assert_ne!(device, &laptop, "room key sent to the ambiguous laptop");
    }
    for (_, device) in claimed_devices(&proxy) {
        assert!(
            !forged_ids.contains(&device.as_str()) && device != laptop,
            "one-time key claimed for {device}"
        );
    }

    // Bob's real phone still works the other way too: Alice reads what it sends, from it.
    rt.block_on(bob_phone.send_text(&room, "reçu, merci"))
        .unwrap();
    let got = receive(&rt, &mut alice, &room, "reçu, merci");
    assert_eq!(got.trust.as_deref(), Some("identity_pinned"));
    assert_eq!(got.sender_device.as_deref(), Some(phone.as_str()));
}

#[test]
fn a_swapped_device_key_is_blocked_journaled_and_never_gets_a_room_key() {
    let rt = rt();
    let mut s = scene(&rt, "swapped", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "avant", "bien reçu");
    let bob_device = s.bob.session().unwrap().device_id;
    let (bob_ed, bob_curve) = s.bob.identity_keys().unwrap();
    let before = reader.snapshot();
    assert!(
        before
            .devices
            .iter()
            .any(|d| d.0 == s.bob_id && d.1 == bob_device && d.2 == bob_ed && d.4 == "tofu")
    );

    // The server now swaps the keys of Bob's phone for the attacker's (self-signed by the
    // attacker), hands out one-time keys the attacker signed, and says Bob's devices changed.
    let attacker = std::sync::Arc::new(std::sync::Mutex::new(Forger::new()));
    let attacker_curve = attacker.lock().unwrap().curve25519();
    {
        let (bob_id, bob_device, attacker) =
            (s.bob_id.clone(), bob_device.clone(), attacker.clone());
        s.proxy
            .add(Rule::rewrite(Route::keys_query(), move |_, mut answer| {
                if answer["device_keys"][&bob_id][&bob_device].is_object() {
                    answer["device_keys"][&bob_id][&bob_device] =
                        attacker.lock().unwrap().keys(&bob_id, &bob_device, None);
                }
                answer
            }));
    }
    {
        let (bob_id, bob_device, attacker) =
            (s.bob_id.clone(), bob_device.clone(), attacker.clone());
        s.proxy
            .add(Rule::rewrite(Route::keys_claim(), move |_, mut answer| {
                let (id, key) = attacker.lock().unwrap().one_time_key(&bob_id, &bob_device);
                answer["one_time_keys"][&bob_id][&bob_device] = json!({ id: key });
                answer
            }));
    }
    {
        let bob_id = s.bob_id.clone();
        s.proxy.add(
            Rule::rewrite(Route::sync(), move |_, mut answer| {
                answer["device_lists"]["changed"] = json!([bob_id]);
                answer
            })
            .times(1),
        );
    }
    let summary = rt
        .block_on(s.alice.sync_once(Duration::from_millis(200)))
        .unwrap();
    assert!(summary.security_events >= 1, "{summary:?}");
    let after = reader.snapshot();
    let device = after
        .devices
        .iter()
        .find(|d| d.0 == s.bob_id && d.1 == bob_device)
        .unwrap();
    // The pinned key is kept; the device is blocked.
    assert_eq!(
        (device.2.as_str(), device.3.as_str()),
        (bob_ed.as_str(), bob_curve.as_str())
    );
    assert_eq!(device.4, "blocked");
    assert!(
        journal(&s.alice)
            .iter()
            .any(|(k, d)| k == "device_key_changed" && d.contains(&bob_device)),
        "{:#?}",
        journal(&s.alice)
    );
    // Nothing stored was lost.
    assert_eq!(after.rooms, before.rooms);
    assert_eq!(after.inbound, before.inbound);
    assert!(before.timeline.iter().all(|e| after.timeline.contains(e)));

    // The next message uses a new session; the blocked device is told it is withheld and gets
    // no key, under either key.
    let sent_before = room_key_recipients(&s.proxy).len();
    let claims_before = claimed_devices(&s.proxy).len();
    let old_session = s.alice.outbound_session_id(&s.room).unwrap();
    let event = rt
        .block_on(s.alice.send_text(&s.room, "après l'échange de clés"))
        .unwrap();
    assert_ne!(s.alice.outbound_session_id(&s.room).unwrap(), old_session);
    let sent_after = room_key_recipients(&s.proxy);
    for (user, device, curve) in &sent_after[sent_before..] {
        assert!(
            !(user == &s.bob_id && device == &bob_device),
            "room key sent to the blocked device ({curve})"
        );
        assert_ne!(curve, &attacker_curve);
    }
    assert!(
        !claimed_devices(&s.proxy)[claims_before..]
            .iter()
            .any(|(_, d)| d == &bob_device),
        "a one-time key was claimed for the blocked device"
    );
    let withheld = s
        .proxy
        .exchanges_on(&Route::new("PUT", "/sendToDevice/m.room_key.withheld/"));
    assert!(
        withheld.iter().any(|e| {
            e.request.json().unwrap()["messages"][&s.bob_id][&bob_device]["code"] == "m.blacklisted"
        }),
        "no m.room_key.withheld for the blocked device"
    );
    let raw = raw_event(&access_token(&s.bob), &s.room, &event);
    rt.block_on(s.bob.sync_once(Duration::from_millis(200)))
        .unwrap();
    let e = s.bob.try_decrypt(&s.room, &raw).unwrap_err();
    assert!(
        matches!(e, Error::Crypto(CryptoError::UnknownSession { .. })),
        "{e:?}"
    );

    // The server turns honest again: the block is sticky, the genuine key does not undo it.
    s.proxy.clear();
    let devices = rt.block_on(s.alice.devices(&s.bob_id)).unwrap();
    let d = devices.iter().find(|d| d.device_id == bob_device).unwrap();
    assert_eq!(d.state, DeviceState::Blocked);
    assert_eq!(d.ed25519, bob_ed);
}

/// A cross-signing identity as a server would list it: the master key object and the
/// self-signing key object signed by it.
fn identity_objects(
    user: &str,
    master: &vodozemac::Ed25519SecretKey,
    self_signing: &vodozemac::Ed25519SecretKey,
) -> (Value, Value) {
    let object = |usage: &str, key: &vodozemac::Ed25519SecretKey| {
        let public = key.public_key().to_base64();
        json!({
            "user_id": user,
            "usage": [usage],
            "keys": { format!("ed25519:{public}"): public },
        })
    };
    let master_public = master.public_key().to_base64();
    let mut ssk = object("self_signing", self_signing);
    sign_json(&mut ssk, user, &format!("ed25519:{master_public}"), |m| {
        master.sign(m)
    })
    .unwrap();
    (object("master", master), ssk)
}

/// Devices Alice told the room key is withheld, with the code, from the proxy's log.
fn withheld_recipients(proxy: &HostileProxy) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in proxy.exchanges_on(&Route::new("PUT", "/sendToDevice/m.room_key.withheld/")) {
        let body = e.request.json().unwrap();
        for (user, devices) in body["messages"].as_object().unwrap() {
            for (device, content) in devices.as_object().unwrap() {
                let code = content["code"].as_str().unwrap_or_default().to_owned();
                out.push((user.clone(), device.clone(), code));
            }
        }
    }
    out
}

/// Issue 16: the server adds a validly self-signed device to a cross-signed contact's list (a
/// ghost device): it gets no room key — told `m.unverified`, journaled — and the contact's
/// real device still decrypts. Then the server replaces the contact's whole identity (a new
/// master key signing its own self-signing key): the change is journaled and no device of
/// the contact gets the next room key until they are verified again.
#[test]
fn a_ghost_device_or_a_replaced_identity_gets_no_room_key_and_is_journaled() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = rt();
    let synapse = Synapse::shared();
    let proxy = HostileProxy::start(synapse);
    let (_a, mut alice) = victim(&rt, &proxy, "ghost", None);
    let bob_localpart = synapse.unique_user("ghost-bob");
    let bob_id = synapse.register(&bob_localpart, PASSWORD, false).user_id;
    let (_b, mut bob) = logged_in(&rt, "ghost", &bob_localpart, "bob-phone");
    let bob_device = bob.session().unwrap().device_id;
    assert!(bob.cross_signing_status().unwrap().device_signed);

    let replace = Arc::new(AtomicBool::new(false));
    {
        let (bob_id, replace) = (bob_id.clone(), replace.clone());
        let ghost = Forger::new();
        let (fake_master, fake_ssk) = (
            vodozemac::Ed25519SecretKey::new(),
            vodozemac::Ed25519SecretKey::new(),
        );
        proxy.add(Rule::intercept(Route::keys_query(), move |_, upstream| {
            let mut answer = upstream.json().unwrap();
            let Some(devices) = answer["device_keys"][&bob_id].as_object_mut() else {
                return upstream.reply();
            };
            devices.insert("GHOST".into(), ghost.keys(&bob_id, "GHOST", None));
            if replace.load(Ordering::SeqCst) {
                let (master, ssk) = identity_objects(&bob_id, &fake_master, &fake_ssk);
                answer["master_keys"][&bob_id] = master;
                answer["self_signing_keys"][&bob_id] = ssk;
            }
            Reply::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: answer.to_string().into_bytes(),
            }
        }));
    }
    let room = rt
        .block_on(alice.create_room(Some("Fantômes"), std::slice::from_ref(&bob_id), false))
        .unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();

    rt.block_on(alice.send_text(&room, "pour le vrai téléphone de Bob"))
        .unwrap();
    let recipients = room_key_recipients(&proxy);
    assert!(
        recipients
            .iter()
            .any(|(u, d, _)| u == &bob_id && d == &bob_device),
        "{recipients:?}"
    );
    assert!(
        !recipients.iter().any(|(_, d, _)| d == "GHOST"),
        "room key sent to the ghost device"
    );
    assert!(!claimed_devices(&proxy).iter().any(|(_, d)| d == "GHOST"));
    assert!(
        withheld_recipients(&proxy).contains(&(
            bob_id.clone(),
            "GHOST".to_owned(),
            "m.unverified".to_owned()
        )),
        "{:?}",
        withheld_recipients(&proxy)
    );
    let kinds = journal_kinds(&alice);
    for kind in ["unsigned_device", "room_key_withheld"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }
    let got = receive(&rt, &mut bob, &room, "pour le vrai téléphone de Bob");
    assert_eq!(got.state, "decrypted");

    // The server replaces Bob's identity.
    replace.store(true, Ordering::SeqCst);
    let devices = rt.block_on(alice.devices(&bob_id)).unwrap();
    let bob_record = devices.iter().find(|d| d.device_id == bob_device).unwrap();
    assert_eq!(alice.device_trust(bob_record).unwrap(), "identity_changed");
    assert!(
        journal_kinds(&alice)
            .iter()
            .any(|k| k == "identity_changed")
    );
    let sent_before = room_key_recipients(&proxy).len();
    let event = rt
        .block_on(alice.send_text(&room, "après le changement d'identité"))
        .unwrap();
    assert!(
        !room_key_recipients(&proxy)[sent_before..]
            .iter()
            .any(|(u, _, _)| u == &bob_id),
        "a room key went to Bob after his identity changed"
    );
    assert!(
        withheld_recipients(&proxy).contains(&(
            bob_id.clone(),
            bob_device.clone(),
            "m.unverified".to_owned()
        )),
        "Bob's device is told the key is withheld"
    );
    let raw = raw_event(&access_token(&bob), &room, &event);
    rt.block_on(bob.sync_once(Duration::from_millis(200)))
        .unwrap();
    let e = bob.try_decrypt(&room, &raw).unwrap_err();
    assert!(
        matches!(e, Error::Crypto(CryptoError::UnknownSession { .. })),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Contradictions

#[test]
fn contradictory_sync_data_leaves_a_consistent_store_without_panic() {
    let rt = rt();
    let mut s = scene(&rt, "contradict", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "premier", "second");
    let before = reader.snapshot();
    let carol = format!("@carol-{}:{SERVER_NAME}", std::process::id());

    // One answer that says everything and its opposite.
    {
        let (room, bob_id, carol) = (s.room.clone(), s.bob_id.clone(), carol.clone());
        s.proxy.add(
            Rule::rewrite(Route::sync(), move |_, mut answer| {
                let member = |membership: &str, n: u32| {
                    json!({"type": "m.room.member", "state_key": carol, "sender": carol,
                           "event_id": format!("$contradiction-{membership}-{n}"),
                           "origin_server_ts": 1, "content": {"membership": membership}})
                };
                let joined =
                    json!({"timeline": {"events": [member("join", 1), member("leave", 2)]}});
                // The room is both joined and left; Carol joins and leaves in one breath.
                answer["rooms"]["join"][&room] = joined.clone();
                answer["rooms"]["leave"][&room] = joined;
                // Bob's devices both changed and gone.
                answer["device_lists"] = json!({"changed": [bob_id], "left": [bob_id]});
                // An absurd one-time key count.
                answer["device_one_time_keys_count"] = json!({"signed_curve25519": u64::MAX});
                answer
            })
            .times(1),
        );
    }
    let summary = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    let after = reader.snapshot();
    // Nothing stored was lost; the token is the answer's.
    assert_eq!(
        after.next_batch.as_deref(),
        Some(summary.next_batch.as_str())
    );
    assert!(before.timeline.iter().all(|e| after.timeline.contains(e)));
    assert_eq!(after.inbound, before.inbound);
    assert_eq!(after.devices, before.devices);
    // One row per room and per member, with the last word: left (the safe reading: no more
    // messages go out there, the outbound session is gone).
    let rooms: Vec<_> = after.rooms.iter().filter(|r| r.0 == s.room).collect();
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(rooms[0].1, "leave");
    assert_eq!(rooms[0].3.as_deref(), Some("m.megolm.v1.aes-sha2"));
    let carols: Vec<_> = after.members.iter().filter(|m| m.1 == carol).collect();
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0].2, "leave");
    assert_eq!(s.alice.outbound_session_id(&s.room).unwrap(), None);

    // A count that is not a number of keys is ignored (as if the server had not said): the
    // rest of the answer is applied, and the sync loop is not wedged by one hostile field.
    for count in [json!(-5), json!(1e300), json!("many")] {
        s.proxy.add(
            Rule::rewrite(Route::sync(), move |_, mut answer| {
                answer["device_one_time_keys_count"] = json!({ "signed_curve25519": count });
                answer
            })
            .times(1),
        );
        let before = reader.snapshot();
        let summary = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
        let after = reader.snapshot();
        assert_eq!(
            after.next_batch.as_deref(),
            Some(summary.next_batch.as_str())
        );
        assert_eq!(after.inbound, before.inbound);
        assert_eq!(after.devices, before.devices);
        assert!(before.timeline.iter().all(|e| after.timeline.contains(e)));
    }

    // The server is honest again: the room comes back with Bob's next message, and the
    // conversation goes on (on a new session).
    s.proxy.clear();
    rt.block_on(s.bob.send_text(&s.room, "toujours là ?"))
        .unwrap();
    receive(&rt, &mut s.alice, &s.room, "toujours là ?");
    assert_eq!(
        s.alice.store().room(&s.room).unwrap().unwrap().membership,
        "join"
    );
    rt.block_on(s.alice.send_text(&s.room, "oui")).unwrap();
    receive(&rt, &mut s.bob, &s.room, "oui");
}

// ---------------------------------------------------------------------------------------------
// Replays

#[test]
fn a_replayed_sync_is_refused_and_replayed_keys_and_events_change_nothing() {
    let rt = rt();
    let mut s = scene(&rt, "replay", None);
    let reader = StoreReader::open(&s.a);
    // Bob's first message brings Alice a room key (to-device) and the event.
    rt.block_on(s.bob.send_text(&s.room, "un")).unwrap();
    receive(&rt, &mut s.alice, &s.room, "un");
    rt.block_on(s.bob.send_text(&s.room, "deux")).unwrap();
    receive(&rt, &mut s.alice, &s.room, "deux");
    rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    let keyed = s
        .proxy
        .exchanges_on(&Route::sync())
        .into_iter()
        .filter_map(|e| e.upstream.and_then(|u| u.json()))
        .find(|body| {
            body["to_device"]["events"]
                .as_array()
                .is_some_and(|events| !events.is_empty())
                && body["rooms"]["join"][&s.room].is_object()
        })
        .expect("a recorded sync with a room key");
    assert!(keyed["next_batch"].is_string());
    let before = reader.snapshot();
    let journal_before = journal_kinds(&s.alice).len();

    // 1. The whole old answer, old token included, replayed.
    s.proxy.add(
        Rule::replace(Route::sync(), {
            let keyed = keyed.clone();
            move |_| Reply::ok(keyed.clone())
        })
        .times(1),
    );
    let result = rt.block_on(s.alice.sync_once(Duration::ZERO));
    let e = result.expect_err("a replayed sync answer must be refused");
    assert!(
        matches!(
            e,
            Error::Api(ApiError::MalformedResponse {
                endpoint: "/sync",
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(reader.snapshot(), before, "the replay changed the store");
    assert!(
        journal_kinds(&s.alice)[journal_before..]
            .iter()
            .any(|k| k == "sync_replay_refused"),
        "{:#?}",
        journal(&s.alice)
    );

    // 2. The old to-device messages and timeline events spliced into a fresh, genuine answer.
    {
        let (room, keyed) = (s.room.clone(), keyed.clone());
        s.proxy.add(
            Rule::rewrite(Route::sync(), move |_, mut answer| {
                answer["to_device"]["events"] = keyed["to_device"]["events"].clone();
                answer["rooms"]["join"][&room]["timeline"] =
                    keyed["rooms"]["join"][&room]["timeline"].clone();
                answer
            })
            .times(1),
        );
    }
    let summary = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    assert_eq!(summary.room_keys, 0, "{summary:?}");
    // The replayed Olm message was looked at, and refused as the replay it is: a pre-key
    // message of a session Alice already holds (issue 15 item 3; before, it was only refused
    // because its one-time key was used — a fallback key would have let it through).
    assert!(summary.to_device_events >= 1, "{summary:?}");
    assert!(
        journal_kinds(&s.alice)
            .iter()
            .any(|k| k == "to_device_olm_replay"),
        "{:#?}",
        journal(&s.alice)
    );
    assert!(summary.messages.is_empty(), "{summary:?}");
    let after = reader.snapshot();
    assert_eq!(
        after.timeline, before.timeline,
        "duplicate or changed messages"
    );
    assert_eq!(
        after.inbound, before.inbound,
        "a replayed room key replaced a session"
    );
    assert_eq!(after.devices, before.devices);
    assert_eq!(after.rooms, before.rooms);
    // The genuine token of that answer (not an older one).
    assert_eq!(
        after.next_batch.as_deref(),
        Some(summary.next_batch.as_str())
    );

    // The conversation goes on.
    rt.block_on(s.bob.send_text(&s.room, "trois")).unwrap();
    receive(&rt, &mut s.alice, &s.room, "trois");
    let bodies: Vec<_> = s
        .alice
        .messages(&s.room, 100)
        .unwrap()
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    for body in ["un", "deux", "trois"] {
        assert_eq!(
            bodies.iter().filter(|b| *b == body).count(),
            1,
            "{bodies:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Answers that never end

fn short_limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(3),
        ..Limits::default()
    }
}

/// After a failed sync: the store is as it was, and an honest server brings everything back.
fn recovers(rt: &tokio::runtime::Runtime, s: &mut Scene, reader: &StoreReader, before: &Snapshot) {
    assert_eq!(
        &reader.snapshot(),
        before,
        "the failed sync changed the store"
    );
    s.proxy.clear();
    rt.block_on(s.bob.send_text(&s.room, "la suite")).unwrap();
    receive(rt, &mut s.alice, &s.room, "la suite");
}

#[test]
fn a_sync_that_trickles_forever_times_out_within_the_request_limit() {
    let rt = rt();
    let mut s = scene(&rt, "trickle", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "bonjour", "salut");
    let before = reader.snapshot();
    s.proxy
        .add(Rule::replace(Route::sync(), |_| Reply::Trickle {
            status: 200,
            prefix: br#"{"next_batch":"never","rooms":{"join":{}},"padding":["#.to_vec(),
            chunk: b"0,".to_vec(),
            interval: Duration::from_millis(500),
        }));
    let started = Instant::now();
    let e = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(e, Error::Api(ApiError::Transport(TransportError::Timeout))),
        "{e:?}"
    );
    // The long-poll's own limit: its timeout (zero here) plus 30 s.
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");
    recovers(&rt, &mut s, &reader, &before);
}

#[test]
fn a_sync_that_never_answers_times_out_on_the_read_limit() {
    let rt = rt();
    let mut s = scene(&rt, "silent", Some(short_limits()));
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "bonjour", "salut");
    let before = reader.snapshot();
    s.proxy.add(Rule::replace(Route::sync(), |_| Reply::Silent));
    let started = Instant::now();
    let e = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(e, Error::Api(ApiError::Transport(TransportError::Timeout))),
        "{e:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    recovers(&rt, &mut s, &reader, &before);
}

#[test]
fn a_sync_body_that_streams_forever_hits_the_body_cap() {
    let rt = rt();
    let mut s = scene(&rt, "endless", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "bonjour", "salut");
    let before = reader.snapshot();
    s.proxy
        .add(Rule::replace(Route::sync(), |_| Reply::Trickle {
            status: 200,
            prefix: br#"{"next_batch":"never","padding":""#.to_vec(),
            chunk: vec![b'A'; 64 * 1024],
            interval: Duration::ZERO,
        }));
    let started = Instant::now();
    let e = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Api(ApiError::Transport(TransportError::BodyTooLarge { limit }))
                if limit == 32 * 1024 * 1024
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    recovers(&rt, &mut s, &reader, &before);
}

// ---------------------------------------------------------------------------------------------
// Oversized and absurdly nested JSON

#[test]
fn a_sync_with_a_ten_megabyte_token_is_a_typed_error() {
    let rt = rt();
    let mut s = scene(&rt, "huge", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "bonjour", "salut");
    let before = reader.snapshot();
    let huge = "A".repeat(10 * 1024 * 1024);
    // The token the client would send back on every later request.
    s.proxy.add(
        Rule::rewrite(Route::sync(), move |_, mut answer| {
            answer["next_batch"] = json!(huge);
            answer
        })
        .times(1),
    );
    match rt.block_on(s.alice.sync_once(Duration::ZERO)) {
        Err(Error::Api(ApiError::MalformedResponse {
            endpoint: "/sync", ..
        })) => {}
        Err(e) => panic!("{e:?}"),
        Ok(summary) => panic!("accepted a {}-byte next_batch", summary.next_batch.len()),
    }
    recovers(&rt, &mut s, &reader, &before);
}

#[test]
fn ten_megabyte_events_in_a_sync_are_skipped_and_never_stored() {
    let rt = rt();
    let mut s = scene(&rt, "hugeevent", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "bonjour", "salut");
    let before = reader.snapshot();
    let huge = "A".repeat(10 * 1024 * 1024);
    let room = s.room.clone();
    s.proxy.add(
        Rule::rewrite(Route::sync(), move |_, mut answer| {
            answer["rooms"]["join"][&room]["timeline"]["events"] = json!([
                {"type": "m.room.name", "state_key": "", "sender": "@mallory:secure.tchap.test",
                 "event_id": "$huge-name", "content": {"name": huge}},
                {"type": "m.room.encrypted", "sender": "@mallory:secure.tchap.test",
                 "event_id": "$huge-message", "origin_server_ts": 1,
                 "content": {"algorithm": "m.megolm.v1.aes-sha2", "session_id": "unknown",
                             "ciphertext": huge}},
            ]);
            answer
        })
        .times(1),
    );
    let summary = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    assert_eq!(summary.malformed_events, 2, "{summary:?}");
    let after = reader.snapshot();
    assert_eq!(after.rooms, before.rooms, "the room name changed");
    assert_eq!(after.timeline, before.timeline, "a huge event was stored");
    assert_eq!(after.devices, before.devices);
    assert_eq!(after.inbound, before.inbound);
    assert_eq!(
        after.next_batch.as_deref(),
        Some(summary.next_batch.as_str())
    );
    s.proxy.clear();
    rt.block_on(s.bob.send_text(&s.room, "la suite")).unwrap();
    receive(&rt, &mut s.alice, &s.room, "la suite");
}

#[test]
fn a_sync_with_deeply_nested_json_is_a_typed_error_not_a_stack_overflow() {
    let rt = rt();
    let mut s = scene(&rt, "nested", None);
    let reader = StoreReader::open(&s.a);
    s.exchange(&rt, "bonjour", "salut");
    let before = reader.snapshot();
    let depth = 100_000;
    let room = s.room.clone();
    s.proxy.add(
        Rule::replace(Route::sync(), move |_| {
            let mut body = format!(
                r#"{{"next_batch":"deep","rooms":{{"join":{{"{room}":{{"timeline":{{"events":[{{"type":"m.room.message","sender":"@x:y","event_id":"$deep","content":"#
            )
            .into_bytes();
            body.extend(std::iter::repeat_n(b'[', depth));
            body.extend(std::iter::repeat_n(b']', depth));
            body.extend_from_slice(b"}]}}}}}");
            Reply::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            }
        })
        .times(1),
    );
    let e = rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Api(ApiError::MalformedResponse {
                endpoint: "/sync",
                ..
            })
        ),
        "{e:?}"
    );
    recovers(&rt, &mut s, &reader, &before);
}

// ---------------------------------------------------------------------------------------------
// Display names (issue 19 item 3)

#[test]
fn hostile_display_names_from_the_server_are_neutralised_dropped_or_flagged() {
    use tchap_secure_core::display_name::{MAX_NAME_CHARS, NameIssue};
    let rt = rt();
    let mut s = scene(&rt, "hs-names", None);
    let who = |local: &str| format!("@{local}:{SERVER_NAME}");

    // The directory answers with whatever the server likes.
    let hostile_results = json!({
        "limited": false,
        "results": [
            {"user_id": "not a user id", "display_name": "Usurpateur [Élysée]"},
            {"user_id": format!("@nul\u{0}:{SERVER_NAME}"), "display_name": "Nul"},
            {"user_id": who("objet"), "display_name": {"nested": "Ministre [Élysée]"}},
            {"user_id": who("bidi"), "display_name": "Jean\u{202E} Martin [Armées] [Intérieur]"},
            {"user_id": who("long"), "display_name": "A".repeat(100_000)},
            {"user_id": who("cyr"), "display_name": "Paul Durand [Ministère des \u{0410}rmées]"},
            {"user_id": who("extra1"), "display_name": "Un"},
            {"user_id": who("extra2"), "display_name": "Deux"},
            {"user_id": who("extra3"), "display_name": "Trois"},
            {"user_id": who("extra4"), "display_name": "Quatre"},
        ],
    });
    s.proxy.add(Rule::replace(
        Route::new("POST", "/user_directory/search"),
        move |_| Reply::ok(hostile_results.clone()),
    ));
    let found = rt.block_on(s.alice.search_directory("martin", 6)).unwrap();
    let ids: Vec<&str> = found.users.iter().map(|u| u.user_id.as_str()).collect();
    // Not user ids: dropped; then at most the limit asked.
    assert_eq!(
        ids,
        [
            who("objet"),
            who("bidi"),
            who("long"),
            who("cyr"),
            who("extra1"),
            who("extra2")
        ]
    );
    let by = |local: &str| {
        found
            .users
            .iter()
            .find(|u| u.user_id == who(local))
            .unwrap()
    };
    // A display name that is not a string is none: the localpart is shown.
    assert_eq!(by("objet").display_name, None);
    assert_eq!(by("objet").name.name, "objet");
    // Bidi removed, two bracket groups: no organisation at all.
    let bidi = &by("bidi").name;
    assert!(!bidi.name.contains('\u{202E}'), "{bidi:?}");
    assert_eq!(bidi.organisation, None);
    assert!(bidi.issues.contains(&NameIssue::BidiControl));
    assert!(bidi.issues.contains(&NameIssue::NestedBrackets));
    // Cut to the limit.
    let long = &by("long").name;
    assert!(
        long.name.chars().count() <= MAX_NAME_CHARS,
        "{}",
        long.name.len()
    );
    assert!(long.issues.contains(&NameIssue::TooLong));
    // Latin and Cyrillic in the organisation: flagged.
    let cyr = &by("cyr").name;
    assert!(cyr.issues.contains(&NameIssue::MixedScripts), "{cyr:?}");
    assert!(cyr.is_suspicious());
    s.proxy.clear();

    // The sync carries a forged member event for Bob with a hostile name: shown neutralised,
    // and journaled as a change of name.
    {
        let (room, bob_id) = (s.room.clone(), s.bob_id.clone());
        s.proxy.add(
            Rule::rewrite(Route::sync(), move |_, mut answer| {
                let member = json!({"type": "m.room.member", "state_key": bob_id,
                    "sender": bob_id, "event_id": "$forged-name", "origin_server_ts": 1,
                    "content": {"membership": "join",
                                "displayname": "Bob\u{202E}\u{200B} [Premier ministre]\n"}});
                answer["rooms"]["join"][&room]["timeline"]["events"] = json!([member]);
                answer
            })
            .times(1),
        );
    }
    rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    let bob = s
        .alice
        .members(&s.room)
        .unwrap()
        .into_iter()
        .find(|m| m.user_id == s.bob_id)
        .unwrap();
    assert_eq!(bob.name.name, "Bob");
    assert_eq!(bob.name.organisation.as_deref(), Some("Premier ministre"));
    assert!(bob.name.issues.contains(&NameIssue::BidiControl), "{bob:?}");
    assert!(bob.name.issues.contains(&NameIssue::Invisible), "{bob:?}");
    let changes: Vec<String> = journal(&s.alice)
        .into_iter()
        .filter(|(k, _)| k == "display_name_changed")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        !changes[0].contains('\u{202E}') && !changes[0].contains('\n'),
        "{changes:?}"
    );
    // The conversation goes on.
    s.proxy.clear();
    s.exchange(&rt, "toujours là", "oui");
}
