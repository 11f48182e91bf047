//! Set-up for the side-by-side benchmarks that run in fresh processes (issue 7): the cold-open
//! fixture (scenario 3) and the Synapse account of the initial sync (scenario 4), and runners
//! that spawn the measuring binaries and parse the one JSON line each prints.
//!
//! The binaries (`src/bin/bench_cold_open_*.rs`, `src/bin/bench_initial_sync_*.rs`, documented
//! at the top of each) do not link this library: its SoftHSM2 set-up runs before `main` (see
//! `softhsm.rs`) and would replace the `SOFTHSM2_CONF` their parent gives them. Secrets (PINs,
//! passwords, store keys) reach them in mode-0600 files, never on a command line.
//!
//! # Cold open
//! [`cold_open_fixture`] returns the cached fixture directory
//! `${TCHAP_SECURE_CACHE:-~/.cache/tchap-secure}/bench-fixtures/<version>-<rooms>r-<sessions>s`,
//! writing it first if it is missing or incomplete (a few minutes): its own SoftHSM2
//! configuration and token (`softhsm/`, kept with the data whose KEK it holds), our client's
//! data directory (`ours/`), the same data in matrix-sdk's SQLite stores (`matrix-sdk/` with a
//! passphrase, `matrix-sdk-key/` with a raw key), and the inputs the binaries share. The
//! version string changes whenever the fixture's content does.
//! [`ColdOpenFixture::run`] takes the parent's `CLOCK_MONOTONIC` just before `spawn` and passes
//! it to the child, which reports the time from there to "ready".
//!
//! # Initial sync
//! [`initial_sync_account`] registers a user and a peer on the shared Synapse, has the peer
//! create `rooms` encrypted rooms (`m.room.encryption` in the initial state) inviting the user,
//! the user join them all, and the peer send a few Megolm-encrypted messages in each (real
//! vodozemac ciphertext, with a session no device of the user ever gets, as for any new
//! device). Client-server API calls straight to Synapse: a few seconds per 10 rooms.
//! [`InitialSyncAccount::run`] then measures one fresh login and first sync in a fresh
//! process, with a fresh data directory (and, for ours, a fresh SoftHSM2 token).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use tchap_secure_core::bench_fixtures::ColdOpenSpec;
use tempfile::TempDir;

use crate::harness::write_private;
use crate::pki::Pki;
use crate::synapse::Synapse;

/// Changes whenever the cold-open fixture's content or layout changes (old caches are then
/// ignored, not reused).
/// v3: our store at schema 4 (timeline attachment column).
/// v4: our store at schema 5 (timeline positions, gaps, outbox back-off): a v4 fixture would
/// make every measured cold open run the migration.
pub const COLD_OPEN_FIXTURE_VERSION: &str = "cold-open-v4";
/// Megolm messages the peer sends in each room of the initial-sync account.
pub const MESSAGES_PER_ROOM: usize = 3;

/// `CLOCK_MONOTONIC` in nanoseconds, as the measuring binaries read it.
pub use tchap_secure_core::bench_internals::monotonic_ns;

/// A vault in `dir` whose KEK is on the process-wide SoftHSM2 token (the in-process benches of
/// our receive and send paths).
pub fn bench_vault(dir: &Path) -> tchap_secure_hsm::Vault {
    use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes, Vault, VaultBinding};
    let token = crate::softhsm::SoftHsmToken::process_wide();
    let backend = Pkcs11Vault::open(
        &Pkcs11Config {
            module: token.module.clone(),
            token_label: token.label.clone(),
        },
        &SecretBytes::from(token.user_pin.as_bytes()),
    )
    .expect("open the token");
    let binding = VaultBinding {
        server_name: "secure.tchap.test".into(),
    };
    Vault::create(dir, &backend, &binding).expect("vault")
}

/// The median of `values` (the mean of the middle two for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Writes dirty pages back and drops the kernel's page cache (`sync`, then `3` into
/// `/proc/sys/vm/drop_caches`; needs root), so the next process reads its binary, libraries
/// and files from disk, as after a reboot. Returns whether the cache was dropped. It affects
/// every process of the machine: only between measurements.
pub fn drop_page_cache() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// `${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("TCHAP_SECURE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set (or set TCHAP_SECURE_CACHE)");
    Path::new(&home).join(".cache/tchap-secure")
}

