//! The testbed's push gateway (issue 17): a real HTTPS server on loopback speaking the Push
//! Gateway API (`POST /_matrix/push/v1/notify`), presenting a certificate of the testbed PKI,
//! to which Synapse's HTTP pushers deliver. It answers `{"rejected": []}` and keeps the exact
//! bytes of every request it received, so that a test can assert what left the homeserver
//! (with `format: event_id_only`: no body, no sender name, no room name).
//!
//! Production uses a State-run push gateway and UnifiedPush distributor on the secure
//! infrastructure (README, "Notifications"); this one only records.
//!
//! It runs in its own thread with its own tokio runtime (HTTP/1.1 with keep-alive, as
//! Synapse's Twisted client uses it) and stops when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::pki::CertKey;

/// The path of the Push Gateway API's one endpoint.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// One request the gateway received, as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The body's exact bytes.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A push gateway on 127.0.0.1; dropping it stops it.
pub struct PushGateway {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PushGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushGateway")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PushGateway {
    /// Starts a gateway presenting `cert` (a `localhost` certificate of the testbed PKI).
    pub fn start(cert: &CertKey) -> PushGateway {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("gateway chain PEM");
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("gateway key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("gateway certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind the push gateway");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("local addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let thread = {
            let received = received.clone();
            std::thread::spawn(move || serve(listener, acceptor, received, stopped))
        };
        PushGateway {
            port,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL pushers are given: `https://localhost:{port}/_matrix/push/v1/notify`.
    pub fn notify_url(&self) -> String {
        format!("https://localhost:{}{NOTIFY_PATH}", self.port)
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received lock").clone()
    }

    /// The `notification` objects of the notify requests received so far.
    pub fn notifications(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|r| r.method == "POST" && r.path == NOTIFY_PATH)
            .filter_map(|r| r.json())
            .map(|v| v["notification"].clone())
            .collect()
    }

    /// Waits (up to `timeout`) for a notification about `event_id`.
    pub fn wait_for_event(&self, event_id: &str, timeout: std::time::Duration) -> Option<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(n) = self
                .notifications()
                .into_iter()
                .find(|n| n["event_id"] == event_id)
            {
                return Some(n);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    received: Arc<Mutex<Vec<Received>>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("gateway runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let (tcp, _) = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let (acceptor, received) = (acceptor.clone(), received.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let received = received.clone();
                    async move { Ok::<_, hyper::Error>(answer(request, &received).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}

async fn answer(
    request: Request<Incoming>,
    received: &Mutex<Vec<Received>>,
) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let is_notify = method == "POST" && path == NOTIFY_PATH;
    let valid = is_notify && serde_json::from_slice::<Value>(&body).is_ok();
    received
        .lock()
        .expect("received lock")
        .push(Received { method, path, body });
    let (status, body) = if valid {
        (StatusCode::OK, r#"{"rejected":[]}"#)
    } else if is_notify {
        (StatusCode::BAD_REQUEST, r#"{"error":"not JSON"}"#)
    } else {
        (StatusCode::NOT_FOUND, r#"{"errcode":"M_UNRECOGNIZED"}"#)
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
