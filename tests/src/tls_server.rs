//! Minimal real TLS peers on loopback, for transport tests.
//!
//! - [`TlsServer::start`]: a rustls server (ring, TLS 1.3 only) presenting a chain exactly as
//!   given, with a scripted HTTP [`Behaviour`].
//! - [`TlsServer::start_tls12_only`]: real OpenSSL (`openssl s_server -tls1_2`): TLS 1.2 only.
//! - [`BlackHole`]: a TCP listener that accepts and never answers, not even a TLS handshake.
//!
//! The HTTP side is deliberately minimal (read the request head up to `\r\n\r\n`, skip a
//! `Content-Length` body, answer once, close): this is a test peer, not product code.

use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::pki::CertKey;
use crate::ports::free_loopback_port;

/// What a [`TlsServer`] does once the TLS handshake is complete.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answer every HTTP request with `200 {"versions":["v1.11"]}`
    /// (`Content-Type: application/json`, `Connection: close`).
    Versions,
    /// Complete the TLS handshake, then never send a byte (the connection is held open until
    /// the client closes it or the server is dropped).
    Silent,
    /// Answer every request with this status, these headers and these raw body bytes.
    /// `Content-Length` (the body's real length) and `Connection: close` are added only when
    /// `headers` has no header of that name (nor `Transfer-Encoding` for the length), so a test
    /// can send a lying length or a chunked body on purpose.
    Raw {
        /// HTTP status code.
        status: u16,
        /// Header names and values, sent in this order.
        headers: Vec<(String, String)>,
        /// Body bytes, sent as they are.
        body: Vec<u8>,
    },
}

/// A real TLS server on 127.0.0.1; dropping it shuts it down.
pub struct TlsServer {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// `https://localhost:{port}`.
    pub url: String,
    stats: Arc<Stats>,
    inner: Inner,
}

enum Inner {
    Rustls {
        shutdown: Option<oneshot::Sender<()>>,
        thread: Option<JoinHandle<()>>,
    },
    OpenSsl {
        child: Child,
        /// Holds the PEM files and logs; removed after the child is killed.
        _dir: TempDir,
    },
}

#[derive(Default)]
struct Stats {
    handshakes: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Rustls { .. } => "rustls TLS 1.3",
            Inner::OpenSsl { .. } => "openssl s_server TLS 1.2",
        };
        f.debug_struct("TlsServer")
            .field("url", &self.url)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// A rustls server (ring provider, TLS 1.3 only, ALPN `http/1.1`, no session tickets)
    /// presenting `cert.chain_pem` exactly as given, extra certificates included. It runs on
    /// its own thread with its own tokio runtime, so sync and async tests can both use it; it
    /// is listening when this returns.
    pub fn start(cert: &CertKey, behaviour: Behaviour) -> TlsServer {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("parse the chain PEM");
        assert!(!chain.is_empty(), "chain PEM holds no certificate");
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
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback TLS server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener for tokio");
        let port = listener.local_addr().expect("listener address").port();
        let stats = Arc::new(Stats::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let behaviour = Arc::new(behaviour);
        let thread_stats = Arc::clone(&stats);
        let thread = thread::Builder::new()
            .name(format!("tls-server-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the TLS server runtime");
                runtime.block_on(accept_loop(
                    listener,
                    acceptor,
                    behaviour,
                    thread_stats,
                    shutdown_rx,
                ));
                // Dropping the runtime cancels the connection tasks and closes their sockets.
                drop(runtime);
            })
            .expect("spawn the TLS server thread");
        TlsServer {
            port,
            url: format!("https://localhost:{port}"),
            stats,
            inner: Inner::Rustls {
                shutdown: Some(shutdown_tx),
                thread: Some(thread),
            },
        }
    }

    /// Real OpenSSL, `openssl s_server -tls1_2 -www`, presenting `cert` (leaf
    /// plus the rest of `chain_pem` as `-cert_chain`): a TLS-1.2-only peer. Returns once the
    /// port accepts TCP connections; the child is killed on drop (and dies with the test
    /// process). Handshake and request counters stay at zero for this kind of server.
    pub fn start_tls12_only(cert: &CertKey) -> TlsServer {
        let dir = tempfile::Builder::new()
            .prefix("tchap-testbed-openssl-")
            .tempdir()
            .expect("temp dir for openssl s_server");
        let (leaf, rest) = split_leaf(&cert.chain_pem);
        write_file(&dir.path().join("leaf.pem"), leaf.as_bytes());
        write_file(&dir.path().join("key.pem"), cert.key_pem.as_bytes());
        if !rest.trim().is_empty() {
            write_file(&dir.path().join("chain.pem"), rest.as_bytes());
        }

        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_loopback_port();
            let mut command = Command::new("openssl");
            command
                .current_dir(dir.path())
                .args(["s_server", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-cert", "leaf.pem", "-key", "key.pem"]);
            if !rest.trim().is_empty() {
                command.args(["-cert_chain", "chain.pem"]);
            }
            command
                // `-tls1_2` alone: OpenSSL 3 refuses it combined with `-no_tls1_3`
                // ("Cannot supply both a protocol flag and '-no_<prot>'"); it already means
                // TLS 1.2 and nothing else.
                .args(["-tls1_2", "-www", "-quiet"])
                .stdin(Stdio::null())
                .stdout(Stdio::from(create_file(&dir.path().join("stdout.log"))))
                .stderr(Stdio::from(create_file(&dir.path().join("stderr.log"))));
            let mut child =
                crate::child::spawn_tied_to_process(command).expect("spawn openssl s_server");
            match wait_for_port(port, &mut child, Duration::from_secs(10)) {
                Ok(()) => {
                    return TlsServer {
                        port,
                        url: format!("https://localhost:{port}"),
                        stats: Arc::new(Stats::default()),
                        inner: Inner::OpenSsl { child, _dir: dir },
                    };
                }
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr =
                        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                    last_error = format!("{error}; openssl stderr:\n{stderr}");
                }
            }
        }
        panic!("openssl s_server did not start: {last_error}");
    }

    /// Number of TLS handshakes this server completed (rustls servers only).
    pub fn handshakes(&self) -> usize {
        self.stats.handshakes.load(Ordering::SeqCst)
    }

    /// The heads (request line and headers, lossily decoded) of the HTTP requests received,
    /// in order (rustls servers with `Versions` or `Raw` only).
    pub fn requests(&self) -> Vec<String> {
        self.stats
            .requests
            .lock()
            .expect("request log lock poisoned")
            .clone()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Rustls { shutdown, thread } => {
                if let Some(shutdown) = shutdown.take() {
                    let _ = shutdown.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
            Inner::OpenSsl { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    behaviour: Arc<Behaviour>,
    stats: Arc<Stats>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // E.g. EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let behaviour = Arc::clone(&behaviour);
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    // A failed handshake is the expected outcome of many tests: ignore it.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    stats.handshakes.fetch_add(1, Ordering::SeqCst);
                    serve(tls, &behaviour, &stats).await;
                });
            }
        }
    }
}

