//! A hostile homeserver: a man-in-the-middle in front of the real Synapse.
//!
//! The proxy terminates TLS on 127.0.0.1 with the server leaf of Synapse's own [`Pki`] — the
//! certificate the client pins — and forwards every request to Synapse over TLS (trusting only
//! the run's root CA). So a client configured with [`HostileProxy::client_config`] logs in,
//! uploads keys and syncs for real; then the test adds [`Rule`]s, and the server turns
//! hostile, per endpoint:
//!
//! - [`Rule::rewrite`]: forward, then rewrite the genuine JSON answer with a closure;
//! - [`Rule::intercept`]: forward, then answer anything (raw bytes, a duplicated JSON key, …)
//!   built from the genuine answer;
//! - [`Rule::replace`]: answer without asking Synapse — JSON, raw bytes, a chunked body that
//!   never ends ([`Reply::Trickle`]), or nothing at all ([`Reply::Silent`]).
//!
//! Rules are tried in the order they were added; the first whose [`Route`] matches and whose
//! use count ([`Rule::times`]) is not spent applies. Every request is recorded
//! ([`HostileProxy::exchanges`]) with the genuine answer when there was one, so a test can
//! replay an earlier answer or check what the client sent (room keys go out in
//! `/sendToDevice` bodies, addressed by Curve25519 key).
//!
//! The HTTP side is deliberately small: one request per connection (`Connection: close`),
//! request bodies by `Content-Length` only (what the product's hyper client sends). This is a
//! test peer, not product code.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::pki::CertKey;
use crate::synapse::Synapse;

/// Longest request head accepted from the client.
const MAX_HEAD: usize = 64 * 1024;
/// Longest request body accepted from the client.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Total timeout of a forwarded request (long-polls included).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(180);

/// Which requests a rule applies to: a method (or any) and a fragment of the path.
#[derive(Clone, Debug)]
pub struct Route {
    method: Option<String>,
    fragment: String,
}

impl Route {
    /// Requests with `method` whose path (query excluded) contains `fragment`, e.g.
    /// `Route::new("POST", "/keys/query")`.
    pub fn new(method: &str, fragment: &str) -> Route {
        Route {
            method: Some(method.to_ascii_uppercase()),
            fragment: fragment.to_owned(),
        }
    }

    /// Requests with any method whose path contains `fragment`.
    pub fn any(fragment: &str) -> Route {
        Route {
            method: None,
            fragment: fragment.to_owned(),
        }
    }

    /// `GET …/sync`.
    pub fn sync() -> Route {
        Route::new("GET", "/_matrix/client/v3/sync")
    }

    /// `POST …/keys/query`.
    pub fn keys_query() -> Route {
        Route::new("POST", "/_matrix/client/v3/keys/query")
    }

    /// `POST …/keys/claim`.
    pub fn keys_claim() -> Route {
        Route::new("POST", "/_matrix/client/v3/keys/claim")
    }

    fn matches(&self, request: &ProxyRequest) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
            && request.path.contains(&self.fragment)
    }
}

/// A request as the client sent it.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The raw query string (without `?`), empty if none.
    pub query: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl ProxyRequest {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A query parameter, percent-decoded (`+` as a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Synapse's genuine answer to a forwarded request.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Upstream {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// This answer, passed through unchanged.
    pub fn reply(&self) -> Reply {
        let mut headers = Vec::new();
        if let Some(content_type) = &self.content_type {
            headers.push(("Content-Type".to_owned(), content_type.clone()));
        }
        Reply::Raw {
            status: self.status,
            headers,
            body: self.body.clone(),
        }
    }
}

/// What the proxy answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A JSON body (`Content-Type: application/json`, exact `Content-Length`).
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Value,
    },
    /// Raw body bytes. `Content-Length` is added unless `headers` has it or
    /// `Transfer-Encoding`; `Connection: close` is always added.
    Raw {
        /// HTTP status.
        status: u16,
        /// Header names and values, in this order.
        headers: Vec<(String, String)>,
        /// Body bytes, sent as they are.
        body: Vec<u8>,
    },
    /// A chunked (`Transfer-Encoding: chunked`) body that never ends: `prefix` as the first
    /// chunk, then `chunk` again and again, `interval` apart, until the client goes away or
    /// the proxy is dropped.
    Trickle {
        /// HTTP status.
        status: u16,
        /// First chunk (e.g. the start of a JSON object).
        prefix: Vec<u8>,
        /// The chunk repeated forever (must not be empty).
        chunk: Vec<u8>,
        /// Pause between two chunks (zero: as fast as the client reads).
        interval: Duration,
    },
    /// Read the request, then never answer (the connection is held open).
    Silent,
}

