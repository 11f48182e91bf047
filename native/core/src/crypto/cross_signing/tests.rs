//! Cross-signing: the sealed storage of our keys, the objects we publish, and the trust rules
//! applied to `/keys/query` answers (pinning, change, no downgrade, forged signatures, unsigned
//! devices).

use super::*;
use crate::crypto::account::OlmAccount;
use crate::crypto::devices::apply_keys_query;
use crate::store::Store;
use crate::store::crypto::{self as cdb, DeviceState};
use crate::store::tests::test_vault;
use tchap_secure_hsm::Vault;
use tchap_secure_hsm::soft::SoftVault;

const BOB: &str = "@bob:srv";
const ME: &str = "@me:srv";

struct Fixture {
    _dir: tempfile::TempDir,
    _backend: SoftVault,
    vault: Vault,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (backend, vault) = test_vault(dir.path());
    let store = Store::open(dir.path(), &vault.database_key()).unwrap();
    Fixture {
        _dir: dir,
        _backend: backend,
        vault,
        store,
    }
}

/// A user's published cross-signing keys and devices, as a `/keys/query` answer shows them.
struct Published {
    user_id: String,
    keys: OwnKeys,
    upload: Value,
    devices: Vec<(OlmAccount, bool)>,
}

impl Published {
    fn new(user_id: &str) -> Self {
        let keys = OwnKeys::generate();
        let upload = keys.upload_body(user_id, |_| Ok(())).unwrap();
        Self {
            user_id: user_id.to_owned(),
            keys,
            upload,
            devices: Vec::new(),
        }
    }

    /// Adds a device, signed by the self-signing key or not.
    fn device(mut self, device_id: &str, signed: bool) -> Self {
        self.devices
            .push((OlmAccount::new(&self.user_id, device_id), signed));
        self
    }

    fn device_keys(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (account, signed) in &self.devices {
            let mut keys = account.device_keys().unwrap();
            if *signed {
                let body = self
                    .keys
                    .sign_device_body(&self.user_id, account.device_id(), &keys)
                    .unwrap();
                let ours = &body[&self.user_id][account.device_id()]["signatures"][&self.user_id];
                for (id, sig) in ours.as_object().unwrap() {
                    keys["signatures"][&self.user_id][id] = sig.clone();
                }
            }
            map.insert(account.device_id().to_owned(), keys);
        }
        Value::Object(map)
    }

    fn answer(&self) -> Value {
        json!({
            "device_keys": { &self.user_id: self.device_keys() },
            "master_keys": { &self.user_id: self.upload["master_key"] },
            "self_signing_keys": { &self.user_id: self.upload["self_signing_key"] },
        })
    }
}

/// Applies a `/keys/query` answer for Bob; the count it returns is checked against the
/// journal (identity events included).
fn apply(store: &Store, answer: &Value) -> usize {
    let before = kinds(store).len();
    let events = apply_keys_query(store.conn(), answer, &[BOB.to_owned()], ME, "MYDEV")
        .unwrap()
        .security_events;
    assert_eq!(
        events,
        kinds(store).len() - before,
        "every journal entry is counted"
    );
    events
}

