//! Secrets left in memory, and core dumps (T-SEC-03).
//!
//! A probe process (`src/bin/residue_probe.rs`) uses the library like the app: two clients on
//! two SoftHSM2 tokens log in to the real Synapse, exchange an encrypted message each way and
//! are closed. It then scans its own memory (`/proc/self/maps` + `/proc/self/mem`) for
//! canaries this test computed independently: the password, both PINs, the access tokens (read
//! from Synapse's database), the root secrets (unwrapped here from each `vault.bin` through the
//! token, following the documented file format), the derived keys (raw, and the database key in
//! the hexadecimal form SQLCipher's `PRAGMA key` receives) and both message bodies. None may be
//! found. A control canary that the probe keeps alive must be found, or the scan proves
//! nothing.
//!
//! The probe installs the zeroizing allocator itself, so that test alone would pass if a shipped
//! artifact forgot it. The second test therefore scans the shipped CLI binary itself, with its
//! own allocator and its own reading of secrets on standard input (`--pin-stdin`,
//! `--password-stdin`, the path of issue 15 item 6): stopped at the very end of a `login` (the
//! probe traces it to freeze it at exit), its memory must hold neither the PIN, nor the
//! password, nor the access token or the vault's keys. It fails if the CLI reads its secrets
//! through std's buffered stdin (the buffer is never freed) or if the CLI stops installing
//! the zeroizing allocator (the login request's buffers are then freed unwiped). The third
//! asks the JNI library which global allocator it runs on.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use tchap_secure_hsm::{KekId, KeyVault, Vault, VaultBinding};
use tchap_secure_tests::cli_member::cli_bin;
use tchap_secure_tests::harness::{new_token, open_token, write_private};
use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::synapse::Synapse;

const PROBE: &str = env!("CARGO_BIN_EXE_residue_probe");

fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A printable random canary with a recognisable prefix.
fn canary_text(prefix: &str) -> String {
    format!("{prefix}-{}", hex(&random(12)))
}

struct Member {
    user_id: String,
    token_label: String,
    pin: String,
    dir: std::path::PathBuf,
}

fn member(synapse: &Synapse, prefix: &str, password: &str, root: &Path) -> Member {
    let localpart = synapse.unique_user(prefix);
    let registered = synapse.register(&localpart, password, false);
    let (token_label, pin) = new_token(prefix);
    Member {
        user_id: registered.user_id,
        token_label,
        pin,
        dir: root.join(prefix),
    }
}

/// The root secret of a data directory, unwrapped here from `vault.bin` by following the
/// format documented in `hsm/src/vault.rs` (an independent reading of it), then checked
/// against the vault's own derivation.
fn keys_of(member: &Member, server_name: &str) -> Vec<(String, Vec<u8>)> {
    let backend = open_token(&member.token_label, &member.pin).unwrap();
    let file = std::fs::read(member.dir.join("vault.bin")).unwrap();
    assert_eq!(file.len(), 87);
    let mut aad = b"tchap-secure/v1".to_vec();
    aad.extend_from_slice(&file[..25]);
    aad.extend_from_slice(&u16::try_from(server_name.len()).unwrap().to_be_bytes());
    aad.extend_from_slice(server_name.as_bytes());
    let kek = KekId::from_bytes(file[9..25].try_into().unwrap());
    let root = backend.unwrap(&kek, &aad, &file[27..]).unwrap();
    let vault = Vault::open(
        &member.dir,
        &backend,
        &VaultBinding {
            server_name: server_name.to_owned(),
        },
    )
    .unwrap();
    let database_key = *vault.database_key().expose();
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"tchap-secure/v1/hkdf-salt");
    let mut derived = [0u8; 32];
    salt.extract(root.expose())
        .expand(&[b"tchap-secure/v1/database"], ring::hkdf::HKDF_SHA256)
        .unwrap()
        .fill(&mut derived)
        .unwrap();
    assert_eq!(
        derived, database_key,
        "the root secret unwrapped here is the vault's"
    );
    let who = &member.token_label;
    vec![
        (format!("root secret ({who})"), root.expose().to_vec()),
        (format!("database key ({who})"), database_key.to_vec()),
        (
            format!("database key as PRAGMA hex ({who})"),
            hex(&database_key).into_bytes(),
        ),
        (
            format!("pickle key ({who})"),
            vault.pickle_key().expose().to_vec(),
        ),
        (
            format!("media key ({who})"),
            vault.media_key().expose().to_vec(),
        ),
    ]
}

