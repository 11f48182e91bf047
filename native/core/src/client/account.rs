//! The account's life on this device (issue 19 item 4).
//!
//! - **Expired** (Tchap's `403 ORG_MATRIX_EXPIRED_ACCOUNT`, Synapse's `account_validity`): the
//!   client locks — no sync, no send, no message shown, the store stays as it is, encrypted —
//!   and offers the renewal e-mail (`account_validity/send_mail`). [`Client::resume`] asks the
//!   server again and unlocks once the account was renewed: nothing was lost meanwhile (the
//!   sync position, the keys and the queued messages are where they were).
//! - **Revoked** (a non-soft `M_UNKNOWN_TOKEN`: the token was revoked or the account
//!   deactivated, which revokes every token; or `M_USER_DEACTIVATED`): per
//!   `on_account_revoked`, the client locks for good, or — the default — the device's data is
//!   crypto-shredded: [`Client::must_shred`] tells the caller to call [`Client::wipe`] at once
//!   (the CLI and the JNI bridge do), and [`Client::open`] does it itself if the process died
//!   before. Tchap's own web client let an expired account keep its decrypted store and its
//!   token: here nothing readable outlives the account.
//!
//! The lock is kept in the store (`kv`), so a restart does not undo it.
//!
//! Also here: the member's own devices and logging out the others (user-interactive
//! authentication by password).

use std::sync::atomic::Ordering;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tchap_secure_hsm::SecretBytes;
use zeroize::Zeroizing;

use super::Client;
use crate::api::ApiError;
use crate::api::call;
use crate::api::types::Empty;
use crate::config::OnAccountRevoked;
use crate::error::Error;
use crate::net::Request;

/// The `kv` key of the lock.
const LOCK_KEY: &str = "account.lock";

/// Why the client is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountLock {
    /// The account's validity period is over: renewal unlocks it ([`Client::resume`]).
    Expired,
    /// The account was deactivated or this device's token revoked: never unlocked (the data
    /// is shredded, or kept locked until an administrator wipes it).
    Revoked,
}

impl AccountLock {
    /// The stable name (`expired`, `revoked`), as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// The in-memory cell's value (`Client::lock`).
    pub(crate) fn to_cell(lock: Option<Self>) -> u8 {
        match lock {
            None => 0,
            Some(Self::Expired) => 1,
            Some(Self::Revoked) => 2,
        }
    }

    fn from_cell(cell: u8) -> Option<Self> {
        match cell {
            1 => Some(Self::Expired),
            2 => Some(Self::Revoked),
            _ => None,
        }
    }

    fn parse(stored: &[u8]) -> Option<Self> {
        match stored {
            b"expired" => Some(Self::Expired),
            b"revoked" => Some(Self::Revoked),
            _ => None,
        }
    }

    /// The lock an API failure calls for, if any.
    fn of(error: &Error) -> Option<Self> {
        match error {
            Error::Api(ApiError::ExpiredAccount) => Some(Self::Expired),
            Error::Api(ApiError::UnknownToken { soft_logout: false }) => Some(Self::Revoked),
            Error::Api(ApiError::Matrix { errcode, .. }) if errcode == "M_USER_DEACTIVATED" => {
                Some(Self::Revoked)
            }
            _ => None,
        }
    }
}

/// One of the member's devices, as the homeserver lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnDevice {
    /// The device id.
    pub device_id: String,
    /// Its display name, if any.
    #[serde(default)]
    pub display_name: Option<String>,
    /// When it was last seen (ms since the epoch), if the server knows.
    #[serde(default)]
    pub last_seen_ts: Option<i64>,
    /// The address it was last seen from, if the server knows.
    #[serde(default)]
    pub last_seen_ip: Option<String>,
    /// Whether it is this device.
    #[serde(default)]
    pub current: bool,
}

#[derive(Deserialize)]
struct DevicesResponse {
    devices: Vec<OwnDevice>,
}

/// A bound on the devices one request logs out (the homeserver has its own).
const MAX_DEVICES_PER_LOGOUT: usize = 100;

impl Client {
    /// Why the client is locked, if it is.
    pub fn account_lock(&self) -> Option<AccountLock> {
        AccountLock::from_cell(self.lock.load(Ordering::SeqCst))
    }