async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    behaviour: &Behaviour,
    stats: &Stats,
) {
    if let Behaviour::Silent = behaviour {
        // Hold the connection: read (and discard) whatever the client sends, never write.
        let mut sink = [0u8; 4096];
        while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let Some(head) = read_request(&mut tls).await else {
        return;
    };
    stats
        .requests
        .lock()
        .expect("request log lock poisoned")
        .push(head);
    let response = match behaviour {
        Behaviour::Versions => {
            let body = br#"{"versions":["v1.11"]}"#;
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(body);
            response
        }
        Behaviour::Raw {
            status,
            headers,
            body,
        } => raw_response(*status, headers, body),
        Behaviour::Silent => return,
    };
    // The client may close early (e.g. a body-size cap): write errors are expected.
    if tls.write_all(&response).await.is_ok() {
        let _ = tls.flush().await;
        let _ = tls.shutdown().await;
    }
}

/// Read a request head up to `\r\n\r\n`, then skip a `Content-Length` body (up to 16 MiB) so
/// closing the socket does not reset the connection before the client reads the answer.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    const MAX_HEAD: usize = 64 * 1024;
    const MAX_BODY: usize = 16 * 1024 * 1024;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
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
    let content_length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut remaining = content_length.saturating_sub(buffer.len() - head_end);
    while remaining > 0 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => remaining = remaining.saturating_sub(n),
        }
    }
    Some(head)
}

fn raw_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    response
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Split a PEM chain into its first certificate block and the rest.
fn split_leaf(chain_pem: &str) -> (&str, &str) {
    const END: &str = "-----END CERTIFICATE-----";
    let end = chain_pem.find(END).expect("chain PEM holds a certificate") + END.len();
    chain_pem.split_at(end)
}

fn write_file(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn create_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
}

/// Wait until 127.0.0.1:`port` accepts a TCP connection, failing early if `child` exits.
pub(crate) fn wait_for_port(port: u16, child: &mut Child, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("exited early with {status}")));
        }
        if let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("port {port} not accepting after {timeout:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A plain TCP listener on 127.0.0.1 that accepts connections and never answers (not even a
/// TLS handshake), holding them open until dropped: to prove connect/read/total timeouts.
pub struct BlackHole {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// `https://localhost:{port}`.
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BlackHole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlackHole")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl BlackHole {
    /// Start accepting on a free loopback port.
    pub fn start() -> BlackHole {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the black hole listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking black hole listener");
        let port = listener.local_addr().expect("black hole address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(format!("black-hole-{port}"))
            .spawn(move || {
                let mut held = Vec::new();
                while !thread_stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                    // Drain what clients send so their writes never block; answer nothing.
                    let mut sink = [0u8; 1024];
                    for stream in &mut held {
                        let _ = stream.set_nonblocking(true);
                        let _ = stream.read(&mut sink);
                    }
                }
            })
            .expect("spawn the black hole thread");
        BlackHole {
            port,
            url: format!("https://localhost:{port}"),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
