//! The certificate verifier: only the configured trust anchors, SPKI pins checked against the
//! *verified* path, fail closed.
//!
//! Why a verifier of our own rather than rustls's `WebPkiServerVerifier` plus a check afterwards:
//! the pins must be matched against the certificates of the path webpki actually verified
//! (`verify_for_usage`'s path callback), never against the chain as the peer presented it. A
//! peer that appends our pinned certificate to a chain of its own (the CVE-2016-2402 class)
//! presents the pin but cannot make it part of a verified path. rustls only lets the handshake
//! proceed with a `ServerCertVerified`, which this verifier returns only after the anchor, the
//! path, the pins, the pin expiry and the host name all passed: it is the proof token that
//! gates every byte of application data.
//!
//! Rejections are returned as rustls `CertificateError` variants so that the right TLS alert is
//! sent; the pin-specific ones travel as `CertificateError::Other` holding a [`PinRejection`], and
//! [`super::error::TlsRejection::from_rustls`] turns all of them back into typed errors.

use std::cell::Cell;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use time::OffsetDateTime;

use super::clock::TrustedClock;
use crate::config::{Config, SpkiPin};

/// Why the pin policy refused an otherwise valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinRejection {
    /// No certificate of the verified path has a pinned key.
    #[error("no certificate of the verified path matches a configured SPKI pin")]
    PinMismatch {
        /// The pins of the verified path (leaf first), for the administrator's diagnosis.
        presented: Vec<SpkiPin>,
    },
    /// The configured pins are past `pins_expire_at`: every connection fails.
    #[error("the configured SPKI pins expired at {expired_at}")]
    PinsExpired {
        /// RFC 3339 form of the expiry.
        expired_at: String,
    },
}

/// The verifier installed in every TLS connection the client makes.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    pins: Vec<SpkiPin>,
    pins_expire_at: Option<OffsetDateTime>,
    algorithms: WebPkiSupportedAlgorithms,
    clock: TrustedClock,
}

impl PinnedVerifier {
    pub(crate) fn new(
        config: &Config,
        provider: &CryptoProvider,
        clock: TrustedClock,
    ) -> Result<Self, webpki::Error> {
        let anchors = config
            .trust_anchors()
            .iter()
            .map(|der| webpki::anchor_from_trusted_cert(der).map(|a| a.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            anchors,
            pins: config.pins_that_count(),
            pins_expire_at: config.pins_expire_at(),
            algorithms: provider.signature_verification_algorithms,
            clock,
        })
    }
}

/// `Err(PinsExpired)` once `now` (seconds since the epoch, from the [`TrustedClock`]) reached
/// `pins_expire_at`; checked at every handshake and before every request.
pub(crate) fn check_pin_expiry(
    pins_expire_at: Option<OffsetDateTime>,
    now: UnixTime,
) -> Result<(), PinRejection> {
    let Some(expiry) = pins_expire_at else {
        return Ok(());
    };
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now_secs >= expiry.unix_timestamp() {
        return Err(PinRejection::PinsExpired {
            expired_at: expiry
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| expiry.unix_timestamp().to_string()),
        });
    }
    Ok(())
}

/// The pins of every certificate of a verified path: leaf, intermediates, anchor.
fn path_pins(path: &webpki::VerifiedPath<'_>) -> Vec<SpkiPin> {
    let mut pins = vec![SpkiPin::of_spki_der(
        path.end_entity().subject_public_key_info().as_ref(),
    )];
    pins.extend(
        path.intermediate_certificates()
            .map(|c| SpkiPin::of_spki_der(c.subject_public_key_info().as_ref())),
    );
    pins.push(SpkiPin::of_spki_der(&wrap_der_sequence(
        path.anchor().subject_public_key_info.as_ref(),
    )));
    pins
}

