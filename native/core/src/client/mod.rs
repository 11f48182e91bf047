//! The client: a data directory (vault + database), a pinned transport, and a Matrix session.
//!
//! Opening a client unwraps the root secret through the hardware KEK (creating the vault on
//! first use), opens the SQLCipher database with the derived key and restores the saved session,
//! if any: a restart never needs the password again.

pub mod account;
pub mod cross_signing;
pub mod direct;
pub mod directory;
mod e2ee;
pub mod media;
pub mod notification;
pub(crate) mod outbox;
pub mod push;
pub mod receipts;
pub mod relations;
pub mod retention;
pub(crate) mod rooms;
pub(crate) mod sync;
pub(crate) mod timeline;
mod uia;
pub mod verification;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use tchap_secure_hsm::{KeyVault, SecretBytes, Vault, VaultBinding};
use zeroize::Zeroizing;

use crate::api::types::{Empty, LoginResponse, SyncResponse, Versions, WhoAmI};
use crate::api::{ApiError, call};
use crate::config::Config;
use crate::error::Error;
use crate::net::{Request, Transport};
use crate::secret::AccessToken;
use crate::store::{Store, StoredSession};

pub use outbox::OutgoingUpdate;
pub use sync::SyncSummary;
pub use timeline::{FetchedGapPages, History, PendingGapPages};

/// The sync filter: a bounded timeline; members are not lazy-loaded, so the member list is
/// complete.
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":50},"ephemeral":{"types":["m.receipt"]}},"presence":{"not_types":["*"]}}"#;
/// Cap on a sync response body.
const MAX_SYNC_BYTES: usize = 32 * 1024 * 1024;

/// A logged-in identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Our user id.
    pub user_id: String,
    /// Our device id.
    pub device_id: String,
}

/// An open client.
#[derive(Debug)]
pub struct Client {
    config: Config,
    data_dir: PathBuf,
    transport: Transport,
    store: Store,
    session: Option<StoredSession>,
    /// Holds the root secret for the process lifetime (zeroized on drop): the pickle key is
    /// derived from it when the E2EE engine is (re)loaded.
    vault: Vault,
    engine: Option<crate::crypto::engine::Engine>,
    /// The content scanner's public key, shared by this client's downloads.
    scanner_keys: crate::media::ScannerKeyCache,
    /// Our messages' state changes since the last sync, reported with the next one.
    pending_updates: Vec<OutgoingUpdate>,
    /// Key verification flows in progress (in memory: a flow lasts minutes).
    verifications: verification::Flows,
    /// Why the account is locked, if it is (`AccountLock::to_cell`; mirrors the store:
    /// `account.rs`). A cell, so that any request, made through `&self`, can lock it.
    lock: std::sync::atomic::AtomicU8,
}

fn prepare_data_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::DataDir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(Error::DataDir)
}

impl Client {
    /// Opens the data directory `data_dir` with the hardware `backend`, creating the vault and
    /// the database on first use, and restores the saved session.
    pub fn open(config: Config, data_dir: &Path, backend: &dyn KeyVault) -> Result<Self, Error> {
        Self::open_with_transport(config.clone(), data_dir, backend, Transport::new(&config)?)
    }

