//! Our cross-signing identity, the network side (issue 16): created at first login when the
//! account has none, published, and our device signed with it — crash-safe like the one-time
//! keys: the keys are stored (sealed) before anything is sent, the server is asked what it
//! holds before anything is published, so no identity is ever published twice and none is lost.
//!
//! States (`own_cross_signing.state`): `pending` (generated, not known to be on the server),
//! `published`, `device_signed`. Each step is committed after the server acknowledged it; a
//! crash or a lost answer between them is resumed by the next sync (or the next call), which
//! first looks at what the server holds. A reset publishes new keys kept in a slot of their
//! own: they replace the keys in use only once the server shows them, so a reset the server
//! refuses (a wrong password) loses nothing.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;
use tchap_secure_hsm::SecretBytes;

use super::Client;
use crate::crypto::cross_signing::{OwnKeys, cross_signing_key};
use crate::error::Error;
use crate::store::crypto::DeviceRecord;
use crate::store::identity::{
    self as idb, IdentityRecord, IdentityState, OwnRow, Publication, Slot,
};

/// Where our cross-signing identity stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossSigningStatus {
    /// Our identity's master key as this device knows it (ours, or the one pinned from the
    /// server when another device of ours created it), if any.
    pub master: Option<String>,
    /// This device holds the identity's private keys (it created them).
    pub has_private_keys: bool,
    /// Our device's signature by the identity is on the server.
    pub device_signed: bool,
    /// Trust in our own identity: `verified` when this device holds its keys or verified it
    /// interactively, `pinned` otherwise.
    pub identity: Option<IdentityState>,
}

impl Client {
    /// Where our cross-signing identity stands (no network).
    pub fn cross_signing_status(&self) -> Result<CrossSigningStatus, Error> {
        let (user_id, _) = self.own_ids()?;
        let conn = self.store.conn();
        let own = idb::load_own(conn, Slot::Current)?;
        let identity = idb::identity_of(conn, &user_id)?;
        let ours = own
            .as_ref()
            .filter(|o| matches!(o.state, Publication::Published | Publication::DeviceSigned));
        Ok(CrossSigningStatus {
            master: ours
                .map(|o| o.master.clone())
                .or_else(|| identity.as_ref().map(|i| i.master.clone())),
            has_private_keys: ours.is_some(),
            device_signed: own
                .as_ref()
                .is_some_and(|o| o.state == Publication::DeviceSigned),
            identity: identity.map(|i| i.state),
        })
    }

