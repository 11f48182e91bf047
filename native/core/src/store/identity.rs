//! Cross-signing state (issue 16): our own cross-signing keys (sealed) and how far their
//! publication went, and every other user's identity — the master key pinned at first sight.
//!
//! Like the rest of the crypto state, every function takes the connection of the transaction
//! it belongs to: an identity is pinned in the same transaction as the devices it vouches for.

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use super::StoreError;
use super::crypto::now_ms;

/// How far the publication of our own cross-signing keys went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publication {
    /// Generated and stored; not known to be on the server (a crash or a lost answer may
    /// have left them there: the next attempt asks the server first).
    Pending,
    /// `/keys/device_signing/upload` acknowledged.
    Published,
    /// Our device's signature by the self-signing key acknowledged too.
    DeviceSigned,
}

impl Publication {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Published => "published",
            Self::DeviceSigned => "device_signed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "device_signed" => Self::DeviceSigned,
            "published" => Self::Published,
            // Anything else: ask the server again (the safe state).
            _ => Self::Pending,
        }
    }
}

/// Our own cross-signing keys as stored.
pub(crate) struct OwnRow {
    /// The three private keys, sealed with a key derived from the pickle key.
    pub(crate) sealed: String,
    /// Public master key (unpadded base64).
    pub(crate) master: String,
    /// Public self-signing key.
    pub(crate) self_signing: String,
    /// Public user-signing key.
    pub(crate) user_signing: String,
    /// How far the publication went.
    pub(crate) state: Publication,
}

/// Which stored keys: the identity in use, or the one a reset is trying to publish in its place
/// (kept apart so that the keys in use are never lost to a reset the server refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The identity in use.
    Current = 1,
    /// A replacement being published (a reset).
    Replacement = 2,
}

pub(crate) fn load_own(conn: &Connection, slot: Slot) -> Result<Option<OwnRow>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT sealed, master, self_signing, user_signing, state FROM own_cross_signing WHERE id = ?1",
        params![slot as i64],
        |r| {
            Ok(OwnRow {
                sealed: r.get(0)?,
                master: r.get(1)?,
                self_signing: r.get(2)?,
                user_signing: r.get(3)?,
                state: Publication::parse(&r.get::<_, String>(4)?),
            })
        },
    )
    .optional()?)
}

pub(crate) fn save_own(conn: &Connection, slot: Slot, row: &OwnRow) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT INTO own_cross_signing (id, sealed, master, self_signing, user_signing, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET sealed = excluded.sealed, master = excluded.master,
             self_signing = excluded.self_signing, user_signing = excluded.user_signing,
             state = excluded.state",
        params![
            slot as i64,
            row.sealed,
            row.master,
            row.self_signing,
            row.user_signing,
            row.state.as_str()
        ],
    )?;
    Ok(())
}

pub(crate) fn set_own_state(conn: &Connection, state: Publication) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE own_cross_signing SET state = ?1 WHERE id = 1",
        params![state.as_str()],
    )?;
    Ok(())
}

/// Forgets the keys of `slot`: keys generated but never published (another device of ours
/// published an identity first; a reset the server did not take).
pub(crate) fn delete_own(conn: &Connection, slot: Slot) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM own_cross_signing WHERE id = ?1",
        params![slot as i64],
    )?;
    Ok(())
}

/// The replacement is on the server: it becomes the identity in use (`published`), the old
/// keys are erased.
pub(crate) fn promote_replacement(conn: &Connection) -> Result<(), StoreError> {
    super::exec(conn, "DELETE FROM own_cross_signing WHERE id = 1", [])?;
    super::exec(
        conn,
        "UPDATE own_cross_signing SET id = 1, state = 'published' WHERE id = 2",
        [],
    )?;
    Ok(())
}

/// Trust in a user's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityState {
    /// The master key was pinned the first time we saw it.
    Pinned,
    /// Verified interactively (SAS or QR), or our own keys.
    Verified,
    /// The server now shows another master key: no room keys until verified again.
    Changed,
}

impl IdentityState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Verified => "verified",
            Self::Changed => "changed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pinned" => Self::Pinned,
            "verified" => Self::Verified,
            // Anything unexpected is the safe state.
            _ => Self::Changed,
        }
    }
}

/// A user's cross-signing identity, as pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityRecord {
    /// The user.
    pub user_id: String,
    /// The pinned master key (unpadded base64).
    pub master: String,
    /// The self-signing key the pinned master key signed (the latest seen), if any.
    pub self_signing: Option<String>,
    /// Trust in the identity.
    pub state: IdentityState,
    /// The other master key the server shows, while `state` is `changed`.
    pub changed_master: Option<String>,
}

pub(crate) fn identity_of(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<IdentityRecord>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT user_id, master, self_signing, state, changed_master FROM identities WHERE user_id = ?1",
        params![user_id],
        |r| {
            Ok(IdentityRecord {
                user_id: r.get(0)?,
                master: r.get(1)?,
                self_signing: r.get(2)?,
                state: IdentityState::parse(&r.get::<_, String>(3)?),
                changed_master: r.get(4)?,
            })
        },
    )
    .optional()?)
}

pub(crate) fn save_identity(conn: &Connection, i: &IdentityRecord) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT INTO identities (user_id, master, self_signing, state, changed_master, first_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(user_id) DO UPDATE SET master = excluded.master,
             self_signing = excluded.self_signing, state = excluded.state,
             changed_master = excluded.changed_master",
        params![
            i.user_id,
            i.master,
            i.self_signing,
            i.state.as_str(),
            i.changed_master,
            now_ms()
        ],
    )?;
    Ok(())
}
