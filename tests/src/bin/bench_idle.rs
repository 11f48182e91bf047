//! The persistent mode's idle cost (issue 17's benchmark): requests and bytes per idle hour of
//! a phone that keeps its sync running, next to matrix-sdk 0.18's sync loop with its defaults.
//!
//! ```text
//! bench_idle [--seconds 60] [--short-timeout-ms 3000] [--out bench/raw]
//! ```
//!
//! Both clients sync an idle account (nobody writes to it) through the testbed's
//! man-in-the-middle proxy ([`HostileProxy`], forwarding only, TLS terminated with the pinned
//! certificate), which records every request and answer. Each runs `--seconds` with a shortened
//! long-poll timeout (`--short-timeout-ms`) so that many idle rounds are seen; then the figures
//! per idle round (request line + headers + body; answer body + status line and headers as
//! recorded) are extrapolated to an hour at each client's real timeout:
//! - ours, `SyncMode.PERSISTENT`: a 60 s long poll (the sync thread calls `prepare_sync`/`fetch`/
//!   `apply_sync`, as `Client::sync_once` does here);
//! - matrix-sdk 0.18: `SyncSettings::default()`'s 30 s timeout, the loop `Client::sync` runs.
//!
//! TCP/IP and TLS record overheads are not counted (a few dozen bytes per packet, the same
//! for both), nor our TCP keep-alive probes (two 66-byte exchanges per idle minute at most:
//! each poll's traffic restarts the 25 s timer). Prints one JSON line per implementation and
//! appends them to `<out>/idle.jsonl`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use matrix_sdk::config::SyncSettings;
use matrix_sdk::reqwest::Certificate;
use serde_json::{Value, json};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tchap_secure_tests::harness::{PASSWORD, password};
use tchap_secure_tests::hostile_proxy::{Exchange, HostileProxy, Route, Rule};
use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::synapse::Synapse;

tchap_secure_memory::install_zeroizing_allocator!();

/// Our persistent mode's long poll, and matrix-sdk's default sync timeout.
const OURS_TIMEOUT: Duration = Duration::from_secs(60);
const MATRIX_SDK_TIMEOUT: Duration = Duration::from_secs(30);

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// Bytes of one exchange as recorded: request line, headers and body; status line, the
/// headers a JSON answer carries, body.
fn exchange_bytes(x: &Exchange) -> (usize, usize) {
    let r = &x.request;
    let request = r.method.len()
        + 1
        + r.path.len()
        + if r.query.is_empty() {
            0
        } else {
            1 + r.query.len()
        }
        + " HTTP/1.1\r\n".len()
        + r.headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum::<usize>()
        + 2
        + r.body.len();
    let answer = x.upstream.as_ref().map_or(0, |u| {
        // "HTTP/1.1 200 OK", content-type, content-length, date, server: about 150 bytes.
        150 + u.body.len()
    });
    (request, answer)
}

