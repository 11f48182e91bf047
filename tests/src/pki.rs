//! A per-run PKI generated with rcgen, and the hostile certificates pinning tests need.
//!
//! ```text
//! root CA (self-signed, CA:true)            ← trust anchor given to the product
//!   └── intermediate CA (CA:true, pathlen 0)
//!         ├── server leaf  localhost + 127.0.0.1   ← pinned (server_pin)
//!         ├── expired leaf (same key as server)
//!         ├── wrong-host leaf "other.example" (same key as server)
//!         └── unpinned leaf (fresh key)
//! foreign CA (unrelated, self-signed) └── foreign leaf for localhost
//! backup key pair (no certificate)          ← backup_pin
//! ```
//!
//! All keys are ECDSA P-256 (`PKCS_ECDSA_P256_SHA256`). Good certificates are valid from
//! now − 1 day to now + 30 days. Serial numbers are random (rcgen would otherwise derive them
//! from the subject key, giving the server, expired and wrong-host leaves the same serial).
//!
//! Pins are base64 (standard, padded) SHA-256 of the DER SubjectPublicKeyInfo. The accessor
//! methods compute them from rcgen's key pairs; [`spki_pin_of_pem`] computes them from a
//! certificate with the OpenSSL CLI, a second implementation the smoke test compares with.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

/// A certificate chain and its leaf's private key, as a TLS server presents them.
#[derive(Clone, Debug)]
pub struct CertKey {
    /// The chain the server sends, leaf first, then any other certificates, PEM.
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
}

impl CertKey {
    /// The leaf certificate alone, PEM.
    pub fn leaf_pem(&self) -> String {
        pem_of_der(&self.leaf_der)
    }
}

/// The infrastructure PKI of one test run.
pub struct Pki {
    /// Our infrastructure root CA (self-signed, CA:true), PEM.
    pub root_ca_pem: String,
    /// Our intermediate CA, signed by the root, PEM.
    pub intermediate_pem: String,
    /// Leaf for DNS `localhost` and IP `127.0.0.1`, issued by the intermediate;
    /// chain = leaf + intermediate.
    pub server: CertKey,
    /// SPKI pin of a spare key pair that no server uses (the "backup pin").
    pub backup_pin: String,
    root: Issuer<'static, KeyPair>,
    intermediate: Issuer<'static, KeyPair>,
    server_key: KeyPair,
    backup_key: KeyPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("root_pin", &self.root_pin())
            .field("intermediate_pin", &self.intermediate_pin())
            .field("server_pin", &self.server_pin())
            .field("backup_pin", &self.backup_pin)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Generate a fresh root, intermediate, server leaf and backup key.
    pub fn generate() -> Pki {
        let root_key = new_key();
        let root_params = ca_params("Tchap Secure Test Root CA", BasicConstraints::Unconstrained);
        let root_ca_pem = root_params
            .self_signed(&root_key)
            .expect("self-sign the root CA")
            .pem();
        let root = Issuer::new(root_params, root_key);

        let intermediate_key = new_key();
        let intermediate_params = ca_params(
            "Tchap Secure Test Intermediate CA",
            BasicConstraints::Constrained(0),
        );
        let intermediate_pem = intermediate_params
            .signed_by(&intermediate_key, &root)
            .expect("sign the intermediate CA")
            .pem();
        let intermediate = Issuer::new(intermediate_params, intermediate_key);

        let server_key = new_key();
        let server = issue_leaf(
            &server_key,
            &intermediate,
            &["localhost", "127.0.0.1"],
            good_validity(),
            &[&intermediate_pem],
        );

        let backup_key = new_key();
        let backup_pin = pin_of_spki(&backup_key.subject_public_key_info());

        Pki {
            root_ca_pem,
            intermediate_pem,
            server,
            backup_pin,
            root,
            intermediate,
            server_key,
            backup_key,
        }
    }

    /// Pin of the root CA.
    pub fn root_pin(&self) -> String {
        pin_of_spki(&self.root.key().subject_public_key_info())
    }

    /// Pin of the intermediate CA.
    pub fn intermediate_pin(&self) -> String {
        pin_of_spki(&self.intermediate.key().subject_public_key_info())
    }

    /// Pin of the server leaf (shared by `expired_server` and `wrong_host_server`).
    pub fn server_pin(&self) -> String {
        pin_of_spki(&self.server_key.subject_public_key_info())
    }

    /// The backup key pair's public key, PEM (SubjectPublicKeyInfo); its pin is `backup_pin`.
    pub fn backup_public_key_pem(&self) -> String {
        self.backup_key.public_key_pem()
    }

    /// A rustls client configuration (ring, TLS 1.3) trusting only our root, with rustls's
    /// standard webpki verification and no pinning: the reference for what a correct chain
    /// validator accepts, independent of the product.
    pub fn plain_client_config(&self) -> rustls::ClientConfig {
        crate::http::client_config(&self.root_ca_pem)
    }

    /// Leaf for `localhost`/`127.0.0.1` from an unrelated CA; chain = leaf + foreign CA.
    pub fn foreign_ca_server(&self) -> CertKey {
        let (foreign, foreign_pem) = foreign_ca();
        issue_leaf(
            &new_key(),
            &foreign,
            &["localhost", "127.0.0.1"],
            good_validity(),
            &[&foreign_pem],
        )
    }