/// Where the benchmark binaries are.
#[derive(Clone, Debug)]
pub struct Bins {
    dir: PathBuf,
}

/// The binaries this module runs.
pub const BIN_NAMES: [&str; 5] = [
    "bench_cold_open_ours",
    "bench_cold_open_matrix_sdk",
    "bench_cold_open_raw_sqlcipher",
    "bench_initial_sync_ours",
    "bench_initial_sync_matrix_sdk",
];

impl Bins {
    /// The binaries in `dir` (e.g. `target/release`).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `TCHAP_SECURE_BENCH_BIN_DIR` if set; else the directory of the running executable, or
    /// its parent when that is cargo's `deps/` (benches and tests run from there).
    pub fn locate() -> Self {
        if let Some(dir) = std::env::var_os("TCHAP_SECURE_BENCH_BIN_DIR") {
            return Self::in_dir(dir);
        }
        let exe = std::env::current_exe().expect("the path of the running executable");
        let mut dir = exe
            .parent()
            .expect("the executable is in a directory")
            .to_path_buf();
        if dir.file_name().is_some_and(|n| n == "deps") && !dir.join(BIN_NAMES[0]).exists() {
            dir.pop();
        }
        Self::in_dir(dir)
    }

    /// The path of binary `name`; panics with the build command if it is missing.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: build it with `cargo build --profile bench -p tchap-secure-tests --bins` \
             (or set TCHAP_SECURE_BENCH_BIN_DIR)",
            path.display()
        );
        path
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random generator");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SoftHSM2 PKCS#11 module: `TCHAP_SECURE_SOFTHSM_MODULE`, else the Debian paths.
fn softhsm_module() -> PathBuf {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_SOFTHSM_MODULE") {
        return PathBuf::from(path);
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// A SoftHSM2 configuration in `dir/softhsm/` with one token `label`: writes `token.json`
/// (module, label) and `pin` (mode 0600) into `dir`. Returns the configuration's path.
fn make_token(dir: &Path, label: &str) -> PathBuf {
    let base = dir.join("softhsm");
    let tokens = base.join("tokens");
    std::fs::create_dir_all(&tokens).expect("create the SoftHSM2 token directory");
    let conf = base.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .expect("write softhsm2.conf");
    let pin = random_hex(12);
    let output = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label, "--pin", &pin])
        .args(["--so-pin", &random_hex(12)])
        .output()
        .expect("run softhsm2-util (is the softhsm2 package installed?)");
    assert!(
        output.status.success(),
        "softhsm2-util --init-token: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    write_private(&dir.join("pin"), &pin);
    std::fs::write(
        dir.join("token.json"),
        json!({ "module": softhsm_module(), "label": label }).to_string(),
    )
    .expect("write token.json");
    conf
}

/// Runs `command`, checks it succeeded, and parses the last line of its stdout as JSON.
fn run_json(mut command: Command, what: &str) -> Value {
    command.stdin(Stdio::null());
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what} printed nothing"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} printed {line:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Cold open

/// An implementation measured by the cold-open scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdOpenImpl {
    /// Tchap Secure (`bench_cold_open_ours`, the shipped zeroizing allocator).
    TchapSecure,
    /// matrix-sdk 0.18, stores encrypted with a passphrase (what `sqlite_store` does).
    MatrixSdk,
    /// matrix-sdk 0.18, stores encrypted with a raw 32-byte key (no PBKDF2).
    MatrixSdkRawKey,
    /// The limit: SQLCipher opened with the raw key, rooms counted, one session read and
    /// used with bare vodozemac.
    RawSqlcipher,
}

impl ColdOpenImpl {
    /// Every implementation, in table order.
    pub const ALL: [Self; 4] = [
        Self::TchapSecure,
        Self::MatrixSdk,
        Self::MatrixSdkRawKey,
        Self::RawSqlcipher,
    ];