/// The idle rounds of a run: sync requests after the first two (initial sync and the one
/// that uploads keys or catches up), per client.
fn figures(name: &str, exchanges: &[Exchange], seconds: f64, real_timeout: Duration) -> Value {
    let syncs: Vec<&Exchange> = exchanges
        .iter()
        .filter(|x| x.request.path.ends_with("/sync"))
        .skip(2)
        .collect();
    // Login, key upload, cross-signing set-up, filter upload…: the run's other requests, at
    // its start (none should come while idle).
    let others: Vec<String> = exchanges
        .iter()
        .filter(|x| !x.request.path.ends_with("/sync"))
        .map(|x| format!("{} {}", x.request.method, x.request.path))
        .collect();
    let n = syncs.len().max(1);
    let (req, ans): (usize, usize) = syncs
        .iter()
        .map(|x| exchange_bytes(x))
        .fold((0, 0), |(a, b), (r, s)| (a + r, b + s));
    let per_round = (req + ans) as f64 / n as f64;
    let rounds_per_hour = 3600.0 / real_timeout.as_secs_f64();
    json!({
        "scenario": "persistent_idle_hour",
        "implementation": name,
        "measured_seconds": seconds,
        "idle_rounds_measured": syncs.len(),
        "other_requests": others,
        "request_bytes_per_round": req as f64 / n as f64,
        "answer_bytes_per_round": ans as f64 / n as f64,
        "real_timeout_s": real_timeout.as_secs(),
        "requests_per_idle_hour": rounds_per_hour,
        "bytes_per_idle_hour": (rounds_per_hour * per_round).round(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = arg(&args, "--seconds", "60").parse().expect("--seconds");
    let short = Duration::from_millis(
        arg(&args, "--short-timeout-ms", "3000")
            .parse()
            .expect("--short-timeout-ms"),
    );
    let out = PathBuf::from(arg(&args, "--out", "bench/raw"));
    std::fs::create_dir_all(&out).expect("the output directory");
    let synapse = Synapse::shared();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut lines = Vec::new();

    // Ours, through the proxy.
    {
        let proxy = HostileProxy::start(synapse);
        let config = Config::from_json(proxy.client_config().to_string().as_bytes())
            .expect("the proxy's client configuration");
        let token = SoftHsmToken::process_wide();
        let vault = Pkcs11Vault::open(
            &Pkcs11Config {
                module: token.module.clone(),
                token_label: token.label.clone(),
            },
            &SecretBytes::from(token.user_pin.as_bytes()),
        )
        .expect("open the token");
        let work = tempfile::tempdir().expect("a work directory");
        let mut client = {
            let _entered = rt.enter();
            Client::open(config, &work.path().join("ours"), &vault).expect("open")
        };
        let localpart = synapse.unique_user("bench-idle-ours");
        synapse.register(&localpart, PASSWORD, false);
        let started = rt.block_on(async {
            client
                .login(&localpart, &password(), "bench idle")
                .await
                .expect("login");
            client.sync_once(Duration::ZERO).await.expect("sync");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                client.sync_once(short).await.expect("idle sync");
            }
            started
        });
        let exchanges = proxy.exchanges();
        lines.push(figures(
            "tchap-secure",
            &exchanges,
            started.elapsed().as_secs_f64(),
            OURS_TIMEOUT,
        ));
    }

    // matrix-sdk 0.18, through its own proxy: `SyncSettings::default()` with the timeout
    // shortened like ours.
    {
        let proxy = HostileProxy::start(synapse);
        // Synapse's login answer carries `well_known` (its own public URL), which matrix-sdk
        // adopts as its homeserver: the proxy leaves it out so that every sync is seen.
        proxy.add(Rule::rewrite(
            Route::new("POST", "/login"),
            |_, mut body| {
                if let Some(map) = body.as_object_mut() {
                    map.remove("well_known");
                }
                body
            },
        ));
        let config = proxy.client_config();
        let homeserver = config["homeserver_url"]
            .as_str()
            .expect("homeserver_url")
            .to_owned();
        let roots_pem: String = config["trust_anchors_pem"]
            .as_array()
            .expect("trust anchors")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let localpart = synapse.unique_user("bench-idle-sdk");
        synapse.register(&localpart, PASSWORD, false);
        let work = tempfile::tempdir().expect("a work directory");
        let started = rt.block_on(async {
            let roots = Certificate::from_pem_bundle(roots_pem.as_bytes()).expect("the root CA");
            let client = matrix_sdk::Client::builder()
                .homeserver_url(&homeserver)
                .sqlite_store(work.path().join("store"), Some("bench idle passphrase"))
                .add_root_certificates(roots)
                .disable_built_in_root_certificates()
                .build()
                .await
                .expect("build the client");
            client
                .matrix_auth()
                .login_username(&localpart, PASSWORD)
                .initial_device_display_name("bench idle")
                .await
                .expect("log in");
            client
                .sync_once(SyncSettings::default())
                .await
                .expect("first sync");
            let started = Instant::now();
            let mut settings = SyncSettings::default().timeout(short);
            while started.elapsed() < Duration::from_secs(seconds) {
                let response = client.sync_once(settings.clone()).await.expect("idle sync");
                settings = settings.token(response.next_batch);
            }
            started
        });
        let exchanges = proxy.exchanges();
        lines.push(figures(
            "matrix-sdk",
            &exchanges,
            started.elapsed().as_secs_f64(),
            MATRIX_SDK_TIMEOUT,
        ));
    }

    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("idle.jsonl"))
        .expect("idle.jsonl");
    for line in &lines {
        println!("{line}");
        writeln!(file, "{line}").expect("append");
    }
    rt.shutdown_background();
}
