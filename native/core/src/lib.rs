//! Tchap Secure client core: configuration, pinned transport, SQLCipher store and the Matrix
//! session, with no JNI and no CLI code (DESIGN §1).
//!
//! - [`config`]: the MDM/CLI configuration, strictly validated.
//! - [`net`]: rustls + ring, TLS 1.3 only, own trust anchors, SPKI pins on the verified path.
//! - [`api`]: our own small Matrix client-server types and typed errors.
//! - [`store`]: one SQLCipher database keyed from the hardware-bound vault.
//! - [`client`]: login, session restore, sync, rooms.

#![forbid(unsafe_code)]

pub mod api;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_fixtures;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;
pub mod client;
pub mod config;
pub mod crypto;
pub mod display_name;
pub mod error;
mod fault;
// For the fuzz targets (feature `fuzzing`) and this crate's unit tests only; see its docs.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_api;
pub mod media;
pub mod net;
#[cfg(test)]
mod proptests;
pub mod push_rules;
pub mod secret;
pub mod store;

pub use client::cross_signing::CrossSigningStatus;
pub use client::notification::{Notification, NotificationKind};
pub use client::{
    Client, FetchedGapPages, FetchedSync, History, OutgoingUpdate, PendingGapPages, PendingSync,
    SessionInfo, SyncSummary, wipe_data_dir,
};
pub use config::{Config, ConfigError, ConfigWarning, SpkiPin};
pub use error::Error;
pub use store::identity::IdentityState;