fn kinds(store: &Store) -> Vec<String> {
    store
        .security_events()
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn device(store: &Store, id: &str) -> cdb::DeviceRecord {
    cdb::devices_of(store.conn(), BOB)
        .unwrap()
        .into_iter()
        .find(|d| d.device_id == id)
        .unwrap()
}

fn identity(store: &Store) -> IdentityRecord {
    db::identity_of(store.conn(), BOB).unwrap().unwrap()
}

#[test]
fn sealed_keys_open_only_with_the_same_pickle_key_and_user() {
    let f = fixture();
    let keys = OwnKeys::generate();
    let sealed = keys.seal(&f.vault.pickle_key(), ME).unwrap();
    let opened = OwnKeys::open(&sealed, &f.vault.pickle_key(), ME).unwrap();
    assert_eq!(opened.master(), keys.master());
    assert_eq!(opened.self_signing(), keys.self_signing());
    assert_eq!(opened.user_signing(), keys.user_signing());
    // Fresh nonce each time.
    assert_ne!(keys.seal(&f.vault.pickle_key(), ME).unwrap(), sealed);
    // Another user's binding, another pickle key, a flipped byte: nothing opens.
    assert!(OwnKeys::open(&sealed, &f.vault.pickle_key(), BOB).is_err());
    let other = fixture();
    assert!(OwnKeys::open(&sealed, &other.vault.pickle_key(), ME).is_err());
    let mut bytes = STANDARD_NO_PAD.decode(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(OwnKeys::open(&STANDARD_NO_PAD.encode(&bytes), &f.vault.pickle_key(), ME).is_err());
    assert!(OwnKeys::open(&sealed[..sealed.len() - 4], &f.vault.pickle_key(), ME).is_err());
    // No private key in the sealed text, nor in Debug.
    let seeds: Vec<String> = [&keys.master, &keys.self_signing, &keys.user_signing]
        .iter()
        .map(|k| STANDARD_NO_PAD.encode(*k.to_bytes()))
        .collect();
    let debug = format!("{keys:?}");
    for seed in &seeds {
        assert!(!sealed.contains(seed.as_str()));
        assert!(!debug.contains(seed.as_str()));
    }
    assert!(debug.contains(&keys.master()), "{debug}");
}

#[test]
fn published_keys_are_signed_as_the_spec_requires() {
    let me = OlmAccount::new(ME, "MYDEV");
    let keys = OwnKeys::generate();
    let body = keys
        .upload_body(ME, |master| me.sign_object(master))
        .unwrap();
    let master = keys.master();
    // Each object passes the same checks we apply to anyone's.
    let answer = json!({
        "master_keys": { ME: body["master_key"] },
        "self_signing_keys": { ME: body["self_signing_key"] },
        "user_signing_keys": { ME: body["user_signing_key"] },
    });
    let (m, public, _) = cross_signing_key(&answer, "master_keys", ME, "master")
        .unwrap()
        .unwrap();
    assert_eq!(public, master);
    verify_json(m, ME, "ed25519:MYDEV", &me.ed25519()).unwrap();
    for (field, usage, public) in [
        ("self_signing_keys", "self_signing", keys.self_signing()),
        ("user_signing_keys", "user_signing", keys.user_signing()),
    ] {
        let (object, found, _) = cross_signing_key(&answer, field, ME, usage)
            .unwrap()
            .unwrap();
        assert_eq!(found, public);
        assert!(
            signed_by(object, ME, &master),
            "{field} signed by the master key"
        );
        assert!(!signed_by(object, ME, &public), "not self-signed");
    }
    // Our device, signed by the self-signing key.
    let device = me.device_keys().unwrap();
    let signed = keys.sign_device_body(ME, "MYDEV", &device).unwrap();
    assert!(signed_by(&signed[ME]["MYDEV"], ME, &keys.self_signing()));
    assert!(!signed_by(&signed[ME]["MYDEV"], ME, &keys.user_signing()));
    // Another user's master key, signed by the user-signing key.
    let bob = Published::new(BOB);
    let signed = keys
        .sign_master_body(ME, BOB, &bob.keys.master(), &bob.upload["master_key"])
        .unwrap();
    assert!(signed_by(
        &signed[BOB][bob.keys.master()],
        ME,
        &keys.user_signing()
    ));
}

#[test]
fn cross_signing_keys_of_the_wrong_shape_are_refused() {
    let bob = Published::new(BOB);
    let good = bob.upload["master_key"].clone();
    let check = |object: Value| {
        cross_signing_key(
            &json!({ "master_keys": { BOB: object } }),
            "master_keys",
            BOB,
            "master",
        )
        .map(|found| found.map(|(_, public, _)| public))
    };
    assert_eq!(check(good.clone()).unwrap(), Some(bob.keys.master()));
    assert!(
        cross_signing_key(&json!({}), "master_keys", BOB, "master")
            .unwrap()
            .is_none()
    );
    let mut other_user = good.clone();
    other_user["user_id"] = json!(ME);
    let mut wrong_usage = good.clone();
    wrong_usage["usage"] = json!(["self_signing"]);
    let mut no_usage = good.clone();
    no_usage.as_object_mut().unwrap().remove("usage");
    let mut two_keys = good.clone();
    two_keys["keys"]["ed25519:AAAA"] = json!("AAAA");
    let mut no_keys = good.clone();
    no_keys["keys"] = json!({});
    let mut misnamed = good.clone();
    let master = bob.keys.master();
    misnamed["keys"] = json!({ "ed25519:other": master });
    let mut not_a_key = good.clone();
    not_a_key["keys"] = json!({ "ed25519:AAAA": "AAAA" });
    for bad in [
        other_user,
        wrong_usage,
        no_usage,
        two_keys,
        no_keys,
        misnamed,
        not_a_key,
    ] {
        assert!(check(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn a_master_key_is_pinned_at_first_sight_and_vouches_for_the_devices_it_signed() {
    let f = fixture();
    cdb::track_user(f.store.conn(), BOB).unwrap();
    let bob = Published::new(BOB)
        .device("PHONE", true)
        .device("GHOST", false);
    let events = apply(&f.store, &bob.answer());
    let pinned = identity(&f.store);
    assert_eq!(pinned.master, bob.keys.master());
    assert_eq!(
        pinned.self_signing.as_deref(),
        Some(bob.keys.self_signing().as_str())
    );
    assert_eq!(pinned.state, IdentityState::Pinned);
    assert!(device(&f.store, "PHONE").cross_signed);
    assert!(!device(&f.store, "GHOST").cross_signed);
    // The unsigned device is journaled (once), not the first sight of the user.
    assert_eq!(kinds(&f.store), ["unsigned_device"]);
    assert_eq!(events, 1);
    assert_eq!(apply(&f.store, &bob.answer()), 0, "no repeat");
    assert_eq!(
        device_trust(Some(&pinned), &device(&f.store, "PHONE")),
        "identity_pinned"
    );
    assert_eq!(
        device_trust(Some(&pinned), &device(&f.store, "GHOST")),
        "unsigned"
    );
}

#[test]
fn a_forged_cross_signing_signature_is_refused() {
    let f = fixture();
    cdb::track_user(f.store.conn(), BOB).unwrap();
    let bob = Published::new(BOB).device("PHONE", true);
    // A self-signing key the master key never signed (the server's own, "signed" with a key
    // of its own under the master key's id).
    let forger = OwnKeys::generate();
    let mut forged_ssk = OwnKeys::key_object(BOB, "self_signing", &forger.self_signing());
    sign_json(&mut forged_ssk, BOB, &key_id(&bob.keys.master()), |b| {
        forger.master.sign(b)
    })
    .unwrap();
    let mut answer = bob.answer();
    answer["self_signing_keys"][BOB] = forged_ssk;
    // A device "signed" by the forged self-signing key.
    let ghost = OlmAccount::new(BOB, "GHOST");
    let mut ghost_keys = ghost.device_keys().unwrap();
    sign_json(&mut ghost_keys, BOB, &key_id(&forger.self_signing()), |b| {
        forger.self_signing.sign(b)
    })
    .unwrap();
    answer["device_keys"][BOB]["GHOST"] = ghost_keys;
    apply(&f.store, &answer);
    let pinned = identity(&f.store);
    assert_eq!(pinned.master, bob.keys.master());
    assert_eq!(pinned.self_signing, None, "the forged key is not adopted");
    assert!(!device(&f.store, "GHOST").cross_signed);
    assert!(
        !device(&f.store, "PHONE").cross_signed,
        "no self-signing key vouched for: nothing is cross-signed"
    );
    assert!(kinds(&f.store).contains(&"invalid_cross_signing_keys".to_owned()));
    // The genuine answer afterwards: the real self-signing key is adopted.
    apply(&f.store, &bob.answer());
    assert_eq!(
        identity(&f.store).self_signing.as_deref(),
        Some(bob.keys.self_signing().as_str())
    );
    assert!(device(&f.store, "PHONE").cross_signed);
    // And a forged key after that does not replace it.
    apply(&f.store, &answer);
    assert_eq!(
        identity(&f.store).self_signing.as_deref(),
        Some(bob.keys.self_signing().as_str())
    );
    assert!(device(&f.store, "PHONE").cross_signed);
    assert!(!device(&f.store, "GHOST").cross_signed);
}

#[test]
fn a_changed_master_key_is_journaled_once_and_keeps_the_pin() {
    let f = fixture();
    cdb::track_user(f.store.conn(), BOB).unwrap();
    let bob = Published::new(BOB).device("PHONE", true);
    apply(&f.store, &bob.answer());
    let replaced = Published::new(BOB).device("NEWPHONE", true);
    // The server shows a new identity that signed a new device (and the old device, unsigned
    // by the new identity).
    let mut answer = replaced.answer();
    answer["device_keys"][BOB]["PHONE"] = bob.device_keys()["PHONE"].clone();
    apply(&f.store, &answer);
    let changed = identity(&f.store);
    assert_eq!(changed.state, IdentityState::Changed);
    assert_eq!(changed.master, bob.keys.master(), "the pin stays");
    assert_eq!(
        changed.changed_master.as_deref(),
        Some(replaced.keys.master().as_str())
    );
    assert!(!device(&f.store, "NEWPHONE").cross_signed);
    assert_eq!(
        device_trust(Some(&changed), &device(&f.store, "PHONE")),
        "identity_changed"
    );
    let count = |k: &str| kinds(&f.store).iter().filter(|e| *e == k).count();
    assert_eq!(count("identity_changed"), 1);
    apply(&f.store, &answer);
    assert_eq!(count("identity_changed"), 1, "journaled once per new key");
    // A third key: journaled again.
    let third = Published::new(BOB);
    apply(&f.store, &third.answer());
    assert_eq!(count("identity_changed"), 2);
    // The server shows the pinned identity again: back to pinned.
    apply(&f.store, &bob.answer());
    assert_eq!(identity(&f.store).state, IdentityState::Pinned);
    assert_eq!(identity(&f.store).changed_master, None);
}

#[test]
fn an_acknowledged_change_pins_the_key_shown_and_only_the_devices_it_signed_count() {
    let f = fixture();
    let policy = SharingPolicy::default();
    cdb::track_user(f.store.conn(), BOB).unwrap();
    let bob = Published::new(BOB).device("PHONE", true);
    apply(&f.store, &bob.answer());
    // Nothing to acknowledge while the identity has not changed (nor for a stranger).
    assert_eq!(
        acknowledge_change(f.store.conn(), BOB, &bob.keys.master()).unwrap(),
        Acknowledgement::NotChanged
    );
    assert_eq!(
        acknowledge_change(f.store.conn(), "@nobody:srv", &bob.keys.master()).unwrap(),
        Acknowledgement::NotChanged
    );
    let replaced = Published::new(BOB)
        .device("NEWPHONE", true)
        .device("GHOST", false);
    let mut answer = replaced.answer();
    answer["device_keys"][BOB]["PHONE"] = bob.device_keys()["PHONE"].clone();
    apply(&f.store, &answer);
    assert_eq!(identity(&f.store).state, IdentityState::Changed);
    let before = kinds(&f.store).len();
    // The member was shown another key than the server's: nothing accepted.
    let third = Published::new(BOB);
    assert_eq!(
        acknowledge_change(f.store.conn(), BOB, &third.keys.master()).unwrap(),
        Acknowledgement::ChangedAgain
    );
    assert_eq!(identity(&f.store).state, IdentityState::Changed);
    assert_eq!(kinds(&f.store).len(), before, "a refusal journals nothing");
    // The key shown: pinned in place of the old one, as on first sight.
    let Acknowledgement::Done(record) =
        acknowledge_change(f.store.conn(), BOB, &replaced.keys.master()).unwrap()
    else {
        panic!("not acknowledged")
    };
    assert_eq!(record, identity(&f.store));
    assert_eq!(record.master, replaced.keys.master());
    assert_eq!(record.state, IdentityState::Pinned);
    assert_eq!(record.changed_master, None);
    assert_eq!(
        record.self_signing, None,
        "the old self-signing key no longer counts"
    );
    assert_eq!(
        kinds(&f.store)[before..],
        ["identity_change_acknowledged".to_owned()]
    );
    // Until the devices are queried again, none counts as signed (the old key's word is
    // gone) and none gets a key.
    assert_eq!(
        cdb::dirty_users(f.store.conn()).unwrap(),
        vec![BOB.to_owned()]
    );
    for id in ["PHONE", "NEWPHONE", "GHOST"] {
        let d = device(&f.store, id);
        assert!(!d.cross_signed, "{id}");
        assert!(
            sharing_refusal(Some(&record), &d, &policy).is_some(),
            "{id}"
        );
    }
    // The next query: the devices the new identity signed get keys; the others do not.
    apply(&f.store, &answer);
    let now = identity(&f.store);
    assert_eq!(now.state, IdentityState::Pinned);
    assert_eq!(
        now.self_signing.as_deref(),
        Some(replaced.keys.self_signing().as_str())
    );
    assert_eq!(
        sharing_refusal(Some(&now), &device(&f.store, "NEWPHONE"), &policy),
        None
    );
    assert_eq!(
        device_trust(Some(&now), &device(&f.store, "NEWPHONE")),
        "identity_pinned"
    );
    for id in ["PHONE", "GHOST"] {
        assert!(
            sharing_refusal(Some(&now), &device(&f.store, id), &policy).is_some(),
            "{id}"
        );
    }
    // Acknowledged once: a second acknowledgement has nothing left to do.
    assert_eq!(
        acknowledge_change(f.store.conn(), BOB, &replaced.keys.master()).unwrap(),
        Acknowledgement::NotChanged
    );
}

/// Which user-signing key of ours vouches for other users' identities: ours if this device
/// created (and published) the keys; otherwise only the one the server shows signed by our
/// own master key — and only once this device verified that master key. A user-signing key the
/// server made up, or one shown before our identity is verified here, vouches for nobody.
#[test]
fn our_user_signing_key_is_trusted_only_from_our_keys_or_our_verified_master() {
    let f = fixture();
    let conn = f.store.conn();
    let ours = OwnKeys::generate();
    let upload = ours.upload_body(ME, |_| Ok(())).unwrap();
    let answer = |usk: &Value| json!({ "user_signing_keys": { ME: usk } });
    let served = answer(&upload["user_signing_key"]);
    // A user-signing key for us signed by another master key: the server's invention.
    let forger = OwnKeys::generate();
    let forged = answer(&forger.upload_body(ME, |_| Ok(())).unwrap()["user_signing_key"]);

    // Nothing pinned for us yet: nothing trusted.
    assert_eq!(trusted_own_user_signing(conn, &served, ME).unwrap(), None);
    // Our master key pinned, not verified: still nothing.
    let mut own_identity = IdentityRecord {
        user_id: ME.to_owned(),
        master: ours.master(),
        self_signing: Some(ours.self_signing()),
        state: IdentityState::Pinned,
        changed_master: None,
    };
    db::save_identity(conn, &own_identity).unwrap();
    assert_eq!(trusted_own_user_signing(conn, &served, ME).unwrap(), None);
    // Verified (this device was verified by one holding the keys): the served key counts if
    // our master key signed it, and only then.
    own_identity.state = IdentityState::Verified;
    db::save_identity(conn, &own_identity).unwrap();
    assert_eq!(
        trusted_own_user_signing(conn, &served, ME).unwrap(),
        Some(ours.user_signing())
    );
    assert_eq!(trusted_own_user_signing(conn, &forged, ME).unwrap(), None);
    assert_eq!(
        trusted_own_user_signing(conn, &json!({}), ME).unwrap(),
        None
    );

    // Keys generated here but not known to be published: not ours to vouch with yet (the
    // served key still decides).
    let mine = OwnKeys::generate();
    let row = |state| db::OwnRow {
        sealed: mine.seal(&f.vault.pickle_key(), ME).unwrap(),
        master: mine.master(),
        self_signing: mine.self_signing(),
        user_signing: mine.user_signing(),
        state,
    };
    db::save_own(conn, db::Slot::Current, &row(db::Publication::Pending)).unwrap();
    assert_eq!(
        trusted_own_user_signing(conn, &forged, ME).unwrap(),
        None,
        "pending keys do not count"
    );
    // Published: our own user-signing key, whatever the server shows.
    db::save_own(conn, db::Slot::Current, &row(db::Publication::Published)).unwrap();
    assert_eq!(
        trusted_own_user_signing(conn, &forged, ME).unwrap(),
        Some(mine.user_signing())
    );
}

#[test]
fn an_identity_the_server_stops_showing_is_not_downgraded_to_first_use() {
    let f = fixture();
    cdb::track_user(f.store.conn(), BOB).unwrap();
    let bob = Published::new(BOB).device("PHONE", true);
    apply(&f.store, &bob.answer());
    // Devices only, no cross-signing keys, and a new unsigned device.
    let more = Published {
        user_id: BOB.to_owned(),
        keys: OwnKeys::generate(),
        upload: json!({}),
        devices: Vec::new(),
    }
    .device("GHOST", false);
    let mut devices = bob.device_keys();
    devices["GHOST"] = more.device_keys()["GHOST"].clone();
    apply(&f.store, &json!({ "device_keys": { BOB: devices } }));
    let kept = identity(&f.store);
    assert_eq!(kept.master, bob.keys.master());
    assert_eq!(
        kept.self_signing.as_deref(),
        Some(bob.keys.self_signing().as_str())
    );
    assert!(
        device(&f.store, "PHONE").cross_signed,
        "checked against the kept key"
    );
    assert!(!device(&f.store, "GHOST").cross_signed);
    assert_eq!(
        device_trust(Some(&kept), &device(&f.store, "GHOST")),
        "unsigned"
    );
}

#[test]
fn a_master_key_our_user_signing_key_signed_is_verified() {
    let f = fixture();
    cdb::track_user(f.store.conn(), BOB).unwrap();
    let me = OwnKeys::generate();
    db::save_own(
        f.store.conn(),
        db::Slot::Current,
        &db::OwnRow {
            sealed: me.seal(&f.vault.pickle_key(), ME).unwrap(),
            master: me.master(),
            self_signing: me.self_signing(),
            user_signing: me.user_signing(),
            state: db::Publication::Published,
        },
    )
    .unwrap();
    let bob = Published::new(BOB).device("PHONE", true);
    apply(&f.store, &bob.answer());
    assert_eq!(identity(&f.store).state, IdentityState::Pinned);
    // Our signature on Bob's master key, as the server merges it.
    let mut answer = bob.answer();
    let signed = me
        .sign_master_body(ME, BOB, &bob.keys.master(), &bob.upload["master_key"])
        .unwrap();
    answer["master_keys"][BOB]["signatures"][ME] =
        signed[BOB][bob.keys.master()]["signatures"][ME].clone();
    apply(&f.store, &answer);
    let verified = identity(&f.store);
    assert_eq!(verified.state, IdentityState::Verified);
    assert_eq!(
        device_trust(Some(&verified), &device(&f.store, "PHONE")),
        "verified"
    );

    // Bob resets his identity: changed, no longer verified.
    let reset = Published::new(BOB).device("PHONE2", true);
    apply(&f.store, &reset.answer());
    assert_eq!(identity(&f.store).state, IdentityState::Changed);
    // We verify the new identity (our user-signing key signs it): re-pinned, verified.
    let mut answer = reset.answer();
    let signed = me
        .sign_master_body(ME, BOB, &reset.keys.master(), &reset.upload["master_key"])
        .unwrap();
    answer["master_keys"][BOB]["signatures"][ME] =
        signed[BOB][reset.keys.master()]["signatures"][ME].clone();
    apply(&f.store, &answer);
    let again = identity(&f.store);
    assert_eq!(again.master, reset.keys.master());
    assert_eq!(again.state, IdentityState::Verified);
    assert_eq!(again.changed_master, None, "no change left to show");
    assert!(device(&f.store, "PHONE2").cross_signed);
    assert!(kinds(&f.store).contains(&"identity_reverified".to_owned()));

    // A signature by a user-signing key that is not ours verifies nothing.
    let stranger = OwnKeys::generate();
    let other = Published::new(BOB);
    let mut answer = other.answer();
    let signed = stranger
        .sign_master_body(ME, BOB, &other.keys.master(), &other.upload["master_key"])
        .unwrap();
    answer["master_keys"][BOB]["signatures"][ME] =
        signed[BOB][other.keys.master()]["signatures"][ME].clone();
    apply(&f.store, &answer);
    assert_eq!(identity(&f.store).master, reset.keys.master());
    assert_eq!(identity(&f.store).state, IdentityState::Changed);
}

#[test]
fn the_trust_shown_follows_the_rules() {
    let d = |state, deleted, cross_signed| cdb::DeviceRecord {
        user_id: BOB.into(),
        device_id: "D".into(),
        ed25519: String::new(),
        curve25519: String::new(),
        display_name: None,
        state,
        deleted,
        cross_signed,
    };
    let identity = |state| IdentityRecord {
        user_id: BOB.into(),
        master: "M".into(),
        self_signing: Some("S".into()),
        state,
        changed_master: None,
    };
    use IdentityState::*;
    let tofu = DeviceState::Tofu;
    assert_eq!(device_trust(None, &d(tofu, false, false)), "tofu");
    assert_eq!(
        device_trust(None, &d(DeviceState::Blocked, false, true)),
        "blocked"
    );
    assert_eq!(
        device_trust(
            Some(&identity(Verified)),
            &d(DeviceState::Blocked, false, true)
        ),
        "blocked"
    );
    assert_eq!(
        device_trust(Some(&identity(Verified)), &d(tofu, true, true)),
        "unknown"
    );
    assert_eq!(
        device_trust(Some(&identity(Verified)), &d(tofu, false, true)),
        "verified"
    );
    assert_eq!(
        device_trust(Some(&identity(Verified)), &d(tofu, false, false)),
        "unsigned"
    );
    assert_eq!(
        device_trust(Some(&identity(Pinned)), &d(tofu, false, true)),
        "identity_pinned"
    );
    assert_eq!(
        device_trust(Some(&identity(Pinned)), &d(tofu, false, false)),
        "unsigned"
    );
    assert_eq!(
        device_trust(Some(&identity(Changed)), &d(tofu, false, true)),
        "identity_changed"
    );
}