    /// The trust shown for `device` (and its messages): `verified`, `identity_pinned`,
    /// `unsigned`, `identity_changed`, `tofu`, `blocked` or `unknown` (no network).
    pub fn device_trust(&self, device: &DeviceRecord) -> Result<&'static str, Error> {
        let identity = idb::identity_of(self.store.conn(), &device.user_id)?;
        Ok(crate::crypto::cross_signing::device_trust(
            identity.as_ref(),
            device,
        ))
    }

    /// `user_id`'s cross-signing identity as pinned here (no network), if any.
    pub fn identity(&self, user_id: &str) -> Result<Option<IdentityRecord>, Error> {
        Ok(idb::identity_of(self.store.conn(), user_id)?)
    }

    /// Accepts `user_id`'s changed cross-signing identity without verifying them again, where
    /// the managed configuration allows it (`allow_identity_acknowledgement`; otherwise only a
    /// new verification lifts the block). `master` is the new key the member was shown
    /// ([`IdentityRecord::changed_master`]): if the server has changed it again since, nothing
    /// is accepted (`identity_changed_again`). The key is pinned as on first sight (not
    /// verified), journaled `identity_change_acknowledged`, and the user's devices are queried
    /// again so that those it signed get room keys from the next message on. If that query
    /// fails (offline), the acknowledgement stands and the next sync makes it.
    pub async fn acknowledge_identity_change(
        &mut self,
        user_id: &str,
        master: &str,
    ) -> Result<IdentityRecord, Error> {
        use crate::crypto::cross_signing::{Acknowledgement, acknowledge_change};
        if !self.config.allow_identity_acknowledgement() {
            return Err(Error::Verification {
                code: "identity_acknowledgement_not_allowed",
                detail: "the managed configuration requires verifying the user again".into(),
            });
        }
        self.own_ids()?;
        let outcome = self.with_engine(|tx, _| acknowledge_change(tx, user_id, master))?;
        let record = match outcome {
            Acknowledgement::Done(record) => record,
            Acknowledgement::NotChanged => {
                return Err(Error::Verification {
                    code: "identity_not_changed",
                    detail: format!("{user_id}'s identity has not changed"),
                });
            }
            Acknowledgement::ChangedAgain => {
                return Err(Error::Verification {
                    code: "identity_changed_again",
                    detail: format!(
                        "the server now shows another master key for {user_id} than {master}"
                    ),
                });
            }
        };
        if let Err(e) = self
            .refresh_devices(BTreeSet::from([user_id.to_owned()]))
            .await
        {
            tracing::warn!(
                user_id,
                code = e.code(),
                "device query after an acknowledgement failed: the next sync makes it"
            );
        }
        Ok(idb::identity_of(self.store.conn(), user_id)?.unwrap_or(record))
    }

    /// Creates our cross-signing identity if the account has none (at first login), publishes
    /// it and signs our device with it — or finishes what an interrupted run started. If
    /// another device of ours already published an identity, nothing is created: this device
    /// waits to be verified by that one. `password` is needed only if the server asks for it
    /// (it does not for a first identity: MSC3967).
    pub async fn bootstrap_cross_signing(
        &mut self,
        password: Option<&SecretBytes>,
    ) -> Result<CrossSigningStatus, Error> {
        let (user_id, _) = self.own_ids()?;
        if let Some(replacement) = idb::load_own(self.store.conn(), Slot::Replacement)? {
            // A reset was interrupted: it happened if the server shows its key.
            if self.served_master(&user_id).await? == Some(replacement.master.clone()) {
                self.mark_published(&replacement, Slot::Replacement)?;
            } else {
                self.store
                    .transaction(|tx| idb::delete_own(tx, Slot::Replacement))?;
                tracing::info!("an unfinished cross-signing reset was not published; dropped");
            }
        }
        let own = idb::load_own(self.store.conn(), Slot::Current)?;
        match own.as_ref().map(|o| o.state) {
            Some(Publication::DeviceSigned) => return self.cross_signing_status(),
            Some(Publication::Published) => {
                self.sign_own_device().await?;
                return self.cross_signing_status();
            }
            Some(Publication::Pending) | None => {}
        }
        let served = self.served_master(&user_id).await?;
        let own = match (own, served) {
            (Some(own), Some(served)) if own.master == served => {
                // Published earlier; the acknowledgement was lost (a crash, the network).
                self.mark_published(&own, Slot::Current)?;
                self.sign_own_device().await?;
                return self.cross_signing_status();
            }
            (Some(_), Some(_)) => {
                // Another device of ours published first: ours was never published, drop it.
                self.store
                    .transaction(|tx| idb::delete_own(tx, Slot::Current))?;
                tracing::info!("another device published our identity first; ours dropped");
                return self.cross_signing_status();
            }
            (None, Some(_)) => return self.cross_signing_status(),
            (Some(own), None) => own,
            (None, None) => self.generate_own(Slot::Current)?,
        };
        self.publish_own(&own, Slot::Current, password).await?;
        self.sign_own_device().await?;
        self.cross_signing_status()
    }

    /// Replaces our cross-signing identity with a new one (every device and every user we
    /// verified must then be verified again). The server requires the account password. The
    /// keys in use are kept until the server shows the new ones.
    pub async fn reset_cross_signing(
        &mut self,
        password: &SecretBytes,
    ) -> Result<CrossSigningStatus, Error> {
        let replacement = self.generate_own(Slot::Replacement)?;
        if let Err(e) = self
            .publish_own(&replacement, Slot::Replacement, Some(password))
            .await
        {
            if !e.is_network() {
                // Refused (a wrong password…): nothing was published.
                self.store
                    .transaction(|tx| idb::delete_own(tx, Slot::Replacement))?;
            }
            return Err(e);
        }
        self.sign_own_device().await?;
        self.cross_signing_status()
    }

    /// Called by each sync: finishes a bootstrap or reset an interruption left half done.
    pub(crate) async fn resume_cross_signing(&mut self) -> Result<(), Error> {
        let conn = self.store.conn();
        let unfinished = idb::load_own(conn, Slot::Replacement)?.is_some()
            || idb::load_own(conn, Slot::Current)?
                .is_some_and(|o| o.state != Publication::DeviceSigned);
        if unfinished {
            self.bootstrap_cross_signing(None).await?;
        }
        Ok(())
    }

    /// The master key the server holds for us, if any.
    async fn served_master(&self, user_id: &str) -> Result<Option<String>, Error> {
        let answer = self
            .query_keys(&BTreeSet::from([user_id.to_owned()]))
            .await?;
        Ok(
            cross_signing_key(&answer.value, "master_keys", user_id, "master")
                .map_err(Error::Crypto)?
                .map(|(_, master, _)| master),
        )
    }

    /// Three new keys, stored sealed in `slot` before anything is sent.
    fn generate_own(&mut self, slot: Slot) -> Result<OwnRow, Error> {
        let (user_id, _) = self.own_ids()?;
        let keys = OwnKeys::generate();
        let row = OwnRow {
            sealed: keys.seal(&self.vault.pickle_key(), &user_id)?,
            master: keys.master(),
            self_signing: keys.self_signing(),
            user_signing: keys.user_signing(),
            state: Publication::Pending,
        };
        self.store.transaction(|tx| idb::save_own(tx, slot, &row))?;
        tracing::info!(master = %row.master, "cross-signing identity generated");
        crate::fault::point("cross-signing-generated");
        Ok(row)
    }

    fn own_keys(&self, own: &OwnRow) -> Result<OwnKeys, Error> {
        let (user_id, _) = self.own_ids()?;
        Ok(OwnKeys::open(
            &own.sealed,
            &self.vault.pickle_key(),
            &user_id,
        )?)
    }

    /// `/keys/device_signing/upload`, then `published` with our own identity pinned as
    /// verified, in one transaction.
    async fn publish_own(
        &mut self,
        own: &OwnRow,
        slot: Slot,
        password: Option<&SecretBytes>,
    ) -> Result<(), Error> {
        let (user_id, _) = self.own_ids()?;
        let keys = self.own_keys(own)?;
        let engine = self.engine.as_ref().ok_or(Error::NotLoggedIn)?;
        let body = keys.upload_body(&user_id, |master| engine.sign_with_device(master))?;
        drop(keys);
        let _: Value = self
            .post_with_uia(
                "/keys/device_signing/upload",
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "keys",
                    "device_signing",
                    "upload",
                ],
                &body,
                password,
            )
            .await?;
        crate::fault::point("after-cross-signing-upload");
        self.mark_published(own, slot)?;
        tracing::info!(master = %own.master, "cross-signing identity published");
        Ok(())
    }

    /// The keys of `slot` are on the server: they are the identity in use, `published`, and
    /// our own identity is pinned to them as verified — in one transaction.
    fn mark_published(&mut self, own: &OwnRow, slot: Slot) -> Result<(), Error> {
        let (user_id, _) = self.own_ids()?;
        self.store.transaction(|tx| {
            match slot {
                Slot::Current => idb::set_own_state(tx, Publication::Published)?,
                Slot::Replacement => idb::promote_replacement(tx)?,
            }
            idb::save_identity(
                tx,
                &IdentityRecord {
                    user_id: user_id.clone(),
                    master: own.master.clone(),
                    self_signing: Some(own.self_signing.clone()),
                    state: IdentityState::Verified,
                    changed_master: None,
                },
            )
        })?;
        Ok(())
    }

    /// `/keys/signatures/upload` of our device keys signed by our self-signing key, then
    /// `device_signed`.
    async fn sign_own_device(&mut self) -> Result<(), Error> {
        let (user_id, device_id) = self.own_ids()?;
        let Some(own) = idb::load_own(self.store.conn(), Slot::Current)? else {
            return Ok(());
        };
        let keys = self.own_keys(&own)?;
        let engine = self.engine.as_ref().ok_or(Error::NotLoggedIn)?;
        let device_keys = engine.device_keys()?;
        let body = keys.sign_device_body(&user_id, &device_id, &device_keys)?;
        drop(keys);
        self.upload_signatures(&body).await?;
        crate::fault::point("after-device-signature-upload");
        self.store
            .transaction(|tx| idb::set_own_state(tx, Publication::DeviceSigned))?;
        tracing::info!("our device is signed by our cross-signing identity");
        Ok(())
    }
}