    /// The name in results (`implementation` of the binary's JSON).
    pub fn name(self) -> &'static str {
        match self {
            Self::TchapSecure => "tchap-secure",
            Self::MatrixSdk => "matrix-sdk",
            Self::MatrixSdkRawKey => "matrix-sdk (raw store key)",
            Self::RawSqlcipher => "raw-sqlcipher",
        }
    }
}

/// The cached cold-open fixture.
#[derive(Clone, Debug)]
pub struct ColdOpenFixture {
    /// Its directory.
    pub dir: PathBuf,
    /// Its size.
    pub spec: ColdOpenSpec,
    /// What `bench_cold_open_ours prepare` reported (rooms, sessions, probes, …).
    pub manifest: Value,
}

/// The fixture of issue 7 (1,000 rooms, 100,000 inbound sessions), cached.
pub fn cold_open_fixture(bins: &Bins) -> ColdOpenFixture {
    cold_open_fixture_with(bins, &ColdOpenSpec::issue_7())
}

/// A cold-open fixture of size `spec`, cached under [`cache_root`]; written first if missing
/// or incomplete (a `complete` file is its last write).
pub fn cold_open_fixture_with(bins: &Bins, spec: &ColdOpenSpec) -> ColdOpenFixture {
    let dir = cache_root().join("bench-fixtures").join(format!(
        "{COLD_OPEN_FIXTURE_VERSION}-{}r-{}s",
        spec.rooms, spec.inbound_sessions
    ));
    let complete = dir.join("complete");
    if !complete.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("remove the incomplete {}: {e}", dir.display()));
        }
        write_cold_open_fixture(bins, &dir, spec);
        std::fs::write(&complete, COLD_OPEN_FIXTURE_VERSION).expect("mark the fixture complete");
    }
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(dir.join("ours-manifest.json")).expect("read ours-manifest.json"),
    )
    .expect("ours-manifest.json");
    ColdOpenFixture {
        dir,
        spec: spec.clone(),
        manifest,
    }
}

fn write_cold_open_fixture(bins: &Bins, dir: &Path, spec: &ColdOpenSpec) {
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let conf = make_token(dir, "bench-cold-open");
    let pki = Pki::generate();
    std::fs::write(
        dir.join("config.json"),
        json!({
            // Nothing listens there: a cold open needs no network.
            "homeserver_url": "https://localhost:9",
            "server_name": crate::synapse::SERVER_NAME,
            "trust_anchors_pem": [pki.root_ca_pem],
            "spki_pins_sha256": [pki.server_pin(), pki.backup_pin],
        })
        .to_string(),
    )
    .expect("write config.json");
    std::fs::write(
        dir.join("spec.json"),
        serde_json::to_vec(spec).expect("encode the spec"),
    )
    .expect("write spec.json");
    write_private(&dir.join("matrix-sdk.passphrase"), random_hex(32));
    write_private(&dir.join("matrix-sdk.key"), random_hex(32));

    let mut ours = Command::new(bins.path("bench_cold_open_ours"));
    ours.arg("prepare").arg(dir).env("SOFTHSM2_CONF", &conf);
    let prepared = run_json(ours, "bench_cold_open_ours prepare");
    eprintln!("cold-open fixture: {prepared}");
    let mut sdk = Command::new(bins.path("bench_cold_open_matrix_sdk"));
    sdk.arg("prepare").arg(dir);
    let prepared = run_json(sdk, "bench_cold_open_matrix_sdk prepare");
    eprintln!("cold-open fixture: {prepared}");
}

