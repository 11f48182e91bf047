//! Typed transport errors. A rejected TLS peer is kept apart from every other network failure,
//! and each rejection says exactly why, so that the UI, the CLI's exit status and an auditor
//! reading a log all see the same reason.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use super::pinning::PinRejection;
use crate::config::SpkiPin;

/// Why the TLS peer was rejected. Every variant is a fault of the peer (or of an attacker in the
/// path), never of the caller.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRejection {
    /// The presented chain does not lead to one of the configured trust anchors.
    #[error("certificate not issued by a configured trust anchor")]
    UntrustedCertificate,
    /// The path is valid but none of its certificates carries a pinned key.
    #[error("no certificate of the verified path matches a pin (path pins: {presented:?})")]
    PinMismatch {
        /// The pins of the verified path, leaf first.
        presented: Vec<SpkiPin>,
    },
    /// The configured pins have expired (fail closed).
    #[error("the configured SPKI pins expired at {expired_at}")]
    PinsExpired {
        /// When they expired (RFC 3339).
        expired_at: String,
    },
    /// The certificate is not valid for the host name we connected to.
    #[error("certificate not valid for the server's host name")]
    HostnameMismatch,
    /// A certificate of the path has expired.
    #[error("certificate expired")]
    CertificateExpired,
    /// A certificate of the path is not valid yet.
    #[error("certificate not valid yet")]
    CertificateNotYetValid,
    /// The peer does not speak TLS 1.3.
    #[error("the server does not offer TLS 1.3")]
    ProtocolVersion,
    /// Any other certificate problem (bad signature, bad encoding, wrong usage).
    #[error("certificate rejected: {detail}")]
    BadCertificate {
        /// rustls's description.
        detail: String,
    },
    /// Any other handshake failure caused by the peer.
    #[error("TLS handshake failed: {detail}")]
    Handshake {
        /// rustls's description.
        detail: String,
    },
}

impl TlsRejection {
    /// A stable snake_case code for this rejection (CLI JSON output, JNI error codes).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UntrustedCertificate => "untrusted_certificate",
            Self::PinMismatch { .. } => "pin_mismatch",
            Self::PinsExpired { .. } => "pins_expired",
            Self::HostnameMismatch => "hostname_mismatch",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotYetValid => "certificate_not_yet_valid",
            Self::ProtocolVersion => "protocol_version",
            Self::BadCertificate { .. } => "bad_certificate",
            Self::Handshake { .. } => "handshake",
        }
    }

    /// Classifies a rustls error.
    pub fn from_rustls(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::InvalidCertificate(cert) => Self::from_certificate_error(cert),
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
            | rustls::Error::PeerIncompatible(_) => Self::ProtocolVersion,
            other => Self::Handshake {
                detail: other.to_string(),
            },
        }
    }

    /// The rejection a pin check gave (at a handshake, or before a request).
    pub(crate) fn from_pin_rejection(rejection: PinRejection) -> Self {
        match rejection {
            PinRejection::PinMismatch { presented } => Self::PinMismatch { presented },
            PinRejection::PinsExpired { expired_at } => Self::PinsExpired { expired_at },
        }
    }

    fn from_certificate_error(error: &CertificateError) -> Self {
        match error {
            CertificateError::UnknownIssuer => Self::UntrustedCertificate,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Self::CertificateExpired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Self::CertificateNotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Self::HostnameMismatch
            }
            CertificateError::Other(other) => match other.0.downcast_ref::<PinRejection>() {
                Some(rejection) => Self::from_pin_rejection(rejection.clone()),
                None => Self::BadCertificate {
                    detail: other.to_string(),
                },
            },
            other => Self::BadCertificate {
                detail: format!("{other:?}"),
            },
        }
    }
}

/// A failure of the transport: TLS, network, HTTP framing or limits.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS peer was rejected.
    #[error("TLS peer rejected: {0}")]
    Tls(#[from] TlsRejection),
    /// The connection could not be established (refused, unreachable, DNS).
    #[error("could not connect: {detail}")]
    Connect {
        /// What failed.
        detail: String,
    },
    /// A connect, read or total timeout elapsed.
    #[error("timed out")]
    Timeout,
    /// The server answered with a redirect; redirects are never followed.
    #[error("the server answered with a redirect (HTTP {status}); redirects are refused")]
    Redirect {
        /// HTTP status.
        status: u16,
    },
    /// The response body is larger than the cap for this endpoint.
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The cap.
        limit: usize,
    },
    /// Any other I/O or protocol failure while talking to the server.
    #[error("network failure: {detail}")]
    Network {
        /// What failed.
        detail: String,
    },
}

impl TransportError {
    /// A stable snake_case code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Tls(r) => r.code(),
            Self::Connect { .. } => "connect",
            Self::Timeout => "timeout",
            Self::Redirect { .. } => "redirect",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::Network { .. } => "network",
        }
    }

    /// Classifies a reqwest error, looking through its source chain for the rustls error or an
    /// I/O error of a known kind.
    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        if let Some(tls) = find_rustls_error(&error) {
            return Self::Tls(TlsRejection::from_rustls(tls));
        }
        if error.is_timeout() || has_io_kind(&error, std::io::ErrorKind::TimedOut) {
            return Self::Timeout;
        }
        if error.is_connect() {
            return Self::Connect {
                detail: chain_to_string(&error),
            };
        }
        Self::Network {
            detail: chain_to_string(&error),
        }
    }
}

/// Walks an error's source chain, also looking inside `io::Error`s (whose `source()` skips the
/// wrapped error), for a `rustls::Error`.
fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = find_rustls_error(inner)
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn has_io_kind(error: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == kind
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn chain_to_string(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        out.push_str(": ");
        out.push_str(&e.to_string());
        current = e.source();
    }
    out
}