    /// Issued by our intermediate with the pinned server key, for `localhost`, but expired
    /// (valid from now − 60 days to now − 1 day); chain = leaf + intermediate.
    pub fn expired_server(&self) -> CertKey {
        let now = OffsetDateTime::now_utc();
        issue_leaf(
            &self.server_key,
            &self.intermediate,
            &["localhost", "127.0.0.1"],
            (now - Duration::days(60), now - Duration::days(1)),
            &[&self.intermediate_pem],
        )
    }

    /// Issued by our intermediate with the pinned server key, but its only SAN is
    /// `other.example`; chain = leaf + intermediate.
    pub fn wrong_host_server(&self) -> CertKey {
        issue_leaf(
            &self.server_key,
            &self.intermediate,
            &["other.example"],
            good_validity(),
            &[&self.intermediate_pem],
        )
    }

    /// Issued by our intermediate for `localhost`/`127.0.0.1` with a fresh key that no pin
    /// names; chain = leaf + intermediate. Each call makes a new key.
    pub fn unpinned_server(&self) -> CertKey {
        issue_leaf(
            &new_key(),
            &self.intermediate,
            &["localhost", "127.0.0.1"],
            good_validity(),
            &[&self.intermediate_pem],
        )
    }

    /// Chain = unpinned leaf (fresh key, issued by our intermediate) + intermediate + the
    /// pinned server leaf + root. The key is the unpinned leaf's: a server presenting this
    /// chain holds no pinned key. Only a client that matches pins against the chain *as
    /// presented* instead of the verified path accepts it.
    pub fn unpinned_with_pinned_appended(&self) -> CertKey {
        let mut cert = self.unpinned_server();
        push_pem(&mut cert.chain_pem, &self.server.leaf_pem());
        push_pem(&mut cert.chain_pem, &self.root_ca_pem);
        cert
    }

    /// Chain = foreign leaf for `localhost` + foreign CA + our pinned server leaf + our
    /// intermediate + our root (CVE-2016-2402 class: pinned certificates appended to an
    /// attacker's chain). The key is the foreign leaf's.
    pub fn foreign_chain_with_pinned_appended(&self) -> CertKey {
        let mut cert = self.foreign_ca_server();
        push_pem(&mut cert.chain_pem, &self.server.leaf_pem());
        push_pem(&mut cert.chain_pem, &self.intermediate_pem);
        push_pem(&mut cert.chain_pem, &self.root_ca_pem);
        cert
    }
}

/// base64 (standard, padded) SHA-256 of the DER SubjectPublicKeyInfo of the first
/// certificate in `pem`.
///
/// Independent of the product and of rcgen: the SubjectPublicKeyInfo is extracted by the
/// OpenSSL CLI (`openssl x509 -pubkey -noout | openssl pkey -pubin -outform der`), only the
/// SHA-256 and base64 are computed here (ring, base64). Panics if OpenSSL rejects the input.
pub fn spki_pin_of_pem(pem: &str) -> String {
    let public_key_pem = openssl(&["x509", "-pubkey", "-noout"], pem.as_bytes());
    let spki_der = openssl(
        &["pkey", "-pubin", "-outform", "der"],
        public_key_pem.as_slice(),
    );
    pin_of_spki(&spki_der)
}

/// base64 (standard, padded) SHA-256 of a DER SubjectPublicKeyInfo.
pub fn pin_of_spki(spki_der: &[u8]) -> String {
    STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, spki_der))
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the openssl CLI (is it installed?)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // Write from another thread so a large output cannot deadlock against a full stdin pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for openssl");
    writer
        .join()
        .expect("stdin writer thread")
        .expect("write openssl stdin");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate an ECDSA P-256 key")
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random for a serial number");
    // Positive and 16 bytes long once DER-encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn good_validity() -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::days(1), now + Duration::days(30))
}

fn ca_params(common_name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "FR");
    dn.push(DnType::OrganizationName, "Tchap Secure Testbed");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    (params.not_before, params.not_after) = good_validity();
    params
}

/// A self-signed CA unrelated to ours (distinct names, so path building cannot confuse them).
fn foreign_ca() -> (Issuer<'static, KeyPair>, String) {
    let key = new_key();
    let mut params = ca_params("Foreign Test CA", BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "ZZ");
    dn.push(DnType::OrganizationName, "Unrelated Foreign Authority");
    dn.push(DnType::CommonName, "Foreign Test CA");
    params.distinguished_name = dn;
    let pem = params
        .self_signed(&key)
        .expect("self-sign the foreign CA")
        .pem();
    (Issuer::new(params, key), pem)
}

fn issue_leaf(
    key: &KeyPair,
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    rest_of_chain: &[&str],
) -> CertKey {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("valid subject alternative names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tchap Secure Testbed");
    dn.push(DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(key, issuer).expect("sign a leaf");
    let mut chain_pem = cert.pem();
    for pem in rest_of_chain {
        push_pem(&mut chain_pem, pem);
    }
    CertKey {
        chain_pem,
        key_pem: key.serialize_pem(),
        leaf_der: cert.der().to_vec(),
    }
}

/// Append a PEM block, keeping blocks on their own lines.
fn push_pem(chain: &mut String, pem: &str) {
    if !chain.is_empty() && !chain.ends_with('\n') {
        chain.push('\n');
    }
    chain.push_str(pem);
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
}

fn pem_of_der(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