impl ColdOpenFixture {
    /// The fixture's own SoftHSM2 configuration (what `SOFTHSM2_CONF` must name).
    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm").join("softhsm2.conf")
    }

    /// The command measuring `implementation` (without `--spawned-at-ns`): for a driver that
    /// times the spawn itself.
    pub fn command(&self, bins: &Bins, implementation: ColdOpenImpl, probe: usize) -> Command {
        let (bin, extra): (&str, &[&str]) = match implementation {
            ColdOpenImpl::TchapSecure => ("bench_cold_open_ours", &[]),
            ColdOpenImpl::MatrixSdk => ("bench_cold_open_matrix_sdk", &["--store", "passphrase"]),
            ColdOpenImpl::MatrixSdkRawKey => ("bench_cold_open_matrix_sdk", &["--store", "key"]),
            ColdOpenImpl::RawSqlcipher => ("bench_cold_open_raw_sqlcipher", &[]),
        };
        let mut command = Command::new(bins.path(bin));
        command
            .arg("run")
            .arg(&self.dir)
            .args(extra)
            .args(["--probe", &probe.to_string()])
            .env("SOFTHSM2_CONF", self.softhsm_conf());
        command
    }

    /// One cold open of `implementation` in a fresh process, decrypting probe `probe`: the
    /// binary's JSON (`ms`: spawn → ready; `open_ms`: spawn → client open).
    pub fn run(&self, bins: &Bins, implementation: ColdOpenImpl, probe: usize) -> Value {
        let mut command = self.command(bins, implementation, probe);
        command.stdin(Stdio::null());
        command.arg("--spawned-at-ns");
        // The argument is the last thing set: the clock is read as late as possible.
        let spawned_at = monotonic_ns();
        command.arg(spawned_at.to_string());
        run_json(command, implementation.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Initial sync

/// An implementation measured by the initial-sync scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialSyncImpl {
    /// Tchap Secure (`bench_initial_sync_ours`, the shipped zeroizing allocator).
    TchapSecure,
    /// matrix-sdk 0.18 with its SQLite stores, passphrase-encrypted
    /// (`bench_initial_sync_matrix_sdk`).
    MatrixSdk,
}

impl InitialSyncImpl {
    /// Both, in table order.
    pub const ALL: [Self; 2] = [Self::TchapSecure, Self::MatrixSdk];

    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::TchapSecure => "tchap-secure",
            Self::MatrixSdk => "matrix-sdk",
        }
    }
}

/// A Synapse account joined to many encrypted rooms, for the initial-sync scenario.
#[derive(Debug)]
pub struct InitialSyncAccount {
    /// The scenario directory the binaries read: `scenario.json` (client configuration, user,
    /// room count), `password` and `matrix-sdk.passphrase` (mode 0600).
    pub dir: PathBuf,
    /// Its user id.
    pub user_id: String,
    /// How many rooms it is joined to.
    pub rooms: usize,
    _dir: TempDir,
}

/// Registers a user on the shared Synapse and joins it to `rooms` encrypted rooms created by
/// another user, each with [`MESSAGES_PER_ROOM`] encrypted messages. Once per run: every
/// measured login makes a new device of this user.
pub fn initial_sync_account(rooms: usize) -> InitialSyncAccount {
    let synapse = Synapse::shared();
    let localpart = synapse.unique_user("bench-sync");
    let user = synapse.register(&localpart, crate::harness::PASSWORD, false);
    let peer = synapse.register(
        &synapse.unique_user("bench-peer"),
        crate::harness::PASSWORD,
        false,
    );
    // The peer's Megolm sender identity: real keys, never uploaded (the user's devices are
    // never given a room key, as for any device that logs in after the messages were sent).
    let peer_keys = vodozemac::olm::Account::new();
    let sender_key = peer_keys.curve25519_key().to_base64();
    for i in 0..rooms {
        let (status, created) = synapse.request(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&peer.access_token),
            Some(&json!({
                "preset": "private_chat",
                "visibility": "private",
                "name": format!("Cellule de crise {i}"),
                "invite": [user.user_id],
                "initial_state": [{
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": { "algorithm": "m.megolm.v1.aes-sha2" },
                }],
            })),
        );
        assert_eq!(status, 200, "createRoom: {created}");
        let room_id = created["room_id"].as_str().expect("room_id").to_owned();
        let (status, joined) = synapse.request(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room_id}/join"),
            Some(&user.access_token),
            Some(&json!({})),
        );
        assert_eq!(status, 200, "join {room_id}: {joined}");
        let mut session =
            vodozemac::megolm::GroupSession::new(vodozemac::megolm::SessionConfig::version_1());
        for m in 0..MESSAGES_PER_ROOM {
            let plaintext = json!({
                "type": "m.room.message",
                "content": { "msgtype": "m.text", "body": format!("Point {m} de la cellule {i}") },
                "room_id": room_id,
            })
            .to_string();
            let ciphertext = session.encrypt(plaintext.as_bytes()).to_base64();
            let (status, sent) = synapse.request(
                "PUT",
                &format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.encrypted/bench{i}-{m}"),
                Some(&peer.access_token),
                Some(&json!({
                    "algorithm": "m.megolm.v1.aes-sha2",
                    "sender_key": sender_key,
                    "ciphertext": ciphertext,
                    "session_id": session.session_id(),
                    "device_id": peer.device_id,
                })),
            );
            assert_eq!(status, 200, "send in {room_id}: {sent}");
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("tchap-bench-initial-sync-")
        .tempdir()
        .expect("a scenario directory");
    std::fs::write(
        dir.path().join("scenario.json"),
        json!({
            "config": synapse.client_config(),
            "localpart": localpart,
            "user_id": user.user_id,
            "rooms": rooms,
            "messages_per_room": MESSAGES_PER_ROOM,
        })
        .to_string(),
    )
    .expect("write scenario.json");
    write_private(&dir.path().join("password"), crate::harness::PASSWORD);
    write_private(&dir.path().join("matrix-sdk.passphrase"), random_hex(32));
    InitialSyncAccount {
        dir: dir.path().to_owned(),
        user_id: user.user_id,
        rooms,
        _dir: dir,
    }
}