    /// Whether the device's data must be crypto-shredded now: the account was revoked and the
    /// configuration says `shred` (the default). The caller calls [`Client::wipe`].
    pub fn must_shred(&self) -> bool {
        self.account_lock() == Some(AccountLock::Revoked)
            && self.config.on_account_revoked() == OnAccountRevoked::Shred
    }

    /// The error for any request or message shown while locked.
    pub(crate) fn ensure_unlocked(&self) -> Result<(), Error> {
        match self.account_lock() {
            None => Ok(()),
            Some(lock) => Err(Error::AccountLocked { lock }),
        }
    }

    /// The lock stored in this data directory, read at open.
    pub(crate) fn stored_lock(store: &crate::store::Store) -> Result<Option<AccountLock>, Error> {
        Ok(crate::store::kv_get(store.conn(), LOCK_KEY)?
            .as_deref()
            .and_then(AccountLock::parse))
    }

    /// Looks at the failure of a request made for this session: an expired account, a revoked
    /// token or a deactivated account locks the client (kept in the store) and the error
    /// becomes [`Error::AccountLocked`]; any other failure is returned as it is. Every sync
    /// goes through here, and every authenticated request; a caller that runs a sync request
    /// itself (`prepare_sync` → `PendingSync::fetch`) passes its failure here too.
    pub fn judge_failure(&self, error: Error) -> Error {
        let Some(lock) = AccountLock::of(&error) else {
            return error;
        };
        // Revoked is final: an expiry reported later does not turn it back into Expired.
        let lock = if self.account_lock() == Some(AccountLock::Revoked) {
            AccountLock::Revoked
        } else {
            lock
        };
        if let Err(e) = self.set_lock(Some(lock)) {
            return e;
        }
        tracing::warn!(
            lock = lock.as_str(),
            shred = self.must_shred(),
            "account locked"
        );
        Error::AccountLocked { lock }
    }

    /// Lifts the lock (logout of an expired account).
    pub(crate) fn clear_lock(&self) -> Result<(), Error> {
        self.set_lock(None)
    }

    fn set_lock(&self, lock: Option<AccountLock>) -> Result<(), Error> {
        match lock {
            Some(lock) => {
                crate::store::kv_set(self.store.conn(), LOCK_KEY, lock.as_str().as_bytes())?;
            }
            None => crate::store::kv_delete(self.store.conn(), LOCK_KEY)?,
        }
        self.lock
            .store(AccountLock::to_cell(lock), Ordering::SeqCst);
        Ok(())
    }

    /// Asks the homeserver to send the renewal e-mail of an expired account (Tchap's
    /// `account_validity/send_mail`, which an expired account may call). The member renews from
    /// the e-mail; then [`Client::resume`].
    pub async fn request_renewal(&self) -> Result<(), Error> {
        let token = self.session_token()?;
        let _: Empty = call(&self.transport, "/account_validity/send_mail", || {
            let mut r = Request::new(
                Method::POST,
                vec![
                    "_matrix",
                    "client",
                    "unstable",
                    "account_validity",
                    "send_mail",
                ],
            );
            r.access_token = Some(token);
            r.body = Some(Zeroizing::new(b"{}".to_vec()));
            r
        })
        .await?;
        tracing::info!("renewal e-mail requested");
        Ok(())
    }

