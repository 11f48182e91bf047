//! Testbed for Tchap Secure: real components only (DESIGN §9).
//!
//! - [`pki`]: a per-run PKI generated with rcgen (root CA → intermediate → `localhost` leaf),
//!   plus the hostile certificates the pinning tests need.
//! - [`tls_server`]: minimal real TLS peers on loopback (rustls TLS 1.3, OpenSSL TLS 1.2-only,
//!   and a TCP black hole) for transport tests.
//! - [`synapse`]: one real Synapse homeserver per test process, serving TLS itself.
//! - [`content_scanner`]: matrix-content-scanner + ClamAV behind an nginx TLS front (issue 8).
//! - [`sydent`]: a real Matrix identity server (Sydent 2.6.1) behind a rustls TLS front with the
//!   shared Synapse's certificate: OpenID registration, hashed v2 lookups, e-mails bound by tests.
//! - [`softhsm`]: per-run SoftHSM2 tokens.
//! - [`ports`]: free loopback ports.
//! - [`cli_member`]: a cabinet member driven through the real `tchap-secure` binary.
//!
//! Every child process the testbed starts (Synapse, `openssl s_server`) is spawned from one
//! long-lived thread with `PR_SET_PDEATHSIG`, so it dies with the test process even when the
//! test binary is killed (see `child.rs`).

pub mod at_rest;
pub mod bench_setup;
mod child;
pub mod cli_member;
pub mod content_scanner;
pub mod harness;
pub mod hostile_proxy;
mod http;
pub mod pki;
pub mod ports;
pub mod push_gateway;
mod scratch;
pub mod smtp_sink;
pub mod softhsm;
pub mod sydent;
pub mod synapse;
pub mod tls_server;