impl InitialSyncAccount {
    /// One login and first sync of `implementation` in a fresh process with a fresh data
    /// directory (and, for ours, a fresh SoftHSM2 token): the binary's JSON (`ms`, phases,
    /// `peak_rss_kib`).
    pub fn run(&self, bins: &Bins, implementation: InitialSyncImpl) -> Value {
        let work = tempfile::Builder::new()
            .prefix("tchap-bench-sync-run-")
            .tempdir()
            .expect("a work directory");
        let mut command = match implementation {
            InitialSyncImpl::TchapSecure => {
                let conf = make_token(work.path(), "bench-initial-sync");
                let mut command = Command::new(bins.path("bench_initial_sync_ours"));
                command.env("SOFTHSM2_CONF", conf);
                command
            }
            InitialSyncImpl::MatrixSdk => Command::new(bins.path("bench_initial_sync_matrix_sdk")),
        };
        command.arg(&self.dir).arg(work.path());
        run_json(command, implementation.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Catch-up after a flight

/// Rooms of the catch-up scenario (issue 14).
pub const CATCH_UP_ROOMS: usize = 20;
/// Messages sent in each room while the members are offline.
pub const CATCH_UP_MESSAGES_PER_ROOM: usize = 250;
/// Accounts that send them (round-robin: message `m` of a room is sent by sender `m % 10`).
pub const CATCH_UP_SENDERS: usize = 10;
/// Changes with the fixture's layout (the binaries check it).
pub const CATCH_UP_FIXTURE_VERSION: &str = "catch-up-v1";

/// An implementation measured by the catch-up scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpImpl {
    /// Tchap Secure (`bench_catchup_ours`, the shipped zeroizing allocator).
    TchapSecure,
    /// matrix-sdk 0.18: its sync, its event cache's back-pagination, its SQLite stores
    /// (`bench_catchup_matrix_sdk`).
    MatrixSdk,
}

impl CatchUpImpl {
    /// Both, in table order.
    pub const ALL: [Self; 2] = [Self::TchapSecure, Self::MatrixSdk];

    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::TchapSecure => "tchap-secure",
            Self::MatrixSdk => "matrix-sdk",
        }
    }

    fn bin(self) -> &'static str {
        match self {
            Self::TchapSecure => "bench_catchup_ours",
            Self::MatrixSdk => "bench_catchup_matrix_sdk",
        }
    }
}

/// The size of a catch-up fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUpSpec {
    /// Encrypted rooms both members are in.
    pub rooms: usize,
    /// Messages sent in each room while the members are offline.
    pub messages_per_room: usize,
    /// Sender accounts (one device each, our client).
    pub senders: usize,
}

