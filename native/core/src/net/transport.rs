//! The HTTPS transport: reqwest (hyper underneath; no hand-written HTTP) over a rustls client
//! configuration that only this module can build, from a validated [`Config`].
//!
//! - TLS 1.3 only, the ANSSI-recommended suites and groups (DESIGN §3), our [`PinnedVerifier`].
//! - No proxy (environment proxies are ignored), no redirects (a 3xx is an error), HTTP/1.1.
//! - Connect, read and total timeouts; response bodies capped while they are read, into a
//!   zeroizing buffer (bodies can carry access tokens and, later, key material).
//! - Connections kept alive for the long-poll sync ([`build_client`]): TCP keep-alive probes
//!   under the carrier NATs' idle timeouts, and pooled connections kept longer than a long poll,
//!   so a phone syncing once a minute neither loses its connection nor pays a new handshake.
//! - Request bodies are handed to hyper as zeroizing buffers, so a login body with a password
//!   is wiped when hyper drops it.
//!
//! Matrix semantics (error codes, 429 back-off) live one layer up, in `api`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use rustls::crypto::CryptoProvider;
use zeroize::Zeroizing;

use super::clock::TrustedClock;
use super::error::TransportError;
use super::pinning::PinnedVerifier;
use crate::config::Config;
use crate::secret::AccessToken;

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TCP + TLS connection establishment.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response — the wait for the status line included:
    /// reqwest 0.12 starts this timer with the request, so it must exceed the longest long
    /// poll the client asks for (the sync thread's persistent mode waits 60 s for an answer).
    pub read_timeout: Duration,
    /// Default total time for one request (long-poll requests pass their own).
    pub request_timeout: Duration,
    /// Default cap on a response body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            // 60 s of long poll, plus 15 s for the server's and the network's delays.
            read_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A request to the homeserver. Paths are given as segments and percent-encoded here, so a
/// room id such as `!a/b:c` can never escape its segment.
#[derive(Debug)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: Method,
    /// Path segments after the base URL, e.g. `["_matrix", "client", "v3", "login"]`.
    pub path: Vec<&'a str>,
    /// Query parameters.
    pub query: Vec<(&'a str, String)>,
    /// JSON body, held in a zeroizing buffer.
    pub body: Option<Zeroizing<Vec<u8>>>,
    /// Bearer token, if the endpoint needs authentication.
    pub access_token: Option<&'a AccessToken>,
    /// Total timeout for this request, if not the default.
    pub timeout: Option<Duration>,
    /// Body cap for this request, if not the default.
    pub max_body_bytes: Option<usize>,
    /// A streamed body (an attachment's ciphertext) instead of `body`; see [`StreamBody`].
    pub stream: Option<StreamBody>,
}

/// A request body produced while it is sent (an attachment encrypted on the fly): chunks come
/// from a bounded channel, so memory stays at a few chunks whatever the length. The length is
/// known in advance (`Content-Length`; the homeserver refuses chunked uploads) and a producer
/// that sends more or fewer bytes fails the request rather than sending a different body.
#[derive(Debug)]
pub struct StreamBody {
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// Exact length, in bytes.
    pub len: u64,
    /// The chunks; a closed channel before `len` bytes is a failed body.
    pub chunks: tokio::sync::mpsc::Receiver<Bytes>,
}

/// The `http_body::Body` hyper reads a [`StreamBody`] through.
struct ChannelBody {
    remaining: u64,
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.chunks.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the request body ended early",
            )))),
            Poll::Ready(Some(chunk)) => {
                let len = chunk.len() as u64;
                if len > self.remaining {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the request body is longer than announced",
                    ))));
                }
                self.remaining -= len;
                Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

impl<'a> Request<'a> {
    /// A request with no body, query or token.
    pub fn new(method: Method, path: Vec<&'a str>) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: None,
            access_token: None,
            timeout: None,
            max_body_bytes: None,
            stream: None,
        }
    }
}

/// A response: status, the `Retry-After` header if any, and the whole (capped) body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After` in seconds, if the server sent one.
    pub retry_after_secs: Option<u64>,
    /// The body, zeroized on drop.
    pub body: Zeroizing<Vec<u8>>,
}

