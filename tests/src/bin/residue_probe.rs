//! A process that uses the library like the app does and then looks for secrets in its own
//! memory (`tests/tests/residue.rs` drives it).
//!
//! It installs the same global allocator as the shipped artifacts (the JNI library and the
//! CLI, through `tchap_secure_memory::install_zeroizing_allocator!`) and uses only the public
//! API of the core and of the vault. It deliberately does not link the testbed library (whose
//! SoftHSM2 set-up runs before `main`): everything comes from its parent.
//!
//! Modes (first argument):
//! - `flow`: two clients (alice, bob) on two tokens log in, create an encrypted room, exchange
//!   one message each way, and are closed (dropped, runtime shut down). Then the probe prints
//!   `closed`, reads the canaries its parent computed (each as a random mask and the canary
//!   XOR the mask, so the canary itself never enters this process again), scans every readable
//!   mapping of `/proc/self/mem`, and prints one JSON line per canary with where it was found.
//!   A `control` canary is unmasked on purpose and kept alive during the scan: it must be found,
//!   which proves the scanner sees the heap.
//! - `crash-before-open` / `crash-after-open`: abort (SIGABRT) before or after opening a
//!   client, to show that opening a client stops the kernel from writing a core file.
//!
//! Environment: `SOFTHSM2_CONF` (the parent's token directory), `RESIDUE_MODULE` (PKCS#11
//! module), `RESIDUE_CONFIG` (client configuration file), `RESIDUE_DIR_A`/`_B` (data
//! directories), `RESIDUE_TOKEN_A`/`_B` (token labels), `RESIDUE_USER_A`/`_B` (user ids).
//! Stdin (`flow`): hex lines password, PIN A, PIN B, body A, body B; later the canaries.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use zeroize::Zeroizing;

tchap_secure_memory::install_zeroizing_allocator!();

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Stdin without std's buffer: `std::io::stdin()` keeps an 8 KiB buffer for the life of the
/// process, which would hold the secrets it read (a residue the probe itself would create).
fn stdin() -> File {
    use std::os::fd::AsFd;
    File::from(std::io::stdin().as_fd().try_clone_to_owned().unwrap())
}

/// Reads one line, byte by byte (no buffer to leave behind), into zeroizing memory.
fn read_line(input: &mut File) -> Zeroizing<Vec<u8>> {
    let mut line = Zeroizing::new(Vec::with_capacity(256));
    let mut byte = [0u8; 1];
    loop {
        let n = input.read(&mut byte).unwrap();
        if n == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    zeroize::Zeroize::zeroize(&mut byte);
    line
}

fn unhex(hex: &[u8]) -> Zeroizing<Vec<u8>> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex from the parent"),
    };
    Zeroizing::new(
        hex.chunks(2)
            .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
            .collect(),
    )
}

fn read_secret(input: &mut File) -> Zeroizing<Vec<u8>> {
    unhex(&read_line(input))
}

fn vault(label_var: &str, pin: &[u8]) -> Pkcs11Vault {
    Pkcs11Vault::open(
        &Pkcs11Config {
            module: PathBuf::from(env("RESIDUE_MODULE")),
            token_label: env(label_var),
        },
        &SecretBytes::from(pin),
    )
    .unwrap()
}

fn config() -> Config {
    let bytes = Zeroizing::new(std::fs::read(env("RESIDUE_CONFIG")).unwrap());
    Config::from_json(&bytes).unwrap()
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("flow") => flow(),
        Some("crash-before-open") => std::process::abort(),
        Some("crash-after-open") => crash_after_open(),
        other => panic!("unknown mode {other:?}"),
    }
}

fn crash_after_open() {
    let pin = Zeroizing::new(env("RESIDUE_PIN_A").into_bytes());
    let vault = vault("RESIDUE_TOKEN_A", &pin);
    let client = Client::open(config(), Path::new(&env("RESIDUE_DIR_A")), &vault).unwrap();
    println!(
        "dumpable={} core_limit={:?}",
        tchap_secure_memory::is_dumpable(),
        tchap_secure_memory::core_file_limit()
    );
    std::io::stdout().flush().unwrap();
    // Keep the client alive: the crash happens with secrets in memory.
    std::hint::black_box(&client);
    std::process::abort();
}