/// Puts back the outer `SEQUENCE` header that `TrustAnchor::subject_public_key_info` omits.
fn wrap_der_sequence(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(0x30);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The SPKI pin a trust anchor's certificate presents in a verified path (as [`path_pins`]
/// computes it for the anchor).
pub(crate) fn anchor_pin(der: &CertificateDer<'_>) -> Result<SpkiPin, webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(der)?;
    Ok(SpkiPin::of_spki_der(&wrap_der_sequence(
        anchor.subject_public_key_info.as_ref(),
    )))
}

/// The SPKI pin of a DER certificate (what `tchap-secure pin` prints).
pub fn spki_pin_of_certificate(der: &CertificateDer<'_>) -> Result<SpkiPin, webpki::Error> {
    let cert = webpki::EndEntityCert::try_from(der)?;
    Ok(SpkiPin::of_spki_der(
        cert.subject_public_key_info().as_ref(),
    ))
}

fn other(rejection: PinRejection) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(rejection))))
}

fn map_webpki(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let e = match error {
        E::UnknownIssuer | E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => {
            CertificateError::UnknownIssuer
        }
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertNotValidForName(_) => CertificateError::NotValidForName,
        E::CertRevoked => CertificateError::Revoked,
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(e)
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Pins and certificates are judged at the trusted time (the later of the device clock
        // and the latest time seen), not at rustls' reading of the device clock: a clock set
        // back revives neither.
        let now = self.clock.now();
        // Expired pins fail closed before anything else is looked at.
        check_pin_expiry(self.pins_expire_at, now).map_err(other)?;

        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(map_webpki)?;
        // Set when webpki found a path to one of our anchors whose certificates carry no pin.
        let unpinned_path: Cell<Option<Vec<SpkiPin>>> = Cell::new(None);
        let pin_check = |path: &webpki::VerifiedPath<'_>| {
            let presented = path_pins(path);
            if presented.iter().any(|p| self.pins.contains(p)) {
                Ok(())
            } else {
                unpinned_path.set(Some(presented));
                // webpki needs an error to try other paths; the real reason is kept above.
                Err(webpki::Error::UnknownIssuer)
            }
        };
        let verified = cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&pin_check),
        );
        if let Err(e) = verified {
            return Err(match unpinned_path.take() {
                Some(presented) => other(PinRejection::PinMismatch { presented }),
                None => map_webpki(e),
            });
        }
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(map_webpki)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client config only enables TLS 1.3; a TLS 1.2 signature is never acceptable.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject as _;

    #[test]
    fn pin_of_the_unit_test_anchor_matches_openssl() {
        // testdata/anchor.pin was computed with:
        // openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
        let pem = include_str!("../../testdata/anchor.pem");
        let expected = include_str!("../../testdata/anchor.pin").trim();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(spki_pin_of_certificate(&der).unwrap().to_base64(), expected);

        // The anchor form (SEQUENCE header stripped by webpki) re-wrapped gives the same pin.
        let anchor = webpki::anchor_from_trusted_cert(&der).unwrap();
        let rewrapped = wrap_der_sequence(anchor.subject_public_key_info.as_ref());
        assert_eq!(SpkiPin::of_spki_der(&rewrapped).to_base64(), expected);
    }

    #[test]
    fn der_sequence_lengths() {
        assert_eq!(wrap_der_sequence(&[1, 2]), vec![0x30, 2, 1, 2]);
        let long = vec![0u8; 200];
        assert_eq!(&wrap_der_sequence(&long)[..3], &[0x30, 0x81, 200]);
        let longer = vec![0u8; 300];
        assert_eq!(&wrap_der_sequence(&longer)[..4], &[0x30, 0x82, 0x01, 0x2c]);
        // The short form ends at 127; 128 takes the long form (found by mutation testing).
        assert_eq!(&wrap_der_sequence(&[0u8; 127])[..2], &[0x30, 0x7f]);
        assert_eq!(&wrap_der_sequence(&[0u8; 128])[..3], &[0x30, 0x81, 0x80]);
        assert_eq!(
            &wrap_der_sequence(&vec![0u8; 65_536])[..5],
            &[0x30, 0x83, 0x01, 0x00, 0x00]
        );
        assert_eq!(wrap_der_sequence(&[]), vec![0x30, 0]);
    }
}