/// A response whose body has not been read yet (status and headers only): read it whole with
/// [`StreamingResponse::read_body`] or stream it with [`StreamingResponse::copy_to`].
#[derive(Debug)]
pub struct StreamingResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After` in seconds, if the server sent one.
    pub retry_after_secs: Option<u64>,
    /// The `Content-Type` header, if any (parameters included).
    pub content_type: Option<String>,
    declared: Option<u64>,
    limit: u64,
    inner: reqwest::Response,
}

impl StreamingResponse {
    /// Reads the whole body into a zeroizing buffer, within the request's cap.
    pub async fn read_body(self) -> Result<Response, TransportError> {
        let limit = self.limit;
        self.read_body_within(limit).await
    }

    /// Reads the whole body into a zeroizing buffer, within `max` bytes (and the request's
    /// cap): past it, [`TransportError::BodyTooLarge`] with the smaller limit. For answers
    /// that must be small whatever the request allowed (an error body).
    pub async fn read_body_within(mut self, max: u64) -> Result<Response, TransportError> {
        let limit = usize::try_from(self.limit.min(max)).unwrap_or(usize::MAX);
        if self.declared.is_some_and(|n| n > limit as u64) {
            return Err(TransportError::BodyTooLarge { limit });
        }
        // Growth copies through zeroizing buffers (the old one is wiped when dropped), so the
        // first buffer need not fit the whole body: it is never sized from the peer's word.
        let mut body = Zeroizing::new(Vec::with_capacity(initial_capacity(self.declared, limit)));
        while let Some(chunk) = self
            .inner
            .chunk()
            .await
            .map_err(TransportError::from_reqwest)?
        {
            if body.len() + chunk.len() > limit {
                return Err(TransportError::BodyTooLarge { limit });
            }
            if body.len() + chunk.len() > body.capacity() {
                let mut bigger = Zeroizing::new(Vec::with_capacity(
                    (body.capacity() * 2)
                        .max(body.len() + chunk.len())
                        .min(limit),
                ));
                bigger.extend_from_slice(&body);
                body = bigger;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status: self.status,
            retry_after_secs: self.retry_after_secs,
            body,
        })
    }

    /// Streams the body into `sink` chunk by chunk (memory: one network chunk), within the
    /// request's cap: past it, [`TransportError::BodyTooLarge`] and nothing more is written.
    /// Returns the number of bytes written. For bodies that are not secret (ciphertext).
    pub async fn copy_to<W: std::io::Write>(mut self, sink: &mut W) -> Result<u64, TransportError> {
        let mut written = 0u64;
        while let Some(chunk) = self
            .inner
            .chunk()
            .await
            .map_err(TransportError::from_reqwest)?
        {
            written += chunk.len() as u64;
            if written > self.limit {
                return Err(TransportError::BodyTooLarge {
                    limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
                });
            }
            sink.write_all(&chunk)
                .map_err(|e| TransportError::Network {
                    detail: format!("writing the response body: {e}"),
                })?;
        }
        Ok(written)
    }
}

/// Largest buffer allocated before any body byte arrived.
const MAX_INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// The first buffer of a body read whole: what `Content-Length` declares, but never more than
/// [`MAX_INITIAL_BODY_CAPACITY`] (a peer's word allocates nothing large) nor the cap.
fn initial_capacity(declared: Option<u64>, limit: usize) -> usize {
    let declared = declared.map_or(16 * 1024, |n| usize::try_from(n).unwrap_or(usize::MAX));
    declared.min(MAX_INITIAL_BODY_CAPACITY).min(limit)
}

/// How long a connection pool is used before it is replaced by a new one (new connections, so
/// new full handshakes): bounds how long an established connection outlives a certificate's
/// validity. Pin expiry itself is checked before every request.
pub const MAX_POOL_AGE: Duration = Duration::from_secs(60 * 60);

/// The HTTP client (its connection pool) and when it was built.
#[derive(Debug)]
struct Pool {
    client: reqwest::Client,
    built: Instant,
}

/// The only way the client talks to the network.
///
/// Clones share the connection pool and the [`TrustedClock`].
#[derive(Debug, Clone)]
pub struct Transport {
    pool: Arc<Mutex<Pool>>,
    tls: rustls::ClientConfig,
    base: Url,
    limits: Limits,
    clock: TrustedClock,
    pins_expire_at: Option<time::OffsetDateTime>,
}

/// The rustls client configuration: TLS 1.3 only, our verifier (judging at `clock`'s time), no
/// client certificate, no session resumption (a resumed session skips the verifier: every
/// connection gets a full handshake with the pins and certificates checked again).
fn tls_config(
    config: &Config,
    clock: TrustedClock,
) -> Result<rustls::ClientConfig, TransportError> {
    let default = rustls::crypto::ring::default_provider();
    let provider = CryptoProvider {
        cipher_suites: vec![
            rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![
            rustls::crypto::ring::kx_group::X25519,
            rustls::crypto::ring::kx_group::SECP256R1,
            rustls::crypto::ring::kx_group::SECP384R1,
        ],
        ..default
    };
    let verifier =
        PinnedVerifier::new(config, &provider, clock).map_err(|e| TransportError::Network {
            detail: format!("trust anchor unusable: {e}"),
        })?;
    let provider = Arc::new(provider);
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Network {
            detail: format!("TLS configuration: {e}"),
        })?
        .dangerous() // the "danger" is a custom verifier: ours is stricter than the default
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut tls = tls;
    tls.resumption = rustls::client::Resumption::disabled();
    Ok(tls)
}

/// Idle time before the first TCP keep-alive probe. A connection waiting in a 60 s long poll
/// is silent both ways; a carrier NAT or firewall that drops idle mappings sooner would lose
/// it mid-poll (the answer would never arrive, and the poll would end on the read timeout, not
/// on the data). With a probe after 25 s of silence, no middlebox whose idle timeout is 30 s or
/// more sees the connection idle. Two probes per idle minute: a few bytes each, acknowledged by
/// the server's kernel. (reqwest's own default is 15 s; fewer wake-ups of the radio here.)
const TCP_KEEPALIVE: Duration = Duration::from_secs(25);
/// Interval between unanswered probes, and how many before the connection is declared dead:
/// a dead path is found 25 + 3 × 10 = 55 s after the last byte, before a 60 s long poll ends.
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// How long an idle pooled connection is kept: longer than a long poll. The sync's own
/// connection is busy during its poll and reused right after it (the keep-alive probes above are
/// what keep it alive meanwhile); the one left idle is the second connection — what a Java
/// thread sends or fetches while the long poll holds the first (HTTP/1.1: one request at a time
/// per connection). Kept 90 s, it is still there for a message sent a minute later, rather than
/// closed and replaced by a new full TLS handshake (no session resumption here: every new
/// connection is a full handshake). [`MAX_POOL_AGE`] still renews the whole pool every hour.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A new HTTP client (and connection pool) over `tls`.
fn build_client(
    tls: &rustls::ClientConfig,
    limits: &Limits,
) -> Result<reqwest::Client, TransportError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .https_only(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .http1_only()
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .timeout(limits.request_timeout)
        .tcp_keepalive(TCP_KEEPALIVE)
        .tcp_keepalive_interval(TCP_KEEPALIVE_INTERVAL)
        .tcp_keepalive_retries(TCP_KEEPALIVE_RETRIES)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("tchap-secure/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TransportError::Network {
            detail: format!("HTTP client: {e}"),
        })
}

impl Transport {
    /// Builds the transport for a validated configuration with default limits.
    pub fn new(config: &Config) -> Result<Self, TransportError> {
        Self::with_limits(config, Limits::default())
    }

    /// Builds the transport with explicit limits (tests use short timeouts).
    pub fn with_limits(config: &Config, limits: Limits) -> Result<Self, TransportError> {
        let clock = TrustedClock::new();
        let tls = tls_config(config, clock.clone())?;
        let client = build_client(&tls, &limits)?;
        Ok(Self {
            pool: Arc::new(Mutex::new(Pool {
                client,
                built: Instant::now(),
            })),
            tls,
            base: config.homeserver_url().clone(),
            limits,
            clock,
            pins_expire_at: config.pins_expire_at(),
        })
    }

    /// The same transport (trust anchors, pins, clock, connection pool, limits) for another
    /// service of the secure infrastructure at `base` (the identity server): the caller has
    /// checked `base` is one (`Config::identity_server_url`).
    pub fn with_base(&self, base: Url) -> Self {
        Self {
            base,
            ..self.clone()
        }
    }

    /// The clock pins and certificates are judged by (shared with the verifier): the client
    /// raises its floor to the latest time its store has seen.
    pub fn clock(&self) -> &TrustedClock {
        &self.clock
    }

    /// Fails closed once the pins expired, at the trusted time: before every request, so a
    /// connection established earlier is not used past the expiry.
    fn check_pins(&self) -> Result<(), TransportError> {
        super::pinning::check_pin_expiry(self.pins_expire_at, self.clock.now())
            .map_err(|r| TransportError::Tls(super::error::TlsRejection::from_pin_rejection(r)))
    }

    /// The HTTP client to use now: a new one (new pool, new handshakes) once the current one is
    /// [`MAX_POOL_AGE`] old.
    fn client(&self) -> Result<reqwest::Client, TransportError> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.built.elapsed() >= MAX_POOL_AGE {
            pool.client = build_client(&self.tls, &self.limits)?;
            pool.built = Instant::now();
            tracing::debug!("connection pool renewed");
        }
        Ok(pool.client.clone())
    }

    fn url(&self, request: &Request<'_>) -> Result<Url, TransportError> {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| TransportError::Network {
                    detail: "homeserver URL cannot be a base".into(),
                })?;
            segments.clear();
            segments.extend(request.path.iter());
        }
        if !request.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(request.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Sends a request and reads the whole response body, within the limits.
    pub async fn send(&self, request: Request<'_>) -> Result<Response, TransportError> {
        self.send_streaming(request).await?.read_body().await
    }

    /// Sends a request and returns once the status and headers are in; the body is the
    /// caller's to read (whole or streamed), within the request's cap.
    pub async fn send_streaming(
        &self,
        request: Request<'_>,
    ) -> Result<StreamingResponse, TransportError> {
        self.check_pins()?;
        let url = self.url(&request)?;
        let mut builder = self.client()?.request(request.method.clone(), url);
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(token) = request.access_token {
            let mut value = token
                .authorization_header()
                .map_err(|()| TransportError::Network {
                    detail: "access token is not a valid header value".into(),
                })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(body) = request.body {
            builder = builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Bytes::from_owner(body));
        } else if let Some(stream) = request.stream {
            builder = builder
                .header(CONTENT_TYPE, HeaderValue::from_static(stream.content_type))
                .header(CONTENT_LENGTH, HeaderValue::from(stream.len))
                .body(reqwest::Body::wrap(ChannelBody {
                    remaining: stream.len,
                    chunks: stream.chunks,
                }));
        }
        let response = builder.send().await.map_err(TransportError::from_reqwest)?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(TransportError::Redirect { status });
        }
        let limit = request.max_body_bytes.unwrap_or(self.limits.max_body_bytes);
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(TransportError::BodyTooLarge { limit });
        }
        let retry_after_secs = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(StreamingResponse {
            status,
            retry_after_secs,
            content_type,
            declared,
            limit: limit as u64,
            inner: response,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 4: no TLS session resumption (a resumed session skips the verifier, so
    /// the pins, their expiry and the certificates' validity are checked at every connection).
    #[test]
    fn tls_session_resumption_is_disabled() {
        let t = transport();
        let resumption = format!("{:?}", t.tls.resumption);
        assert!(
            resumption.contains("NoClientSessionStorage"),
            "{resumption}"
        );
        assert!(!t.tls.enable_early_data);
    }

    /// The TLS policy, exactly: three TLS 1.3 AEAD suites and three key-exchange groups. Not
    /// the provider's defaults (its TLS 1.2 suites, or whatever groups a later rustls adds).
    #[test]
    fn the_tls_policy_is_exactly_three_tls13_suites_and_three_groups() {
        let t = transport();
        let provider = t.tls.crypto_provider();
        let suites: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            suites,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256"
            ]
        );
        let groups: Vec<String> = provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(groups, ["X25519", "secp256r1", "secp384r1"]);
    }

    /// Issue 17 item 3: the connection survives the sync thread's persistent mode — a 60 s long
    /// poll — without a read timeout, a dropped pool entry or an undetected dead path.
    #[test]
    fn connections_outlast_a_sixty_second_long_poll() {
        let long_poll = Duration::from_secs(60);
        assert!(Limits::default().read_timeout >= long_poll + Duration::from_secs(10));
        assert!(POOL_IDLE_TIMEOUT > long_poll);
        assert!(TCP_KEEPALIVE < Duration::from_secs(30));
        // A dead path is found before the long poll would have ended.
        assert!(TCP_KEEPALIVE + TCP_KEEPALIVE_INTERVAL * TCP_KEEPALIVE_RETRIES < long_poll);
    }

    #[test]
    fn a_declared_length_never_allocates_more_than_the_initial_bound() {
        assert_eq!(initial_capacity(Some(100), 1 << 20), 100);
        assert_eq!(initial_capacity(None, 1 << 20), 16 * 1024);
        assert_eq!(initial_capacity(None, 10), 10);
        assert_eq!(
            initial_capacity(Some(2 << 30), usize::MAX),
            MAX_INITIAL_BODY_CAPACITY
        );
        assert_eq!(
            initial_capacity(Some(u64::MAX), 1 << 30),
            MAX_INITIAL_BODY_CAPACITY
        );
        assert_eq!(initial_capacity(Some(1 << 20), 1000), 1000);
    }

    fn transport() -> Transport {
        let config = Config::from_json(
            serde_json::json!({
                "homeserver_url": "https://matrix.example.gouv.fr:8448",
                "server_name": "example.gouv.fr",
                "trust_anchors_pem": include_str!("../../testdata/anchor.pem"),
                "spki_pins_sha256": [include_str!("../../testdata/anchor.pin").trim(),
                                     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        Transport::new(&config).unwrap()
    }

    #[test]
    fn path_segments_cannot_escape() {
        let t = transport();
        let r = Request::new(
            Method::POST,
            vec![
                "_matrix",
                "client",
                "v3",
                "rooms",
                "!a/../../admin?x=1#f:srv",
                "invite",
            ],
        );
        let url = t.url(&r).unwrap();
        assert_eq!(
            url.as_str(),
            "https://matrix.example.gouv.fr:8448/_matrix/client/v3/rooms/!a%2F..%2F..%2Fadmin%3Fx=1%23f:srv/invite"
        );
        assert!(url.query().is_none());
    }
}