fn flow() {
    let mut input = stdin();
    {
        let password = SecretBytes::new(read_secret(&mut input).to_vec());
        let pin_a = read_secret(&mut input);
        let pin_b = read_secret(&mut input);
        let body_a = Zeroizing::new(String::from_utf8(read_secret(&mut input).to_vec()).unwrap());
        let body_b = Zeroizing::new(String::from_utf8(read_secret(&mut input).to_vec()).unwrap());
        let (vault_a, vault_b) = (
            vault("RESIDUE_TOKEN_A", &pin_a),
            vault("RESIDUE_TOKEN_B", &pin_b),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut alice = Client::open(config(), Path::new(&env("RESIDUE_DIR_A")), &vault_a).unwrap();
        let mut bob = Client::open(config(), Path::new(&env("RESIDUE_DIR_B")), &vault_b).unwrap();
        rt.block_on(alice.login(&env("RESIDUE_USER_A"), &password, "residue-a"))
            .unwrap();
        rt.block_on(bob.login(&env("RESIDUE_USER_B"), &password, "residue-b"))
            .unwrap();
        drop(password);
        let room = rt
            .block_on(alice.create_room(None, &[env("RESIDUE_USER_B")], false))
            .unwrap();
        rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
        rt.block_on(bob.join(&room)).unwrap();
        rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
        rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
        rt.block_on(alice.send_text(&room, &body_a)).unwrap();
        receive(&rt, &mut bob, &room, &body_a);
        rt.block_on(bob.send_text(&room, &body_b)).unwrap();
        receive(&rt, &mut alice, &room, &body_b);
        // Close: what the app does when it goes to the background for good.
        drop(alice);
        drop(bob);
        drop(vault_a);
        drop(vault_b);
        rt.shutdown_timeout(Duration::from_secs(5));
    }
    println!("closed");
    std::io::stdout().flush().unwrap();
    scan(&mut input);
}

fn receive(rt: &tokio::runtime::Runtime, client: &mut Client, room: &str, body: &str) {
    for _ in 0..20 {
        let summary = rt
            .block_on(client.sync_once(Duration::from_millis(500)))
            .unwrap();
        if summary
            .messages
            .iter()
            .any(|m| m.room_id == room && m.body.as_deref() == Some(body))
        {
            return;
        }
    }
    panic!("a message never arrived");
}

/// A canary as sent by the parent: never unmasked (except the control).
struct Masked {
    name: String,
    mask: Vec<u8>,
    masked: Vec<u8>,
}

impl Masked {
    fn matches_at(&self, window: &[u8]) -> bool {
        window.len() >= self.mask.len()
            && self
                .mask
                .iter()
                .zip(&self.masked)
                .zip(window)
                .all(|((m, c), w)| w ^ m == *c)
    }

    fn first_byte(&self) -> u8 {
        self.mask[0] ^ self.masked[0]
    }
}

fn scan(input: &mut File) {
    let mut canaries = Vec::new();
    loop {
        let line = read_line(input);
        if line.as_slice() == b"end" {
            break;
        }
        let text = String::from_utf8(line.to_vec()).unwrap();
        let mut fields = text.split('\t');
        let (Some(name), Some(mask), Some(masked)) = (fields.next(), fields.next(), fields.next())
        else {
            panic!("bad canary line");
        };
        canaries.push(Masked {
            name: name.to_owned(),
            mask: unhex(mask.as_bytes()).to_vec(),
            masked: unhex(masked.as_bytes()).to_vec(),
        });
    }
    // The positive control, deliberately unmasked and alive during the scan.
    let control: Vec<u8> = canaries
        .iter()
        .find(|c| c.name == "control")
        .map(|c| c.mask.iter().zip(&c.masked).map(|(m, c)| m ^ c).collect())
        .unwrap_or_default();
    let longest = canaries.iter().map(|c| c.mask.len()).max().unwrap_or(1);

    // One pass over memory: the canaries to try, by their first byte.
    let mut by_first_byte: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (k, canary) in canaries.iter().enumerate() {
        by_first_byte[usize::from(canary.first_byte())].push(k);
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mem = File::open("/proc/self/mem").unwrap();
    let mut hits: Vec<Vec<String>> = vec![Vec::new(); canaries.len()];
    let mut scanned = 0u64;
    const CHUNK: usize = 1 << 20;
    let mut buffer = vec![0u8; CHUNK + longest];
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = parts.nth(3).unwrap_or("[anonymous]").to_owned();
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let mut offset = start;
        let mut carried = 0usize;
        while offset < end {
            let want = usize::try_from((end - offset).min(CHUNK as u64)).unwrap();
            let Ok(n) = mem.read_at(&mut buffer[carried..carried + want], offset) else {
                break;
            };
            if n == 0 {
                break;
            }
            let filled = carried + n;
            let window = &buffer[..filled];
            for (i, byte) in window.iter().enumerate() {
                for &k in &by_first_byte[usize::from(*byte)] {
                    if canaries[k].matches_at(&window[i..]) {
                        let addr = offset - carried as u64 + i as u64;
                        hits[k].push(format!("{name} {perms} +0x{:x}", addr - start));
                    }
                }
            }
            scanned += n as u64;
            offset += n as u64;
            // Keep the tail so a canary across two chunks is found; a match entirely inside
            // the tail was already reported, so only the part that can start a new match is
            // kept (longest - 1 bytes).
            let keep = (longest - 1).min(filled);
            buffer.copy_within(filled - keep..filled, 0);
            carried = keep;
        }
        buffer[..carried].fill(0);
    }
    std::hint::black_box(&control);
    for (canary, found) in canaries.iter().zip(&hits) {
        let mut found = found.clone();
        found.dedup();
        println!(
            "{}",
            serde_json::json!({ "canary": canary.name, "hits": found, "scanned": scanned })
        );
    }
    std::io::stdout().flush().unwrap();
}