impl CatchUpSpec {
    /// 20 rooms × 250 messages from 10 senders.
    pub fn issue_14() -> Self {
        Self {
            rooms: CATCH_UP_ROOMS,
            messages_per_room: CATCH_UP_MESSAGES_PER_ROOM,
            senders: CATCH_UP_SENDERS,
        }
    }

    /// The scenario name in results, e.g. `catch_up_20x250_10_senders`.
    pub fn scenario(&self) -> String {
        format!(
            "catch_up_{}x{}_{}_senders",
            self.rooms, self.messages_per_room, self.senders
        )
    }

    /// Messages in all.
    pub fn messages(&self) -> usize {
        self.rooms * self.messages_per_room
    }
}

/// Two members, "ours" (our client, data directory on its own SoftHSM2 token) and "sdk"
/// (matrix-sdk 0.18 with its SQLite stores), each behind by `messages_per_room` messages in
/// every room of the fixture: they synced once after joining, then went offline while the
/// senders wrote. Each member can catch up once ([`CatchUpFixture::run`]): after that it is no
/// longer behind; build another fixture for another run.
///
/// Directory (`tchap-bench-catch-up-*` under the temporary directory, removed on drop):
/// `scenario.json` (client configuration, room ids, the members' localparts, the spec),
/// `expected.tsv` (one line per message sent: room index, event id, body), `password` and
/// `matrix-sdk.passphrase` (mode 0600), `ours/` (`token.json`, `pin`, `softhsm/`, `data/`) and
/// `matrix-sdk/` (`store/`, `session.json`, mode 0600).
#[derive(Debug)]
pub struct CatchUpFixture {
    /// The fixture directory.
    pub dir: PathBuf,
    /// Its size.
    pub spec: CatchUpSpec,
    /// How long writing it took (registration, rooms, members' first syncs, the sends), and
    /// how many of each kind of request it made: for the log.
    pub setup: Value,
    ran: std::sync::Mutex<Vec<CatchUpImpl>>,
    _dir: TempDir,
}

