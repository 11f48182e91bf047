//! The E2EE engine: our Olm account plus the pickle key, working on the store inside the
//! caller's transaction. Olm (to-device) lives in [`super::olm`], Megolm (rooms) in
//! [`super::megolm`]; this file holds the account's lifecycle and key uploads.

use rusqlite::Connection;
use tchap_secure_hsm::PickleKey;

use super::CryptoError;
use super::account::OlmAccount;
use crate::store::crypto as db;

/// A key upload persisted before it is sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingUpload {
    /// Set (and persisted) before the body is first sent.
    attempted: bool,
    body: serde_json::Value,
}

fn load_pending(conn: &Connection) -> Result<Option<PendingUpload>, CryptoError> {
    match db::load_account(conn)?.and_then(|r| r.pending_upload) {
        Some(p) => Ok(Some(serde_json::from_str(&p).map_err(|_| {
            CryptoError::Malformed {
                what: "stored pending key upload",
            }
        })?)),
        None => Ok(None),
    }
}

impl PendingUpload {
    fn to_json(&self) -> Result<String, CryptoError> {
        serde_json::to_string(self).map_err(|_| CryptoError::Malformed {
            what: "pending key upload",
        })
    }
}

/// Our E2EE state for one logged-in device.
pub(crate) struct Engine {
    pub(super) account: OlmAccount,
    pub(super) pickle_key: PickleKey,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            account,
            pickle_key: _,
        } = self;
        f.debug_struct("Engine")
            .field("account", account)
            .field("pickle_key", &"<redacted>")
            .finish()
    }
}

impl Engine {
    /// Loads our account, or creates it on first use — then the first key upload (device keys,
    /// one-time keys, fallback key) is generated and persisted at once, pending upload.
    pub(crate) fn load_or_create(
        conn: &Connection,
        user_id: &str,
        device_id: &str,
        pickle_key: PickleKey,
    ) -> Result<Self, CryptoError> {
        if let Some(row) = db::load_account(conn)? {
            let account = OlmAccount::from_pickle(&row.pickle, &pickle_key, user_id, device_id)?;
            return Ok(Self {
                account,
                pickle_key,
            });
        }
        let mut engine = Self {
            account: OlmAccount::new(user_id, device_id),
            pickle_key,
        };
        let pending = match engine.account.prepare_upload(0, true, true)? {
            Some(body) => Some(
                PendingUpload {
                    attempted: false,
                    body,
                }
                .to_json()?,
            ),
            None => None,
        };
        engine.save(conn, pending.as_deref())?;
        // Our own other devices are tracked like anyone's.
        db::track_user(conn, user_id)?;
        tracing::info!(ed25519 = %engine.account.ed25519().to_base64(), "device identity created");
        Ok(engine)
    }

    /// Reads the account again from the store when `changed` (another process on this data
    /// directory committed since this engine last looked: a notification handler may have
    /// used a one-time key or generated new ones). Called inside the write transaction, so
    /// what is read stays current until it commits.
    pub(crate) fn refresh(&mut self, conn: &Connection, changed: bool) -> Result<(), CryptoError> {
        if !changed {
            return Ok(());
        }
        let row = db::load_account(conn)?.ok_or(CryptoError::Store(
            crate::store::StoreError::Corrupt {
                detail: "account row missing".into(),
            },
        ))?;
        let user_id = self.account.user_id().to_owned();
        let device_id = self.account.device_id().to_owned();
        self.account =
            OlmAccount::from_pickle(&row.pickle, &self.pickle_key, &user_id, &device_id)?;
        Ok(())
    }

    pub(super) fn save(&self, conn: &Connection, pending: Option<&str>) -> Result<(), CryptoError> {
        db::save_account(conn, &self.account.pickle(&self.pickle_key), pending)?;
        Ok(())
    }

    /// Our Ed25519 key (base64).
    pub(crate) fn ed25519(&self) -> String {
        self.account.ed25519().to_base64()
    }

    /// Our device keys, self-signed, as published.
    pub(crate) fn device_keys(&self) -> Result<serde_json::Value, CryptoError> {
        self.account.device_keys()
    }

    /// Signs `object` with our device key (`ed25519:<device id>`).
    pub(crate) fn sign_with_device(
        &self,
        object: &mut serde_json::Value,
    ) -> Result<(), CryptoError> {
        self.account.sign_object(object)
    }

    /// Our Curve25519 key (base64).
    pub(crate) fn curve25519(&self) -> String {
        self.account.curve25519().to_base64()
    }

    /// Generates the keys needed to reach the server's targets (`server_otk_count` from the
    /// sync, `None` if it did not say) and persists them with the account as the pending
    /// upload — unless an upload is already pending, which is never mixed with new keys.
    /// Returns whether an upload is pending.
    pub(crate) fn generate_keys(
        &mut self,
        conn: &Connection,
        server_otk_count: Option<u64>,
        fallback_needed: bool,
    ) -> Result<bool, CryptoError> {
        if load_pending(conn)?.is_some() {
            return Ok(true);
        }
        let Some(count) = server_otk_count else {
            return Ok(false);
        };
        let Some(body) = self.account.prepare_upload(count, fallback_needed, false)? else {
            return Ok(false);
        };
        self.save(
            conn,
            Some(
                &PendingUpload {
                    attempted: false,
                    body,
                }
                .to_json()?,
            ),
        )?;
        Ok(true)
    }

    /// The pending `/keys/upload` body, to send now.
    ///
    /// A body is marked *attempted* in the store before it is first returned: it is sent at
    /// most once with its one-time keys. Found attempted but unacknowledged (a crash, a lost
    /// answer), it is sent again *without* its one-time keys — they may already be on the
    /// server and even claimed, and a second upload would publish a claimed key again — and
    /// the next sync's count tells whether new ones are needed. So no key is ever published
    /// twice, and no private key is lost (vodozemac keeps it until used or pruned).
    pub(crate) fn take_upload_body(
        &mut self,
        conn: &Connection,
    ) -> Result<Option<String>, CryptoError> {
        let Some(mut pending) = load_pending(conn)? else {
            return Ok(None);
        };
        if pending.attempted {
            if let Some(map) = pending.body.as_object_mut() {
                map.remove("one_time_keys");
            }
        } else {
            pending.attempted = true;
            self.save(conn, Some(&pending.to_json()?))?;
        }
        Ok(Some(pending.body.to_string()))
    }

    /// The server acknowledged the pending upload: mark the keys published and persist.
    pub(crate) fn upload_acknowledged(&mut self, conn: &Connection) -> Result<(), CryptoError> {
        self.account.mark_published();
        self.save(conn, None)
    }
}
