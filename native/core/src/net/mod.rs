//! Network: pinned TLS to the secure infrastructure only (DESIGN §3).

mod error;
pub mod pinning;
mod transport;

pub use error::{TlsRejection, TransportError};
pub use pinning::{PinRejection, spki_pin_of_certificate};
pub use transport::{Limits, Request, Response, StreamBody, StreamingResponse, Transport};