/// Writes a catch-up fixture of size `spec` on the shared Synapse (see [`CatchUpFixture`]):
/// registers `spec.senders` senders and the two members; sender 0 creates `spec.rooms`
/// encrypted rooms inviting everyone; the other senders join; each member logs in on a new
/// device in its own process (`bench_catchup_* prepare`), joins every room and syncs until
/// each room is stored; the senders (our client, in this process) sync once, then send
/// `spec.messages_per_room` messages per room, 10 senders at once. Each sender's first message
/// in a room shares its Megolm session (Olm, to-device) with every member device, the two
/// members' included: 200 room keys wait on the server for each member, as the messages do.
pub fn catch_up_fixture(bins: &Bins, spec: CatchUpSpec) -> CatchUpFixture {
    use tchap_secure_core::Client;

    let t0 = std::time::Instant::now();
    let synapse = Synapse::shared();
    let dir = tempfile::Builder::new()
        .prefix("tchap-bench-catch-up-")
        .tempdir()
        .expect("a fixture directory");
    let root = dir.path().to_owned();
    let ours_local = synapse.unique_user("bench-catchup-ours");
    let sdk_local = synapse.unique_user("bench-catchup-sdk");
    let ours = synapse.register(&ours_local, crate::harness::PASSWORD, false);
    let sdk = synapse.register(&sdk_local, crate::harness::PASSWORD, false);
    let sender_locals: Vec<String> = (0..spec.senders)
        .map(|i| synapse.unique_user(&format!("bench-catchup-sender{i}")))
        .collect();
    let sender_ids: Vec<String> = sender_locals
        .iter()
        .map(|l| synapse.register(l, crate::harness::PASSWORD, false).user_id)
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let homes: Vec<crate::harness::InProcess> = (0..spec.senders)
        .map(|i| crate::harness::InProcess::new(&format!("catchup-sender{i}")))
        .collect();
    let mut senders: Vec<Client> = {
        let _entered = runtime.enter();
        homes
            .iter()
            .map(|h| h.open().expect("open a sender's client"))
            .collect()
    };
    let password = crate::harness::password();
    let room_ids: Vec<String> = runtime.block_on(async {
        for (client, local) in senders.iter_mut().zip(&sender_locals) {
            client
                .login(local, &password, "bench catch-up sender")
                .await
                .expect("a sender logs in");
        }
        let mut invite: Vec<String> = sender_ids[1..].to_vec();
        invite.push(ours.user_id.clone());
        invite.push(sdk.user_id.clone());
        let mut rooms = Vec::with_capacity(spec.rooms);
        for r in 0..spec.rooms {
            let room = senders[0]
                .create_room(Some(&format!("Vol {r}")), &invite, false)
                .await
                .expect("create a room");
            for sender in &mut senders[1..] {
                sender.join(&room).await.expect("a sender joins");
            }
            rooms.push(room);
        }
        rooms
    });
    let t_rooms = t0.elapsed();

    std::fs::write(
        root.join("scenario.json"),
        json!({
            "version": CATCH_UP_FIXTURE_VERSION,
            "config": synapse.client_config(),
            "rooms": room_ids,
            "messages_per_room": spec.messages_per_room,
            "senders": spec.senders,
            "scenario": spec.scenario(),
            "ours": { "localpart": ours_local, "user_id": ours.user_id },
            "sdk": { "localpart": sdk_local, "user_id": sdk.user_id },
        })
        .to_string(),
    )
    .expect("write scenario.json");
    write_private(&root.join("password"), crate::harness::PASSWORD);
    write_private(&root.join("matrix-sdk.passphrase"), random_hex(32));
    std::fs::create_dir_all(root.join("ours")).expect("create ours/");
    std::fs::create_dir_all(root.join("matrix-sdk")).expect("create matrix-sdk/");
    let conf = make_token(&root.join("ours"), "bench-catch-up");
    let mut prepare = Command::new(bins.path(CatchUpImpl::TchapSecure.bin()));
    prepare
        .arg("prepare")
        .arg(&root)
        .env("SOFTHSM2_CONF", &conf);
    let prepared_ours = run_json(prepare, "bench_catchup_ours prepare");
    let mut prepare = Command::new(bins.path(CatchUpImpl::MatrixSdk.bin()));
    prepare.arg("prepare").arg(&root);
    let prepared_sdk = run_json(prepare, "bench_catchup_matrix_sdk prepare");
    let t_members = t0.elapsed();

    // The senders learn that both members joined (and their devices) before writing.
    let members = spec.senders + 2;
    runtime.block_on(async {
        for sender in &mut senders {
            for _ in 0..5 {
                sender
                    .sync_once(std::time::Duration::ZERO)
                    .await
                    .expect("a sender syncs");
                let all_in =
                    room_ids.iter().all(|r| {
                        sender.store().room(r).ok().flatten().is_some_and(|s| {
                            usize::try_from(s.joined_members).unwrap_or(0) >= members
                        })
                    });
                if all_in {
                    break;
                }
            }
        }
    });
    for (i, sender) in senders.iter().enumerate() {
        for r in &room_ids {
            let joined = sender
                .store()
                .room(r)
                .expect("read a room")
                .map_or(0, |s| s.joined_members);
            assert!(
                usize::try_from(joined).unwrap_or(0) >= members,
                "sender {i} sees {joined} of {members} members in {r}"
            );
        }
    }

    // Sender k writes messages m ≡ k (mod senders) of every room, rooms interleaved; the
    // senders write at the same time.
    // (Our client's futures are not `Send`: one thread and runtime per sender.)
    let sent: Vec<(usize, usize, String, String)> = std::thread::scope(|scope| {
        let threads: Vec<_> = senders
            .drain(..)
            .enumerate()
            .map(|(k, mut sender)| {
                let room_ids = &room_ids;
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a sender's runtime");
                    let mut sent = Vec::new();
                    let mut queued = Vec::new();
                    runtime.block_on(async {
                        for m in (k..spec.messages_per_room).step_by(spec.senders) {
                            for (r, room) in room_ids.iter().enumerate() {
                                let body = format!("Vol {r}, message {m} de l'expéditeur {k}");
                                match sender.send_text(room, &body).await {
                                    Ok(event_id) => sent.push((r, m, event_id, body)),
                                    // A transient failure (Synapse busy: SQLite): the message
                                    // stays in the outbox, sent by a later flush.
                                    Err(tchap_secure_core::Error::SendQueued {
                                        local_id, ..
                                    }) => queued.push((r, m, local_id, body)),
                                    Err(e) => panic!("sender {k}: send in room {r}: {e}"),
                                }
                            }
                        }
                        let retried = queued.len();
                        for _ in 0..120 {
                            if queued.is_empty() {
                                break;
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                            // A sync flushes the outbox.
                            sender
                                .sync_once(std::time::Duration::ZERO)
                                .await
                                .expect("a sender syncs");
                            queued.retain(|(r, m, local_id, body)| {
                                let rows = sender
                                    .messages(&room_ids[*r], 100_000)
                                    .expect("a sender's timeline");
                                let done = rows.iter().find(|e| {
                                    e.local_id.as_deref() == Some(local_id.as_str())
                                        && !e.event_id.starts_with('~')
                                });
                                match done {
                                    Some(e) => {
                                        sent.push((*r, *m, e.event_id.clone(), body.clone()));
                                        false
                                    }
                                    None => true,
                                }
                            });
                        }
                        assert!(
                            queued.is_empty(),
                            "sender {k}: {} messages still queued after retries",
                            queued.len()
                        );
                        if retried > 0 {
                            eprintln!("sender {k}: {retried} sends retried (transient failures)");
                        }
                    });
                    drop(sender);
                    sent
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a sender thread"))
            .collect()
    });
    let t_sent = t0.elapsed();
    assert_eq!(sent.len(), spec.messages(), "messages sent");
    let mut sorted = sent;
    sorted.sort_by_key(|(r, m, _, _)| (*r, *m));
    let mut tsv = String::new();
    for (r, _, event_id, body) in &sorted {
        use std::fmt::Write as _;
        let _ = writeln!(tsv, "{r}\t{event_id}\t{body}");
    }
    std::fs::write(root.join("expected.tsv"), tsv).expect("write expected.tsv");
    runtime.shutdown_background();
    drop(homes);
    let setup = json!({
        "rooms_s": t_rooms.as_secs_f64(),
        "members_prepared_s": (t_members - t_rooms).as_secs_f64(),
        "sends_s": (t_sent - t_members).as_secs_f64(),
        "messages": spec.messages(),
        "ours_prepare": prepared_ours,
        "sdk_prepare": prepared_sdk,
    });
    CatchUpFixture {
        dir: root,
        spec,
        setup,
        ran: std::sync::Mutex::new(Vec::new()),
        _dir: dir,
    }
}

impl CatchUpFixture {
    /// The catch-up of `implementation`'s member in a fresh process: the binary's JSON (`ms`:
    /// reconnect → every message stored and decrypted; `messages`; `peak_rss_kib`; …) with
    /// `order` added (1 if this member caught up first on this fixture, 2 if second). Panics
    /// if that member already caught up on this fixture.
    pub fn run(&self, bins: &Bins, implementation: CatchUpImpl) -> Value {
        let order = {
            let mut ran = self.ran.lock().expect("the run list");
            assert!(
                !ran.contains(&implementation),
                "{} already caught up on this fixture: build another one",
                implementation.name()
            );
            ran.push(implementation);
            ran.len()
        };
        let mut command = Command::new(bins.path(implementation.bin()));
        command.arg("run").arg(&self.dir);
        if implementation == CatchUpImpl::TchapSecure {
            command.env(
                "SOFTHSM2_CONF",
                self.dir.join("ours").join("softhsm").join("softhsm2.conf"),
            );
        }
        command.stdin(Stdio::null());
        command.arg("--spawned-at-ns");
        // The argument is the last thing set: the clock is read as late as possible.
        let spawned_at = monotonic_ns();
        command.arg(spawned_at.to_string());
        let mut result = run_json(command, implementation.bin());
        result["order"] = json!(order);
        result
    }
}