    /// Asks the homeserver whether a locked-for-expiry account was renewed (`whoami`, made
    /// even while locked): if so the lock is lifted and `true` returned; still expired:
    /// `false`. A revoked account never resumes (`false`); an unlocked client: `true`.
    pub async fn resume(&mut self) -> Result<bool, Error> {
        match self.account_lock() {
            None => return Ok(true),
            Some(AccountLock::Revoked) => return Ok(false),
            Some(AccountLock::Expired) => {}
        }
        let token = self.session_token()?;
        let answer: Result<crate::api::types::WhoAmI, ApiError> =
            call(&self.transport, "/account/whoami", || {
                let mut r = Request::new(
                    Method::GET,
                    vec!["_matrix", "client", "v3", "account", "whoami"],
                );
                r.access_token = Some(token);
                r
            })
            .await;
        match answer {
            Ok(_) => {
                self.set_lock(None)?;
                tracing::info!("account renewed; client unlocked");
                Ok(true)
            }
            Err(e) => match self.judge_failure(e.into()) {
                Error::AccountLocked {
                    lock: AccountLock::Expired,
                } => Ok(false),
                Error::AccountLocked { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The member's devices as the homeserver lists them (`GET /devices`), this one marked
    /// `current`, the most recently seen first.
    pub async fn own_devices(&self) -> Result<Vec<OwnDevice>, Error> {
        let (_, ours) = self.own_ids()?;
        let answer: DevicesResponse = self
            .authed(
                Method::GET,
                "/devices",
                &["_matrix", "client", "v3", "devices"],
                None,
            )
            .await?;
        let mut devices = answer.devices;
        for d in &mut devices {
            d.current = d.device_id == ours;
        }
        devices.sort_by(|a, b| {
            b.last_seen_ts
                .cmp(&a.last_seen_ts)
                .then_with(|| a.device_id.cmp(&b.device_id))
        });
        Ok(devices)
    }

    /// Logs other devices of the member out (`POST /delete_devices`: their tokens revoked and
    /// their keys deleted on the server), authorised by the account password
    /// (user-interactive authentication; [`Error::PasswordRequired`] without it). This device
    /// cannot be one of them (that is [`Client::logout`]).
    pub async fn log_out_devices(
        &self,
        device_ids: &[String],
        password: Option<&SecretBytes>,
    ) -> Result<(), Error> {
        let (_, ours) = self.own_ids()?;
        let invalid = |what: String| Error::InvalidArgument { what };
        if device_ids.is_empty() || device_ids.len() > MAX_DEVICES_PER_LOGOUT {
            return Err(invalid(format!(
                "from 1 to {MAX_DEVICES_PER_LOGOUT} devices per request"
            )));
        }
        for id in device_ids {
            if id == &ours {
                return Err(invalid(
                    "this device is logged out with logout, not with the other devices".into(),
                ));
            }
            if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
                return Err(invalid(format!("not a device id: {id:?}")));
            }
        }
        let body = json!({ "devices": device_ids });
        let answer: Result<Empty, Error> = self
            .post_with_uia(
                "/delete_devices",
                &["_matrix", "client", "v3", "delete_devices"],
                &body,
                password,
            )
            .await;
        answer.map_err(|e| self.judge_failure(e))?;
        tracing::info!(count = device_ids.len(), "other devices logged out");
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use tchap_secure_hsm::soft::SoftVault;

    pub(crate) fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"homeserver_url": "https://localhost:8448", "server_name": "secure.tchap.test",
                "trust_anchors_pem": {}, "spki_pins_sha256":
                ["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                 "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="]{extra}}}"#,
            serde_json::to_string(include_str!("../../testdata/anchor.pem")).unwrap()
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn expired() -> Error {
        Error::Api(ApiError::ExpiredAccount)
    }

    fn revoked() -> Error {
        Error::Api(ApiError::UnknownToken { soft_logout: false })
    }

    #[test]
    fn a_lock_refuses_every_read_and_send_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SoftVault::new().unwrap();
        let client = Client::open(config(""), dir.path(), &backend).unwrap();
        assert_eq!(client.account_lock(), None);
        assert!(client.ensure_unlocked().is_ok());
        // Another failure passes through and locks nothing.
        let other = client.judge_failure(Error::NotLoggedIn);
        assert_eq!(other.code(), "no_session");
        let soft = client.judge_failure(Error::Api(ApiError::UnknownToken { soft_logout: true }));
        assert_eq!(soft.code(), "soft_logout");
        assert_eq!(client.account_lock(), None);

        let e = client.judge_failure(expired());
        assert_eq!(e.code(), "account_expired");
        assert_eq!(client.account_lock(), Some(AccountLock::Expired));
        assert!(!client.must_shred());
        assert_eq!(
            client.ensure_unlocked().unwrap_err().code(),
            "account_expired"
        );
        assert_eq!(
            client.messages("!r:s", 5).unwrap_err().code(),
            "account_expired"
        );
        assert_eq!(client.rooms().unwrap_err().code(), "account_expired");
        assert_eq!(
            client.members("!r:s").unwrap_err().code(),
            "account_expired"
        );
        assert_eq!(
            client.check_sendable_room("!r:s").unwrap_err().code(),
            "account_expired"
        );
        drop(client);
        let client = Client::open(config(""), dir.path(), &backend).unwrap();
        assert_eq!(client.account_lock(), Some(AccountLock::Expired));

        // Revoked is final: an expiry reported later does not soften it.
        assert_eq!(client.judge_failure(revoked()).code(), "account_revoked");
        assert!(client.must_shred(), "shred is the default");
        assert_eq!(client.judge_failure(expired()).code(), "account_revoked");
        assert_eq!(client.account_lock(), Some(AccountLock::Revoked));
        client.clear_lock().unwrap();
        assert_eq!(client.account_lock(), None);
        drop(client);
        let client = Client::open(config(""), dir.path(), &backend).unwrap();
        assert_eq!(client.account_lock(), None);
        assert!(client.rooms().unwrap().is_empty());
    }

    #[test]
    fn a_revoked_directory_is_shredded_at_open_unless_the_policy_says_lock() {
        let backend = SoftVault::new().unwrap();
        // Under `lock`: it opens, locked, its files kept.
        let dir = tempfile::tempdir().unwrap();
        let lock = config(r#", "on_account_revoked": "lock""#);
        let client = Client::open(lock.clone(), dir.path(), &backend).unwrap();
        client.judge_failure(revoked());
        assert!(!client.must_shred());
        drop(client);
        let client = Client::open(lock, dir.path(), &backend).unwrap();
        assert_eq!(client.account_lock(), Some(AccountLock::Revoked));
        drop(client);
        assert!(dir.path().join(tchap_secure_hsm::VAULT_FILE).exists());
        // Under `shred` (the process died before the wipe): shredded at the next open.
        let e = Client::open(config(""), dir.path(), &backend).unwrap_err();
        assert_eq!(e.code(), "account_revoked");
        assert!(!dir.path().join(tchap_secure_hsm::VAULT_FILE).exists());
        assert!(!dir.path().join(crate::store::DATABASE_FILE).exists());
        // An expired directory is never shredded at open.
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open(config(""), dir.path(), &backend).unwrap();
        client.judge_failure(expired());
        drop(client);
        let client = Client::open(config(""), dir.path(), &backend).unwrap();
        assert_eq!(client.account_lock(), Some(AccountLock::Expired));
    }

    #[test]
    fn only_an_expiry_a_hard_token_revocation_or_a_deactivation_lock() {
        let expired = Error::Api(ApiError::ExpiredAccount);
        assert_eq!(AccountLock::of(&expired), Some(AccountLock::Expired));
        let revoked = Error::Api(ApiError::UnknownToken { soft_logout: false });
        assert_eq!(AccountLock::of(&revoked), Some(AccountLock::Revoked));
        let deactivated = Error::Api(ApiError::Matrix {
            status: 403,
            errcode: "M_USER_DEACTIVATED".into(),
            message: String::new(),
        });
        assert_eq!(AccountLock::of(&deactivated), Some(AccountLock::Revoked));
        // A soft logout is a session to log into again, not a revocation.
        let soft = Error::Api(ApiError::UnknownToken { soft_logout: true });
        assert_eq!(AccountLock::of(&soft), None);
        let other = Error::Api(ApiError::Matrix {
            status: 403,
            errcode: "M_FORBIDDEN".into(),
            message: String::new(),
        });
        assert_eq!(AccountLock::of(&other), None);
        assert_eq!(AccountLock::of(&Error::NotLoggedIn), None);
    }

    #[test]
    fn the_stored_lock_reads_back_and_nothing_else_is_a_lock() {
        for lock in [AccountLock::Expired, AccountLock::Revoked] {
            assert_eq!(AccountLock::parse(lock.as_str().as_bytes()), Some(lock));
        }
        assert_eq!(AccountLock::parse(b""), None);
        assert_eq!(AccountLock::parse(b"Expired"), None);
    }
}