    /// As [`Client::open`], with a transport built by the caller (e.g. with short timeouts).
    pub fn open_with_transport(
        config: Config,
        data_dir: &Path,
        backend: &dyn KeyVault,
        transport: Transport,
    ) -> Result<Self, Error> {
        // Whoever hosts the library, the process holding the keys writes no core dump.
        tchap_secure_memory::harden_process();
        prepare_data_dir(data_dir)?;
        let binding = VaultBinding {
            server_name: config.server_name().to_owned(),
        };
        let vault = if Vault::exists(data_dir) {
            match Vault::open(data_dir, backend, &binding) {
                Ok(vault) => vault,
                Err(e) => {
                    // A new remote-wipe command is carried out even when the vault does not
                    // open (a locked phone under `unlocked_device_required`, a damaged
                    // vault.bin): the KEK is destroyed by the id vault.bin names.
                    if remote_wipe_pending(&config, data_dir) {
                        tracing::warn!(error = %e, "the vault does not open; executing the new remote wipe command");
                        wipe_data_dir(data_dir, backend)?;
                        return Err(Error::RemoteWipe);
                    }
                    return Err(e.into());
                }
            }
        } else {
            if data_dir.join(crate::store::DATABASE_FILE).exists() {
                // A database without its vault can never be opened again; refuse to create a
                // new vault next to it, so the old file is not silently orphaned.
                return Err(Error::Vault(tchap_secure_hsm::VaultError::NotFound));
            }
            Vault::create(data_dir, backend, &binding)?
        };
        let mut store = Store::open(data_dir, &vault.database_key())?;
        if let Some(nonce) = config.wipe_command_nonce() {
            match store.wipe_nonce()? {
                None => {
                    store.set_wipe_nonce(nonce)?;
                    write_wipe_nonce_mirror(data_dir, nonce)?;
                }
                Some(seen) if seen == nonce => {
                    if read_wipe_nonce_mirror(data_dir).as_deref() != Some(nonce) {
                        write_wipe_nonce_mirror(data_dir, nonce)?;
                    }
                }
                Some(_) => {
                    // The MDM pushed a new wipe command: crypto-shred before anything else.
                    drop(store);
                    drop(vault);
                    wipe_data_dir(data_dir, backend)?;
                    tracing::warn!("remote wipe command executed");
                    return Err(Error::RemoteWipe);
                }
            }
        }
        // Time seen once cannot be taken back: the clock judging pins and certificates never
        // goes below the latest time this directory has seen (before any request is made).
        let clock = transport.clock();
        clock.raise_floor(crate::store::session::trusted_time(store.conn())?);
        crate::store::session::record_trusted_time(store.conn(), clock.now_secs())?;
        let lock = Self::stored_lock(&store)?;
        if lock == Some(account::AccountLock::Revoked)
            && config.on_account_revoked() == crate::config::OnAccountRevoked::Shred
        {
            // The account was revoked and the process died before the data was shredded:
            // shred it now, before anything is read.
            drop(store);
            drop(vault);
            wipe_data_dir(data_dir, backend)?;
            tracing::warn!("revoked account: data directory shredded at open");
            return Err(Error::AccountLocked {
                lock: account::AccountLock::Revoked,
            });
        }
        let session = store.load_session()?;
        tracing::info!(
            restored = session.is_some(),
            locked = lock.is_some(),
            "client opened"
        );
        let scanner_keys =
            crate::media::ScannerKeyCache::pinned(config.content_scanner_keys().to_vec());
        let mut client = Self {
            config,
            data_dir: data_dir.to_owned(),
            transport,
            store,
            session,
            vault,
            engine: None,
            scanner_keys,
            pending_updates: Vec::new(),
            verifications: verification::Flows::default(),
            lock: std::sync::atomic::AtomicU8::new(account::AccountLock::to_cell(lock)),
        };
        client.reload_engine()?;
        // What expired while the app was closed goes before anything is shown.
        client.retention_at_open()?;
        Ok(client)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The local store (read-only queries: rooms, members, security events).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current session, if logged in.
    pub fn session(&self) -> Option<SessionInfo> {
        self.session.as_ref().map(|s| SessionInfo {
            user_id: s.user_id.clone(),
            device_id: s.device_id.clone(),
        })
    }

    /// One authenticated request to `path` with a fixed JSON body (sent again unchanged if
    /// the server rate-limits it), decoded as `T`.
    pub(crate) async fn authed<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &'static str,
        path: &[&str],
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<T, Error> {
        let token = self.token()?;
        call(&self.transport, endpoint, || {
            let mut r = Request::new(method.clone(), path.to_vec());
            r.access_token = Some(token);
            r.body = body.clone();
            r
        })
        .await
        // An expired account or a revoked token locks the client, whatever the request.
        .map_err(|e| self.judge_failure(e.into()))
    }

    /// The session's token for a request; refused while the account is locked.
    fn token(&self) -> Result<&AccessToken, Error> {
        self.ensure_unlocked()?;
        self.session_token()
    }

    /// The session's token even while locked: only for the requests a locked account makes
    /// (renewal, asking whether it was renewed, logout).
    fn session_token(&self) -> Result<&AccessToken, Error> {
        self.session
            .as_ref()
            .map(|s| &s.access_token)
            .ok_or(Error::NotLoggedIn)
    }

    /// `GET /_matrix/client/versions` over the pinned transport (no session needed).
    pub async fn probe(transport: &Transport) -> Result<Versions, Error> {
        Ok(call(transport, "/versions", || {
            Request::new(Method::GET, vec!["_matrix", "client", "versions"])
        })
        .await?)
    }

    fn check_user_allowed(&self, user_id: &str) -> Result<(), Error> {
        let Some(domain) = self.config.allowed_user_domain() else {
            return Ok(());
        };
        let server = user_id.split_once(':').map(|(_, s)| s);
        if server != Some(domain) {
            return Err(Error::UserNotAllowed {
                user_id: user_id.to_owned(),
            });
        }
        Ok(())
    }

    /// Logs in with a password (UTF-8 bytes, never a `String`) and saves the session.
    /// `user` is a localpart or a full user id.
    pub async fn login(
        &mut self,
        user: &str,
        password: &SecretBytes,
        device_name: &str,
    ) -> Result<SessionInfo, Error> {
        if user.starts_with('@') {
            self.check_user_allowed(user)?;
        }
        self.login_as(uia::Identifier::User { user }, password, device_name)
            .await
    }

    /// Logs in with the work e-mail address bound to the account on the homeserver
    /// (`m.id.thirdparty`, medium `email`) and a password, as Tchap users know their address,
    /// not their Matrix id. The user id the server answers is checked against
    /// `allowed_user_domain` like any other.
    pub async fn login_with_email(
        &mut self,
        address: &str,
        password: &SecretBytes,
        device_name: &str,
    ) -> Result<SessionInfo, Error> {
        let address = uia::canonical_email(address)?;
        let identifier = uia::Identifier::ThirdParty {
            medium: "email",
            address: &address,
        };
        self.login_as(identifier, password, device_name).await
    }

    async fn login_as(
        &mut self,
        identifier: uia::Identifier<'_>,
        password: &SecretBytes,
        device_name: &str,
    ) -> Result<SessionInfo, Error> {
        if let Some(s) = &self.session {
            return Err(Error::AlreadyLoggedIn {
                user_id: s.user_id.clone(),
            });
        }
        // A data directory whose account was revoked is never logged into again.
        self.ensure_unlocked()?;
        let password_bytes = password;
        let password =
            std::str::from_utf8(password.expose()).map_err(|_| Error::InvalidArgument {
                what: "the password is not UTF-8".into(),
            })?;
        let body = login_body(identifier, password, device_name)?;
        let response: LoginResponse = call(&self.transport, "/login", || {
            let mut r = Request::new(Method::POST, vec!["_matrix", "client", "v3", "login"]);
            r.body = Some(body.clone());
            r
        })
        .await?;
        let session = StoredSession {
            user_id: response.user_id,
            device_id: response.device_id,
            access_token: AccessToken::new(response.access_token),
        };
        if let Err(e) = self.check_user_allowed(&session.user_id) {
            // Do not keep a session the policy refuses: revoke it at once.
            let _ = self.logout_token(&session.access_token).await;
            return Err(e);
        }
        self.store.save_session(&session)?;
        let info = SessionInfo {
            user_id: session.user_id.clone(),
            device_id: session.device_id.clone(),
        };
        self.session = Some(session);
        tracing::info!(user_id = %info.user_id, device_id = %info.device_id, "logged in");
        // A new device identity, its keys uploaded at once so peers can share room keys.
        self.reload_engine()?;
        self.upload_keys().await?;
        // Our cross-signing identity, if the account has none yet (else this device waits to
        // be verified by one of ours). A failure here does not undo the login: the next sync
        // resumes it.
        if let Err(e) = self.bootstrap_cross_signing(Some(password_bytes)).await {
            tracing::warn!(code = e.code(), "cross-signing not set up yet");
        }
        Ok(info)
    }

    /// `GET /account/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.authed(
            Method::GET,
            "/account/whoami",
            &["_matrix", "client", "v3", "account", "whoami"],
            None,
        )
        .await
    }

    /// Revokes `token` — not necessarily the stored session's: a session refused by policy
    /// right after login is revoked before it is ever stored.
    async fn logout_token(&self, token: &AccessToken) -> Result<(), Error> {
        let _: Empty = call(&self.transport, "/logout", || {
            let mut r = Request::new(Method::POST, vec!["_matrix", "client", "v3", "logout"]);
            r.access_token = Some(token);
            r.body = Some(Zeroizing::new(b"{}".to_vec()));
            r
        })
        .await?;
        Ok(())
    }

    /// Logs out on the server and forgets the session and its rooms locally. A token the
    /// server already forgot (`M_UNKNOWN_TOKEN`) still clears the local session.
    pub async fn logout(&mut self) -> Result<(), Error> {
        // Our pushers first: the homeserver must stop notifying for a device that is gone (a
        // locked account cannot: its pushers go with its token).
        match self.unregister_pushers().await {
            Ok(_)
            | Err(Error::Api(ApiError::UnknownToken { .. }) | Error::AccountLocked { .. }) => {}
            Err(e) => return Err(e),
        }
        let token = self.session_token()?;
        match self.logout_token(token).await {
            Ok(()) | Err(Error::Api(ApiError::UnknownToken { .. })) => {}
            Err(e) => return Err(e),
        }
        self.store.clear_session()?;
        self.session = None;
        self.engine = None;
        // An expired account logged out is no longer locked here (logging in again finds it
        // expired, or renewed); a revoked one stays locked: only a wipe ends that.
        if self.account_lock() == Some(account::AccountLock::Expired) {
            self.clear_lock()?;
        }
        tracing::info!("logged out");
        Ok(())
    }

    /// One `/sync` request (long-polling up to `timeout`), applied atomically: the device
    /// lists it needs are fetched first, then rooms, members, to-device messages (room keys),
    /// decrypted events, newly generated one-time keys and `next_batch` are committed in one
    /// transaction. Then pending keys are uploaded, wedged Olm channels recovered and the
    /// outbox flushed.
    pub async fn sync_once(&mut self, timeout: Duration) -> Result<SyncSummary, Error> {
        let pending = self.prepare_sync(timeout)?;
        let response = match pending.fetch().await {
            Ok(response) => response,
            Err(e) => return Err(self.judge_failure(e)),
        };
        match self.finish_sync(response).await {
            Ok(summary) => Ok(summary),
            Err(e) => Err(self.judge_failure(e)),
        }
    }

    /// The first half of [`Client::sync_once`]: what the long-poll needs, taken from the
    /// client so that the request can run without holding it (the JNI bridge releases its lock
    /// during the long-poll, so other calls are not held up).
    pub fn prepare_sync(&self, timeout: Duration) -> Result<PendingSync, Error> {
        Ok(PendingSync {
            transport: self.transport.clone(),
            token: self.token()?.clone(),
            since: self.store.next_batch()?,
            // A disappearing message is purged on time: the long poll ends by its deadline.
            timeout: self.timeout_before_expiry(timeout)?,
        })
    }

    /// The second half of [`Client::sync_once`]: [`Client::apply_sync`], then every gap it
    /// revealed filled ([`Client::fill_gaps`]).
    pub async fn finish_sync(&mut self, fetched: FetchedSync) -> Result<SyncSummary, Error> {
        let mut summary = self.apply_sync(fetched).await?;
        // The gaps this sync revealed (and any left by an earlier interrupted fill).
        self.fill_gaps(&mut summary).await?;
        Ok(summary)
    }

    /// Applies a fetched response atomically, then uploads keys, recovers wedged channels and
    /// flushes the outbox; the gaps it revealed are left open (for [`Client::fill_gaps`], or
    /// for rounds of [`Client::prepare_gap_pages`] / [`Client::apply_gap_pages`] run without
    /// holding the client during each fetch). A response fetched from a token that is no
    /// longer the stored one (another sync committed meanwhile) is dropped: what it holds
    /// comes again from the newer token.
    pub async fn apply_sync(&mut self, fetched: FetchedSync) -> Result<SyncSummary, Error> {
        let FetchedSync { since, response } = fetched;
        if self.store.next_batch()? != since {
            tracing::debug!("a concurrent sync committed first; dropping this response");
            return Ok(SyncSummary::default());
        }
        crate::fault::point("after-sync-response");
        self.check_sync_token(since.as_deref(), &response.next_batch)?;
        let users = self.users_to_query(&response)?;
        let answer = if users.is_empty() {
            None
        } else {
            Some(self.query_keys_for_sync(&users).await?)
        };
        let (own_user, own_device) = match &self.session {
            Some(s) => (s.user_id.clone(), s.device_id.clone()),
            None => return Err(Error::NotLoggedIn),
        };
        let users: Vec<String> = users.into_iter().collect();
        let otk_count = if response.device_one_time_keys_count.is_empty() {
            None
        } else {
            Some(
                response
                    .device_one_time_keys_count
                    .get("signed_curve25519")
                    .copied()
                    .unwrap_or(0),
            )
        };
        let fallback_needed = response
            .device_unused_fallback_key_types
            .as_ref()
            .is_some_and(|t| !t.iter().any(|k| k == "signed_curve25519"));
        let Self {
            store,
            engine,
            transport,
            ..
        } = self;
        let clock = transport.clock();
        let result = store.transaction_seeing(|tx, changed| {
            if let Some(engine) = engine.as_mut() {
                engine
                    .refresh(tx, changed)
                    .map_err(crate::crypto::CryptoError::into_store_error)?;
            }
            let device_events = match &answer {
                Some(answer) => {
                    crate::crypto::devices::apply_keys_query_answer(
                        tx,
                        answer,
                        &users,
                        &own_user,
                        &own_device,
                    )
                    .map_err(crate::crypto::CryptoError::into_store_error)?
                    .security_events
                }
                None => 0,
            };
            let mut summary = sync::apply(tx, &response, engine.as_mut())?;
            receipts::apply(tx, &response, &own_user)?;
            summary.security_events += device_events;
            sync::remember_token(tx, since.as_deref(), &response.next_batch)?;
            crate::store::session::record_trusted_time(tx, clock.now_secs())?;
            let pending = match engine.as_mut() {
                Some(e) => e
                    .generate_keys(tx, otk_count, fallback_needed)
                    .map_err(crate::crypto::CryptoError::into_store_error)?,
                None => false,
            };
            crate::fault::point("before-sync-commit");
            Ok((summary, pending))
        });
        let (mut summary, pending) = match result {
            Ok(v) => v,
            Err(e) => {
                self.reload_engine()?;
                return Err(e.into());
            }
        };
        tracing::debug!(
            rooms = summary.rooms,
            messages = summary.messages.len(),
            "sync committed"
        );
        // The account's push rules, evaluated here on what the sync decrypted (persistent
        // mode: the notifications the phone shows without a push).
        let candidates = std::mem::take(&mut summary.push_candidates);
        summary.notifications = self.push_notifications(candidates)?;
        if pending {
            crate::fault::point("after-otk-generated");
            self.upload_keys().await?;
        }
        // A cross-signing bootstrap an interruption left half done. Only what concerns the
        // whole session stops the sync; anything else is retried by the next one.
        match self.resume_cross_signing().await {
            Ok(()) => {}
            Err(e) if e.ends_session() => return Err(e),
            Err(e) => tracing::warn!(code = e.code(), "cross-signing not finished; retried later"),
        }
        // Verification flows, once what the sync brought is committed.
        let events = std::mem::take(&mut summary.verification_events);
        match self.handle_verification_events(events).await {
            Ok(changed) => summary.verifications = changed,
            Err(e) if e.ends_session() => return Err(e),
            Err(e) => tracing::warn!(code = e.code(), "a verification step failed"),
        }
        self.unwedge().await?;
        // A send failure never stops the sync: the queue reports per message.
        let report = self.flush_outbox().await?;
        summary.outgoing.extend(self.take_outgoing_updates());
        summary.outgoing.extend(report.updates);
        summary.gaps_open =
            usize::try_from(crate::store::timeline::gap_count(self.store.conn())?).unwrap_or(0);
        summary.expired = self.purge_expired()?;
        self.name_senders(&mut summary.messages);
        self.name_senders(&mut summary.edits);
        Ok(summary)
    }

    /// Parses each sender's name again with the configured organisations, so that a lookalike
    /// of one is flagged (the store parses without them).
    pub(crate) fn name_senders(&self, events: &mut [crate::store::TimelineEvent]) {
        let known = self.config.known_organisations();
        if known.is_empty() {
            return;
        }
        for e in events {
            e.sender_name =
                crate::display_name::parse(e.sender_display_name.as_deref(), &e.sender, known);
        }
    }

    /// The rooms this device knows (nothing while the account is locked).
    pub fn rooms(&self) -> Result<Vec<crate::store::RoomSummary>, Error> {
        self.ensure_unlocked()?;
        Ok(self.store.rooms()?)
    }

    /// The members of a room, by user id, each name parsed and checked against the configured
    /// organisations.
    pub fn members(&self, room_id: &str) -> Result<Vec<crate::store::Member>, Error> {
        self.ensure_unlocked()?;
        let known = self.config.known_organisations();
        let mut members = self.store.members(room_id)?;
        for m in &mut members {
            m.name = crate::display_name::parse(m.display_name.as_deref(), &m.user_id, known);
        }
        Ok(members)
    }

    /// Refuses, before anything of it is applied, a sync answer whose `next_batch` is not a
    /// usable token (empty, or too long to send back) or goes back to a token this store
    /// already moved past — a replayed answer, which would roll the sync back. A replay is
    /// journaled. Both are [`ApiError::MalformedResponse`]: the sync loop retries from the
    /// token it has.
    fn check_sync_token(&mut self, since: Option<&str>, next_batch: &str) -> Result<(), Error> {
        let refused = |detail: &str| {
            Error::Api(ApiError::MalformedResponse {
                endpoint: "/sync",
                detail: detail.to_owned(),
            })
        };
        if next_batch.is_empty() || next_batch.len() > sync::MAX_SYNC_TOKEN_BYTES {
            return Err(refused("next_batch is empty or too long"));
        }
        if since != Some(next_batch) && sync::seen_token(self.store.conn(), next_batch)? {
            self.store.transaction(|tx| {
                crate::store::rooms::record_security_event(
                    tx,
                    "sync_replay_refused",
                    None,
                    None,
                    "the server answered /sync with an earlier token (a replayed answer): ignored",
                )
            })?;
            tracing::warn!("replayed sync answer refused");
            return Err(refused("replayed answer: next_batch is an earlier token"));
        }
        Ok(())
    }

    /// Syncs until `on_sync` breaks or a fatal error occurs. Network failures are retried with
    /// exponential back-off and jitter (1 s … 60 s); a rejected TLS peer, a revoked token, an
    /// expired account or a store failure end the loop with the error.
    pub async fn sync_loop(
        &mut self,
        timeout: Duration,
        mut on_sync: impl FnMut(&SyncSummary) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.sync_once(timeout).await {
                Ok(summary) => {
                    backoff = Duration::from_secs(1);
                    if on_sync(&summary).is_break() {
                        return Ok(());
                    }
                }
                Err(e) if e.is_network() => {
                    tracing::warn!(error = %e, ?backoff, "sync failed; retrying");
                    tokio::time::sleep(backoff + crate::api::jitter()).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Crypto-shreds this data directory: destroys the KEK in hardware, overwrites and deletes
    /// `vault.bin`, deletes the database. Consumes the client.
    pub fn wipe(self, backend: &dyn KeyVault) -> Result<(), Error> {
        let Self {
            data_dir, store, ..
        } = self;
        drop(store);
        wipe_data_dir(&data_dir, backend)
    }
}

/// The last remote-wipe nonce seen, mirrored in clear next to the vault (a command, not a
/// secret) so that a new command can be recognised when the vault does not open. When the
/// vault opens, the copy in the encrypted database is the reference.
const WIPE_NONCE_MIRROR: &str = "wipe-nonce";

fn read_wipe_nonce_mirror(data_dir: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(data_dir.join(WIPE_NONCE_MIRROR)).ok()?;
    let mut text = String::new();
    file.take(256).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Writes the mirror atomically (temporary file, fsync, rename, directory fsync).
fn write_wipe_nonce_mirror(data_dir: &Path, nonce: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = data_dir.join(format!(".{WIPE_NONCE_MIRROR}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::DataDir)?;
    file.write_all(nonce.as_bytes()).map_err(Error::DataDir)?;
    file.sync_all().map_err(Error::DataDir)?;
    drop(file);
    std::fs::rename(&tmp, data_dir.join(WIPE_NONCE_MIRROR)).map_err(Error::DataDir)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::DataDir)
}

/// Whether the configuration carries a wipe command other than the one this data directory
/// last recorded (in the mirror: used only when the vault does not open).
fn remote_wipe_pending(config: &Config, data_dir: &Path) -> bool {
    match (
        config.wipe_command_nonce(),
        read_wipe_nonce_mirror(data_dir),
    ) {
        (Some(nonce), Some(seen)) => nonce != seen,
        _ => false,
    }
}

/// Crypto-shreds a data directory without opening it (works when the vault no longer opens,
/// or the device is locked): KEK destroyed in hardware first, then `vault.bin` overwritten and
/// deleted, then the database files deleted.
///
/// Nothing is erased unless the KEK was destroyed: if it could not be, the error is returned
/// with every file in place (a retry can finish). If `vault.bin` named no KEK, the files are
/// erased and `VaultError::KekUnidentified` says a KEK may remain in the backend.
pub fn wipe_data_dir(data_dir: &Path, backend: &dyn KeyVault) -> Result<(), Error> {
    match Vault::wipe(data_dir, backend) {
        Ok(()) => {
            delete_data_files(data_dir)?;
            tracing::warn!("data directory wiped");
            Ok(())
        }
        Err(tchap_secure_hsm::VaultError::KekUnidentified) => {
            delete_data_files(data_dir)?;
            tracing::error!("data directory erased, but vault.bin named no KEK: one may remain");
            Err(Error::Vault(tchap_secure_hsm::VaultError::KekUnidentified))
        }
        Err(e) => {
            tracing::error!(error = %e, "wipe failed: the KEK survives, nothing was erased");
            Err(e.into())
        }
    }
}

/// The database files, then the wipe-nonce mirror.
fn delete_data_files(data_dir: &Path) -> Result<(), Error> {
    Store::delete_files(data_dir)?;
    match std::fs::remove_file(data_dir.join(WIPE_NONCE_MIRROR)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::DataDir(e)),
    }
}

/// A sync request ready to run without the client (see [`Client::prepare_sync`]).
#[derive(Debug)]
pub struct PendingSync {
    transport: Transport,
    token: AccessToken,
    since: Option<String>,
    timeout: Duration,
}

/// A sync response and the token it was requested from.
#[derive(Debug)]
pub struct FetchedSync {
    since: Option<String>,
    response: SyncResponse,
}

impl PendingSync {
    /// The long-poll `GET /sync`.
    pub async fn fetch(self) -> Result<FetchedSync, Error> {
        let Self {
            transport,
            token,
            since,
            timeout,
        } = self;
        let response: SyncResponse = call(&transport, "/sync", || {
            sync_request(
                &token,
                since.as_deref(),
                timeout,
                SYNC_FILTER,
                MAX_SYNC_BYTES,
            )
        })
        .await?;
        Ok(FetchedSync { since, response })
    }
}

/// A long-poll `GET /sync` from `since` with `filter` (inline JSON), presence off, the
/// request allowed 30 s more than the server's `timeout`, the answer capped at `max_body`.
/// The main sync and the notification path's to-device fetch differ only in filter, position
/// and cap.
pub(crate) fn sync_request<'a>(
    token: &'a AccessToken,
    since: Option<&str>,
    timeout: Duration,
    filter: &str,
    max_body: usize,
) -> Request<'a> {
    let mut r = Request::new(Method::GET, vec!["_matrix", "client", "v3", "sync"]);
    r.access_token = Some(token);
    r.query.push(("timeout", timeout.as_millis().to_string()));
    r.query.push(("filter", filter.to_owned()));
    r.query.push(("set_presence", "offline".to_owned()));
    if let Some(since) = since {
        r.query.push(("since", since.to_owned()));
    }
    r.timeout = Some(timeout + Duration::from_secs(30));
    r.max_body_bytes = Some(max_body);
    r
}

/// JSON escaping at most sextuples a byte (`\u00XX`); 256 bytes cover the fixed keys.
fn login_body_capacity(
    identifier: &uia::Identifier<'_>,
    password: &str,
    device_name: &str,
) -> usize {
    let who = match identifier {
        uia::Identifier::User { user } => user.len(),
        uia::Identifier::ThirdParty { medium, address } => medium.len() + address.len(),
    };
    256 + 6 * (who + password.len() + device_name.len())
}

/// The `m.login.password` body, written into a pre-sized zeroizing buffer (no reallocation, so
/// no stray copy of the password).
fn login_body(
    identifier: uia::Identifier<'_>,
    password: &str,
    device_name: &str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    use uia::Identifier;
    #[derive(serde::Serialize)]
    struct Login<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        identifier: Identifier<'a>,
        password: &'a str,
        initial_device_display_name: &'a str,
    }
    let capacity = login_body_capacity(&identifier, password, device_name);
    let body = Login {
        kind: "m.login.password",
        identifier,
        password,
        initial_device_display_name: device_name,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *out, &body).map_err(|e| Error::InvalidArgument {
        what: format!("login body: {e}"),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tchap_secure_hsm::VaultError;

    #[test]
    fn login_body_never_reallocates() {
        let password = "p\u{1}\"\\".repeat(50);
        let alice = uia::Identifier::User { user: "alice" };
        let capacity = login_body_capacity(&alice, &password, "phone");
        let body = login_body(alice, &password, "phone").unwrap();
        // The capacity is still the initial one: the buffer was never reallocated.
        assert_eq!(body.capacity(), capacity);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["password"], password);
        assert_eq!(
            v["identifier"],
            serde_json::json!({"type": "m.id.user", "user": "alice"})
        );
        assert_eq!(v["type"], "m.login.password");
        assert_eq!(v["initial_device_display_name"], "phone");
    }

    #[test]
    fn an_email_login_names_the_address_as_a_third_party_identifier() {
        let address = "j\u{e9}r\u{f4}me.\"martin\"@armees.gouv.fr".repeat(3);
        let id = uia::Identifier::ThirdParty {
            medium: "email",
            address: &address,
        };
        let capacity = login_body_capacity(&id, "pw", "phone");
        let body = login_body(id, "pw", "phone").unwrap();
        assert_eq!(body.capacity(), capacity);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["identifier"],
            serde_json::json!({"type": "m.id.thirdparty", "medium": "email", "address": address})
        );
        assert_eq!(v["password"], "pw");
    }

    #[test]
    fn an_email_address_is_canonicalised_or_refused() {
        assert_eq!(
            uia::canonical_email("  Jean.Martin@Armees.Gouv.FR ").unwrap(),
            "jean.martin@armees.gouv.fr"
        );
        for bad in [
            "",
            "   ",
            "jean.martin",
            "@armees.gouv.fr",
            "jean@",
            "jean@a@b",
            "jean martin@armees.gouv.fr",
            "jean\u{0}@armees.gouv.fr",
            "jean\n@armees.gouv.fr",
        ] {
            let e = uia::canonical_email(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{bad:?}");
        }
        let long = format!("{}@gouv.fr", "a".repeat(246));
        assert_eq!(long.len(), 254);
        assert!(uia::canonical_email(&long).is_ok());
        assert!(uia::canonical_email(&format!("a{long}")).is_err());
    }

    /// A backend that cannot destroy a KEK.
    struct DestroyFails(tchap_secure_hsm::soft::SoftVault);

    impl KeyVault for DestroyFails {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn generate_kek(&self, id: &tchap_secure_hsm::KekId) -> Result<(), VaultError> {
            self.0.generate_kek(id)
        }
        fn wrap(
            &self,
            id: &tchap_secure_hsm::KekId,
            aad: &[u8],
            plaintext: &[u8],
        ) -> Result<Vec<u8>, VaultError> {
            self.0.wrap(id, aad, plaintext)
        }
        fn unwrap(
            &self,
            id: &tchap_secure_hsm::KekId,
            aad: &[u8],
            wrapped: &[u8],
        ) -> Result<tchap_secure_hsm::SecretBytes, VaultError> {
            self.0.unwrap(id, aad, wrapped)
        }
        fn destroy_kek(&self, _id: &tchap_secure_hsm::KekId) -> Result<(), VaultError> {
            Err(VaultError::Pkcs11 {
                op: "C_DestroyObject",
                detail: "injected".into(),
            })
        }
    }

    /// Issue 15 item 2: the data directory is erased only once the KEK is destroyed.
    #[test]
    fn a_wipe_whose_kek_survives_erases_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DestroyFails(tchap_secure_hsm::soft::SoftVault::new().unwrap());
        let binding = VaultBinding {
            server_name: "secure.tchap.test".into(),
        };
        let vault = Vault::create(dir.path(), &backend, &binding).unwrap();
        drop(Store::open(dir.path(), &vault.database_key()).unwrap());
        let files = |dir: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let before = files(dir.path());
        assert!(before.len() >= 2, "{before:?}");
        let error = wipe_data_dir(dir.path(), &backend).unwrap_err();
        assert_eq!(error.code(), "pkcs11", "{error:?}");
        assert_eq!(files(dir.path()), before);
        Store::open(dir.path(), &vault.database_key()).expect("nothing was erased");

        // vault.bin naming no KEK: everything goes, and the error says a KEK may remain.
        std::fs::write(dir.path().join(tchap_secure_hsm::VAULT_FILE), b"garbage").unwrap();
        let error = wipe_data_dir(dir.path(), &backend.0).unwrap_err();
        assert_eq!(error.code(), "kek_unidentified", "{error:?}");
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }
}
