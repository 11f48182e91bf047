//! Blocking HTTPS helpers for the testbed itself (registering users, admin calls).
//!
//! Not product code: the product has its own pinned transport. These helpers trust only the
//! run's root CA (rustls + ring, webpki verification, no system roots, no proxy) and block on a
//! current-thread tokio runtime that runs on a fresh thread, so they work from plain `#[test]`s
//! and from inside `#[tokio::test]`s alike (blocking inside a runtime would panic otherwise).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Run `future` to completion on a new current-thread runtime on a new thread.
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a current-thread tokio runtime")
                .block_on(future)
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A rustls client configuration (ring provider, TLS 1.3) whose only trust anchors are the
/// certificates in `roots_pem`, verified by rustls's standard webpki verifier.
pub(crate) fn client_config(roots_pem: &str) -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots
            .add(cert.expect("parse a root certificate PEM"))
            .expect("add a root certificate");
    }
    assert!(!roots.is_empty(), "no certificate in the roots PEM");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTP response: status, `Content-Type` (if any) and raw body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// One HTTPS request to `https://localhost:{port}{path}` (resolved to 127.0.0.1 without DNS);
/// `body` is `(content type, bytes)`.
pub(crate) fn request(
    roots_pem: &str,
    port: u16,
    method: &str,
    path: &str,
    access_token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Response, String> {
    let tls = client_config(roots_pem);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid HTTP method");
    let url = format!("https://localhost:{port}{path}");
    let body = body.map(|(content_type, bytes)| (content_type.to_owned(), bytes));
    let access_token = access_token.map(str::to_owned);
    block_on(async move {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("build reqwest client: {e}"))?;
        let mut request = client.request(method, &url);
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e:?}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{url}: read body: {e:?}"))?
            .to_vec();
        Ok(Response {
            status,
            content_type,
            body,
        })
    })
}
