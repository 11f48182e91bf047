//! Network: pinned TLS to the secure infrastructure only (DESIGN §3).

pub mod clock;
mod error;
pub mod pinning;
mod transport;

pub use clock::TrustedClock;
pub use error::{TlsRejection, TransportError};
pub use pinning::{PinRejection, spki_pin_of_certificate};
pub use transport::{
    Limits, MAX_POOL_AGE, Request, Response, StreamBody, StreamingResponse, Transport,
};