impl Reply {
    /// `200` with a JSON body.
    pub fn ok(body: Value) -> Reply {
        Reply::Json { status: 200, body }
    }
}

type RewriteFn = dyn Fn(&ProxyRequest, Value) -> Value + Send + Sync;
type InterceptFn = dyn Fn(&ProxyRequest, &Upstream) -> Reply + Send + Sync;
type ReplaceFn = dyn Fn(&ProxyRequest) -> Reply + Send + Sync;

#[derive(Clone)]
enum Action {
    Rewrite(Arc<RewriteFn>),
    Intercept(Arc<InterceptFn>),
    Replace(Arc<ReplaceFn>),
}

/// One hostile behaviour: a route, what to do, and how many times.
pub struct Rule {
    route: Route,
    action: Action,
    remaining: Option<usize>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.action {
            Action::Rewrite(_) => "rewrite",
            Action::Intercept(_) => "intercept",
            Action::Replace(_) => "replace",
        };
        f.debug_struct("Rule")
            .field("route", &self.route)
            .field("action", &kind)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Rule {
    /// Forward, then rewrite the genuine answer's JSON body (2xx JSON answers only; anything
    /// else passes through unchanged).
    pub fn rewrite(
        route: Route,
        f: impl Fn(&ProxyRequest, Value) -> Value + Send + Sync + 'static,
    ) -> Rule {
        Rule {
            route,
            action: Action::Rewrite(Arc::new(f)),
            remaining: None,
        }
    }

    /// Forward, then answer whatever `f` builds from the genuine answer.
    pub fn intercept(
        route: Route,
        f: impl Fn(&ProxyRequest, &Upstream) -> Reply + Send + Sync + 'static,
    ) -> Rule {
        Rule {
            route,
            action: Action::Intercept(Arc::new(f)),
            remaining: None,
        }
    }

    /// Answer without asking Synapse.
    pub fn replace(
        route: Route,
        f: impl Fn(&ProxyRequest) -> Reply + Send + Sync + 'static,
    ) -> Rule {
        Rule {
            route,
            action: Action::Replace(Arc::new(f)),
            remaining: None,
        }
    }

    /// Apply to the next `n` matching requests only (default: every one).
    pub fn times(mut self, n: usize) -> Rule {
        self.remaining = Some(n);
        self
    }
}

/// Identifies a rule added to a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

/// One request the proxy handled.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The request as the client sent it.
    pub request: ProxyRequest,
    /// Synapse's genuine answer, if the request was forwarded.
    pub upstream: Option<Upstream>,
    /// The rule that applied, if any.
    pub rule: Option<RuleId>,
    /// The JSON body the client received, when the proxy answered JSON (genuine or rewritten).
    pub replied_json: Option<Value>,
}

struct Entry {
    id: RuleId,
    route: Route,
    action: Action,
    remaining: Option<usize>,
    hits: usize,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Entry>>,
    exchanges: Mutex<Vec<Exchange>>,
    next_rule: AtomicU64,
}

impl Shared {
    /// The first live rule matching `request`; its use is counted.
    fn take_rule(&self, request: &ProxyRequest) -> Option<(RuleId, Action)> {
        let mut rules = self.rules.lock().expect("rule lock poisoned");
        let entry = rules
            .iter_mut()
            .find(|e| e.remaining != Some(0) && e.route.matches(request))?;
        if let Some(n) = &mut entry.remaining {
            *n -= 1;
        }
        entry.hits += 1;
        Some((entry.id, entry.action.clone()))
    }

