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
//! - `cli-exit <tchap-secure binary> <arguments…>`: runs the shipped CLI as it is (its own
//!   global allocator, its own stdin reading), stdin from the file `RESIDUE_CLI_STDIN`, stdout
//!   to the file `RESIDUE_CLI_STDOUT`, traced with `ptrace` only to stop it at the very end of
//!   its life (`PTRACE_EVENT_EXIT`: `main` has returned, every destructor and `atexit` handler
//!   has run, the address space is still whole). Then it prints `exited <status>`, reads the
//!   canaries like `flow` and scans the CLI's memory (`/proc/<pid>/mem`) instead of its own.
//!   The CLI makes itself non-dumpable, so reading its memory takes `CAP_SYS_PTRACE` (the
//!   test bed runs as root); without it the scan fails loudly rather than finding nothing.
//!
//! Environment: `SOFTHSM2_CONF` (the parent's token directory), `RESIDUE_MODULE` (PKCS#11
//! module), `RESIDUE_CONFIG` (client configuration file), `RESIDUE_DIR_A`/`_B` (data
//! directories), `RESIDUE_TOKEN_A`/`_B` (token labels), `RESIDUE_USER_A`/`_B` (user ids).
//! Stdin (`flow`): hex lines password, PIN A, PIN B, body A, body B; later the canaries.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
        Some("cli-exit") => cli_exit(),
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
    scan(&mut input, "/proc/self");
}

/// `ptrace(2)` with the pointer-sized arguments of every request used here.
#[allow(unsafe_code, reason = "ptrace is a libc call")]
fn ptrace(request: libc::c_uint, pid: libc::pid_t, data: usize) -> std::io::Result<libc::c_long> {
    // SAFETY: the requests used here (TRACEME, SETOPTIONS, CONT, GETEVENTMSG) take an integer
    // or, for GETEVENTMSG, a pointer to a writable `c_ulong` that the caller passes in `data`
    // and keeps alive across the call; `addr` is ignored by all of them.
    let rc = unsafe { libc::ptrace(request, pid, std::ptr::null_mut::<libc::c_void>(), data) };
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Waits for the traced `pid` to stop (or end) and returns its wait status.
#[allow(unsafe_code, reason = "waitpid is a libc call")]
fn wait_for(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "waitpid: {error}"
        );
    }
}

#[allow(unsafe_code, reason = "pre_exec runs code between fork and exec")]
fn cli_exit() {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let (bin, cli_args) = args.split_first().expect("the CLI binary");
    let mut command = Command::new(bin);
    command
        .args(cli_args)
        .stdin(File::open(env("RESIDUE_CLI_STDIN")).unwrap())
        .stdout(File::create(env("RESIDUE_CLI_STDOUT")).unwrap())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the forked child before exec; it makes one system call
    // (async-signal-safe, no allocation, no lock) and reads errno.
    unsafe {
        command.pre_exec(|| {
            // SAFETY: PTRACE_TRACEME takes no pointer argument.
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0usize, 0usize) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = command.spawn().unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // The tracee stops with SIGTRAP right after exec.
    let status = wait_for(pid);
    assert!(
        libc::WIFSTOPPED(status),
        "the CLI did not stop at exec: {status:#x}"
    );
    let options = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
    ptrace(
        libc::PTRACE_SETOPTIONS,
        pid,
        usize::try_from(options).unwrap(),
    )
    .unwrap();
    ptrace(libc::PTRACE_CONT, pid, 0).unwrap();
    let exit_event = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);
    loop {
        let status = wait_for(pid);
        assert!(
            libc::WIFSTOPPED(status),
            "the CLI ended without an exit stop: {status:#x}"
        );
        if status >> 8 == exit_event {
            break;
        }
        // Any other stop is a signal for the CLI: deliver it untouched.
        let signal = libc::WSTOPSIG(status);
        ptrace(libc::PTRACE_CONT, pid, usize::try_from(signal).unwrap()).unwrap();
    }
    let mut exit_status: libc::c_ulong = 0;
    ptrace(
        libc::PTRACE_GETEVENTMSG,
        pid,
        std::ptr::from_mut(&mut exit_status) as usize,
    )
    .unwrap();
    let code = libc::c_int::try_from(exit_status).unwrap();
    assert!(libc::WIFEXITED(code), "the CLI was killed: {code:#x}");
    println!("exited {}", libc::WEXITSTATUS(code));
    std::io::stdout().flush().unwrap();
    let mut input = stdin();
    scan(&mut input, &format!("/proc/{pid}"));
    ptrace(libc::PTRACE_CONT, pid, 0).unwrap();
    child.wait().unwrap();
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

/// Scans the memory of the process whose `/proc` directory is `proc` for the canaries read
/// from `input`.
fn scan(input: &mut File, proc: &str) {
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
    let maps = std::fs::read_to_string(format!("{proc}/maps")).unwrap();
    let mem = File::open(format!("{proc}/mem"))
        .unwrap_or_else(|e| panic!("cannot open {proc}/mem (CAP_SYS_PTRACE is needed): {e}"));
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
