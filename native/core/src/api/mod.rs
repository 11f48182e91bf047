//! The Matrix client-server API: our own typed endpoints over the pinned transport.

pub(crate) mod call;
mod error;
pub mod types;

pub(crate) use call::{call, decode, jitter};
pub use error::ApiError;