#[test]
fn no_secret_is_left_in_process_memory_after_close() {
    let synapse = Synapse::shared();
    let scratch = tempfile::tempdir().unwrap();
    let password = canary_text("canary-password");
    let a = member(synapse, "residue-a", &password, scratch.path());
    let b = member(synapse, "residue-b", &password, scratch.path());
    let body_a = canary_text("canary-body: le ministre arrive");
    let body_b = canary_text("canary-body: escorte prête");
    let config_path = scratch.path().join("config.json");
    write_private(&config_path, synapse.client_config().to_string());
    let token = SoftHsmToken::process_wide();

    let mut probe = Command::new(PROBE)
        .arg("flow")
        .env("SOFTHSM2_CONF", &token.conf_path)
        .env("RESIDUE_MODULE", &token.module)
        .env("RESIDUE_CONFIG", &config_path)
        .env("RESIDUE_DIR_A", &a.dir)
        .env("RESIDUE_DIR_B", &b.dir)
        .env("RESIDUE_TOKEN_A", &a.token_label)
        .env("RESIDUE_TOKEN_B", &b.token_label)
        .env("RESIDUE_USER_A", &a.user_id)
        .env("RESIDUE_USER_B", &b.user_id)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = probe.stdin.take().unwrap();
    let mut stdout = BufReader::new(probe.stdout.take().unwrap());
    for secret in [&password, &a.pin, &b.pin, &body_a, &body_b] {
        writeln!(stdin, "{}", hex(secret.as_bytes())).unwrap();
    }
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "closed", "the probe failed before closing");

    let mut canaries: Vec<(String, Vec<u8>)> = vec![
        ("password".into(), password.clone().into_bytes()),
        ("PIN (a)".into(), a.pin.clone().into_bytes()),
        ("PIN (b)".into(), b.pin.clone().into_bytes()),
        ("message body (a → b)".into(), body_a.clone().into_bytes()),
        ("message body (b → a)".into(), body_b.clone().into_bytes()),
    ];
    for member in [&a, &b] {
        let tokens = synapse.access_tokens(&member.user_id);
        assert!(tokens.len() >= 2, "registration and the probe's login");
        for (i, token) in tokens.into_iter().enumerate() {
            canaries.push((
                format!("access token {i} ({})", member.token_label),
                token.into_bytes(),
            ));
        }
        let server_name = synapse.client_config()["server_name"]
            .as_str()
            .unwrap()
            .to_owned();
        canaries.extend(keys_of(member, &server_name));
    }
    canaries.push(("control".into(), random(32)));
    let report = scan_report(&mut stdin, stdout, &canaries);
    assert!(probe.wait().unwrap().success());
    assert_eq!(report.len(), canaries.len(), "{report:#?}");
    let scanned = report[0]["scanned"].as_u64().unwrap();
    eprintln!("scanned {} MiB of the probe's memory", scanned >> 20);
    let mut leaks = Vec::new();
    for result in &report {
        let name = result["canary"].as_str().unwrap();
        let hits = result["hits"].as_array().unwrap();
        if name == "control" {
            assert!(
                !hits.is_empty(),
                "the control canary kept alive by the probe was not found: the scan is blind"
            );
        } else if !hits.is_empty() {
            leaks.push(format!("{name}: {hits:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets left in memory after close:\n{}",
        leaks.join("\n")
    );
}

/// Sends the canaries to a probe, masked, and returns its report (one JSON object per canary).
fn scan_report(
    stdin: &mut impl Write,
    stdout: impl BufRead,
    canaries: &[(String, Vec<u8>)],
) -> Vec<Value> {
    for (name, canary) in canaries {
        let mask = random(canary.len());
        let masked: Vec<u8> = canary.iter().zip(&mask).map(|(c, m)| c ^ m).collect();
        writeln!(stdin, "{name}\t{}\t{}", hex(&mask), hex(&masked)).unwrap();
    }
    writeln!(stdin, "end").unwrap();
    stdin.flush().unwrap();
    stdout
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

#[test]
fn the_cli_leaves_no_secret_read_from_stdin_in_its_memory() {
    let synapse = Synapse::shared();
    let scratch = tempfile::tempdir().unwrap();
    let password = canary_text("canary-password");
    let m = member(synapse, "residue-cli", &password, scratch.path());
    let config_path = scratch.path().join("config.json");
    write_private(&config_path, synapse.client_config().to_string());
    // The PIN line, then the password line, as an operator's script pipes them.
    let stdin_path = scratch.path().join("stdin");
    write_private(&stdin_path, format!("{}\n{password}\n", m.pin));
    let stdout_path = scratch.path().join("stdout");
    // The positive control: a logging directive naming a target nobody logs to. The CLI parses
    // it into the global subscriber's filter, which lives on its heap until the process ends:
    // the scan must find it there (not only in the environment block on the stack).
    let control = format!("canary_control_{}", hex(&random(12)));
    let token = SoftHsmToken::process_wide();
    let localpart = m.user_id[1..].split(':').next().unwrap().to_owned();

    let mut probe = Command::new(PROBE)
        .arg("cli-exit")
        .arg(cli_bin())
        .args(["--json", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(&m.dir)
        .arg("--pkcs11-module")
        .arg(&token.module)
        .args(["--token-label", &m.token_label, "--pin-stdin"])
        .args(["login", "--user", &localpart, "--password-stdin"])
        .env_remove("TCHAP_SECURE_TOKEN_PIN")
        .env_remove("TCHAP_SECURE_PASSWORD")
        .env("SOFTHSM2_CONF", &token.conf_path)
        .env("TCHAP_SECURE_LOG", format!("warn,{control}=error"))
        .env("RESIDUE_CLI_STDIN", &stdin_path)
        .env("RESIDUE_CLI_STDOUT", &stdout_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = probe.stdin.take().unwrap();
    let mut stdout = BufReader::new(probe.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let printed = std::fs::read_to_string(&stdout_path).unwrap();
    assert_eq!(
        line.trim(),
        "exited 0",
        "the CLI's login failed; it printed {printed:?}"
    );
    let session: Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(session["user_id"], m.user_id.as_str());

    let mut canaries: Vec<(String, Vec<u8>)> = vec![
        ("password".into(), password.clone().into_bytes()),
        ("PIN".into(), m.pin.clone().into_bytes()),
    ];
    let tokens = synapse.access_tokens(&m.user_id);
    assert!(tokens.len() >= 2, "registration and the CLI's login");
    for (i, token) in tokens.into_iter().enumerate() {
        canaries.push((format!("access token {i}"), token.into_bytes()));
    }
    let server_name = synapse.client_config()["server_name"]
        .as_str()
        .unwrap()
        .to_owned();
    canaries.extend(keys_of(&m, &server_name));
    canaries.push(("control".into(), control.into_bytes()));
    let report = scan_report(&mut stdin, stdout, &canaries);
    assert!(probe.wait().unwrap().success());
    assert_eq!(report.len(), canaries.len(), "{report:#?}");
    eprintln!(
        "scanned {} MiB of the CLI's memory",
        report[0]["scanned"].as_u64().unwrap() >> 20
    );
    let mut leaks = Vec::new();
    for result in &report {
        let name = result["canary"].as_str().unwrap();
        let hits = result["hits"].as_array().unwrap();
        if name == "control" {
            assert!(
                hits.iter()
                    .any(|h| !h.as_str().unwrap().starts_with("[stack]")),
                "the control canary the CLI keeps on its heap was not found there ({hits:?}): \
                 the scan is blind"
            );
        } else if !hits.is_empty() {
            leaks.push(format!("{name}: {hits:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets left in the CLI's memory at exit:\n{}",
        leaks.join("\n")
    );
}

/// The `libtchap_secure.so` built next to this test binary (target/<profile>/), or
/// `TCHAP_SECURE_JNI_LIB` (as `tests/tests/jvm.rs` finds it).
fn jni_lib() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_JNI_LIB") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libtchap_secure.so");
    assert!(
        lib.exists(),
        "{} is missing: build the JNI library first (`cargo build --workspace`)",
        lib.display()
    );
    lib
}

/// The probe's scan measures the zeroizing allocator the probe installs itself; this checks
/// that the shipped JNI library runs on that same allocator. The library is loaded here (no
/// JVM: `JNI_OnLoad` does not run) and asked through the symbol that
/// `install_zeroizing_allocator!` exports, which allocates with the library's own global
/// allocator and reports whether it went through `ZeroizingAllocator`. Removing the
/// installation from `native/jni/src/lib.rs` removes the symbol, and a library that exported it
/// while using another allocator would answer `false`: either fails here.
#[test]
#[allow(
    unsafe_code,
    reason = "dlopen, dlsym and a call through the symbol found"
)]
fn the_jni_library_frees_through_the_zeroizing_allocator() {
    use std::ffi::CString;
    let path = CString::new(jni_lib().into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: `path` is a NUL-terminated path that outlives the call; the library's static
    // initialisers are Rust's (none run user code) and `JNI_OnLoad` is not called by dlopen.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen {path:?} failed");
    let name = c"tchap_secure_zeroizing_allocator_in_use";
    // SAFETY: `handle` is the live handle above and `name` a NUL-terminated string.
    let symbol = unsafe { libc::dlsym(handle, name.as_ptr()) };
    assert!(
        !symbol.is_null(),
        "the JNI library does not export {name:?}: it does not install the zeroizing allocator \
         with install_zeroizing_allocator!"
    );
    // SAFETY: the symbol is the `extern "C" fn() -> bool` the macro defines (same name, same
    // signature), and the library stays loaded (never dlclosed) while it runs.
    let in_use: extern "C" fn() -> bool = unsafe { std::mem::transmute(symbol) };
    assert!(
        in_use(),
        "the JNI library's global allocator is not the zeroizing allocator"
    );
}

/// Runs the probe in `mode` under `ulimit -c unlimited` in `dir`, and returns the core files
/// written there.
fn crash(mode: &str, dir: &Path, env: &[(&str, &str)]) -> (Vec<String>, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited && exec \"$0\" \"$1\"")
        .arg(PROBE)
        .arg(mode)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!output.status.success(), "the probe was meant to abort");
    let cores = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("core"))
        .collect();
    (cores, String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_process_with_an_open_client_writes_no_core_dump() {
    let synapse = Synapse::shared();
    let scratch = tempfile::tempdir().unwrap();
    let (label, pin) = new_token("core-dump");
    let config_path = scratch.path().join("config.json");
    write_private(&config_path, synapse.client_config().to_string());
    let data_dir = scratch.path().join("data");
    let token = SoftHsmToken::process_wide();
    let conf = token.conf_path.to_str().unwrap().to_owned();
    let module = token.module.to_str().unwrap().to_owned();
    let env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("RESIDUE_MODULE", module.as_str()),
        ("RESIDUE_CONFIG", config_path.to_str().unwrap()),
        ("RESIDUE_DIR_A", data_dir.to_str().unwrap()),
        ("RESIDUE_TOKEN_A", label.as_str()),
        ("RESIDUE_PIN_A", pin.as_str()),
    ];

    // Control: the same binary crashing before any client exists leaves a core file, so this
    // machine does write core files where the test looks.
    let before = tempfile::tempdir().unwrap();
    let (cores, _) = crash("crash-before-open", before.path(), &env);
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    assert!(
        !cores.is_empty(),
        "control: no core file from an unhardened crash (core_pattern = {pattern:?}); this \
         machine cannot show the difference"
    );

    let after = tempfile::tempdir().unwrap();
    let (cores, stdout) = crash("crash-after-open", after.path(), &env);
    assert_eq!(
        stdout.trim(),
        "dumpable=false core_limit=Some((0, 0))",
        "opening a client hardens the process"
    );
    assert!(
        cores.is_empty(),
        "a core file was written with a client open: {cores:?}"
    );
}