    fn record(&self, exchange: Exchange) {
        self.exchanges
            .lock()
            .expect("exchange log lock poisoned")
            .push(exchange);
    }
}

/// The man-in-the-middle; dropping it shuts it down (open connections are closed).
pub struct HostileProxy {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// `https://localhost:{port}`.
    pub url: String,
    client_config: Value,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HostileProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileProxy")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HostileProxy {
    /// A proxy in front of `synapse`, presenting Synapse's own pinned server leaf. It starts
    /// honest (no rule); it is listening when this returns. It runs on its own thread with
    /// its own tokio runtime, so sync and async tests can both use it.
    pub fn start(synapse: &Synapse) -> HostileProxy {
        let acceptor = tls_acceptor(&synapse.pki.server);
        let upstream = upstream_client(&synapse.pki.root_ca_pem, synapse.port);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the hostile proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener for tokio");
        let port = listener.local_addr().expect("proxy address").port();
        let url = format!("https://localhost:{port}");
        let shared = Arc::new(Shared::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let upstream_base = format!("https://localhost:{}", synapse.port);
        let thread = thread::Builder::new()
            .name(format!("hostile-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the proxy runtime");
                runtime.block_on(accept_loop(
                    listener,
                    acceptor,
                    Arc::new(Forwarder {
                        client: upstream,
                        base: upstream_base,
                    }),
                    thread_shared,
                    shutdown_rx,
                ));
                // Dropping the runtime cancels the connection tasks and closes their sockets.
                drop(runtime);
            })
            .expect("spawn the proxy thread");
        let mut client_config = synapse.client_config();
        client_config["homeserver_url"] = json!(url);
        HostileProxy {
            port,
            url,
            client_config,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// The product's client configuration for this proxy: Synapse's configuration (server
    /// name, trust anchor, pins) with the proxy's URL as the homeserver.
    pub fn client_config(&self) -> Value {
        self.client_config.clone()
    }

    /// Adds a rule (after the existing ones).
    pub fn add(&self, rule: Rule) -> RuleId {
        let id = RuleId(self.shared.next_rule.fetch_add(1, Ordering::SeqCst));
        self.shared
            .rules
            .lock()
            .expect("rule lock poisoned")
            .push(Entry {
                id,
                route: rule.route,
                action: rule.action,
                remaining: rule.remaining,
                hits: 0,
            });
        id
    }

    /// Removes one rule.
    pub fn remove(&self, id: RuleId) {
        self.shared
            .rules
            .lock()
            .expect("rule lock poisoned")
            .retain(|e| e.id != id);
    }

    /// Removes every rule: the proxy is honest again.
    pub fn clear(&self) {
        self.shared
            .rules
            .lock()
            .expect("rule lock poisoned")
            .clear();
    }

    /// How many requests `id` has applied to.
    pub fn hits(&self, id: RuleId) -> usize {
        self.shared
            .rules
            .lock()
            .expect("rule lock poisoned")
            .iter()
            .find(|e| e.id == id)
            .map_or(0, |e| e.hits)
    }

    /// Every request handled so far, in arrival order (a request still being answered, e.g. a
    /// long-poll, appears once answered; silent and trickled ones as soon as they start).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared
            .exchanges
            .lock()
            .expect("exchange log lock poisoned")
            .clone()
    }

    /// The exchanges whose request matches `route`.
    pub fn exchanges_on(&self, route: &Route) -> Vec<Exchange> {
        self.exchanges()
            .into_iter()
            .filter(|e| route.matches(&e.request))
            .collect()
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// TLS 1.3 (ring), ALPN `http/1.1`, no tickets, presenting `cert.chain_pem` as given.
fn tls_acceptor(cert: &CertKey) -> tokio_rustls::TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parse the chain PEM");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("parse key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("ring supports TLS 1.3")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("the key matches the leaf certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.send_tls13_tickets = 0;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The proxy's own HTTPS client to Synapse: trusts only the run's root CA, no redirect.
fn upstream_client(root_ca_pem: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(crate::http::client_config(root_ca_pem))
        .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(UPSTREAM_TIMEOUT)
        .build()
        .expect("build the proxy's upstream client")
}

struct Forwarder {
    client: reqwest::Client,
    base: String,
}

impl Forwarder {
    async fn forward(&self, request: &ProxyRequest) -> Upstream {
        let mut url = format!("{}{}", self.base, request.path);
        if !request.query.is_empty() {
            url.push('?');
            url.push_str(&request.query);
        }
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut builder = self.client.request(method, &url);
        for name in ["authorization", "content-type"] {
            if let Some(value) = request.header(name) {
                builder = builder.header(name, value);
            }
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let bad_gateway = |e: reqwest::Error| Upstream {
            status: 502,
            content_type: Some("application/json".to_owned()),
            body: json!({"errcode": "M_UNKNOWN", "error": format!("proxy: {e}")})
                .to_string()
                .into_bytes(),
        };
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return bad_gateway(e),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match response.bytes().await {
            Ok(body) => Upstream {
                status,
                content_type,
                body: body.to_vec(),
            },
            Err(e) => bad_gateway(e),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    forwarder: Arc<Forwarder>,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let forwarder = Arc::clone(&forwarder);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    serve(tls, &forwarder, &shared).await;
                });
            }
        }
    }
}

async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    forwarder: &Forwarder,
    shared: &Shared,
) {
    let Some(request) = read_request(&mut tls).await else {
        return;
    };
    let rule = shared.take_rule(&request);
    let (upstream, reply) = match &rule {
        None => {
            let upstream = forwarder.forward(&request).await;
            let reply = upstream.reply();
            (Some(upstream), reply)
        }
        Some((_, Action::Rewrite(f))) => {
            let upstream = forwarder.forward(&request).await;
            let reply = match upstream.json() {
                Some(body) if (200..300).contains(&upstream.status) => Reply::Json {
                    status: upstream.status,
                    body: f(&request, body),
                },
                _ => upstream.reply(),
            };
            (Some(upstream), reply)
        }
        Some((_, Action::Intercept(f))) => {
            let upstream = forwarder.forward(&request).await;
            let reply = f(&request, &upstream);
            (Some(upstream), reply)
        }
        Some((_, Action::Replace(f))) => (None, f(&request)),
    };
    let replied_json = match &reply {
        Reply::Json { body, .. } => Some(body.clone()),
        Reply::Raw { body, .. } if body.len() <= 1024 * 1024 => serde_json::from_slice(body).ok(),
        _ => None,
    };
    shared.record(Exchange {
        request,
        upstream,
        rule: rule.map(|(id, _)| id),
        replied_json,
    });
    match reply {
        Reply::Json { status, body } => {
            let headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
            let bytes = raw_response(status, &headers, body.to_string().as_bytes());
            write_and_close(&mut tls, &bytes).await;
        }
        Reply::Raw {
            status,
            headers,
            body,
        } => write_and_close(&mut tls, &raw_response(status, &headers, &body)).await,
        Reply::Trickle {
            status,
            prefix,
            chunk,
            interval,
        } => trickle(&mut tls, status, &prefix, &chunk, interval).await,
        Reply::Silent => {
            // Hold the connection: read (and discard) whatever comes, never write.
            let mut sink = [0u8; 4096];
            while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}

async fn write_and_close<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    // The client may give up early (a body cap, a timeout): write errors are expected.
    if stream.write_all(bytes).await.is_ok() {
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

async fn trickle<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    prefix: &[u8],
    chunk: &[u8],
    interval: Duration,
) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        reason(status)
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let framed = |bytes: &[u8]| {
        let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        out
    };
    if !prefix.is_empty() && stream.write_all(&framed(prefix)).await.is_err() {
        return;
    }
    let chunk = framed(chunk);
    loop {
        if stream.write_all(&chunk).await.is_err() || stream.flush().await.is_err() {
            return; // the client went away
        }
        if interval.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(interval).await;
        }
    }
}

/// Reads one request: the head up to `\r\n\r\n`, then a `Content-Length` body.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<ProxyRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(pos) = find(&buffer, b"\r\n\r\n") {
            break pos + 4;
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_ascii_uppercase();
    let target = request_line.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    Some(ProxyRequest {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body,
    })
}

fn raw_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    response
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (other, _) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
