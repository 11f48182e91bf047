//! Supply chain (T-SUP-01, T-SUP-02): what ships is what the policy allows, and it can be
//! rebuilt bit for bit.
//!
//! The work is done by the scripts an auditor runs by hand (`tests/supply-chain.sh`,
//! `tests/repro-check.sh`, `deny.toml`); these tests run them and check what they establish,
//! plus a control that the bans really bite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn tools_bin() -> PathBuf {
    let cache = std::env::var_os("TCHAP_SECURE_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tchap-secure"),
        PathBuf::from,
    );
    cache.join("tools/bin")
}

/// Runs a command in the repository with the pinned tools first on `PATH`.
fn run(program: &str, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        tools_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// cargo-deny and cargo-cyclonedx, installed once (pinned versions) by the script.
fn tools() {
    static TOOLS: Once = Once::new();
    TOOLS.call_once(|| {
        let out = run("tests/supply-chain.sh", &["--tools-only"]);
        assert!(out.status.success(), "installing the tools: {}", text(&out));
    });
}

#[test]
fn the_shipped_crates_pass_cargo_deny_and_the_sbom_lists_them() {
    tools();
    let out = run("tests/supply-chain.sh", &["--no-repro"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for ok in ["bans ok", "licenses ok", "sources ok"] {
        assert!(log.contains(ok), "no {ok:?} in:\n{log}");
    }
    assert!(log.contains("all from crates.io"), "{log}");
    let sbom = std::fs::read_to_string(
        repo().join("sbom/tchap-secure-jni.x86_64-unknown-linux-gnu.cdx.json"),
    )
    .expect("the SBOM of the host library");
    let sbom: serde_json::Value = serde_json::from_str(&sbom).unwrap();
    let names: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for needed in [
        "vodozemac",
        "ring",
        "rustls",
        "rusqlite",
        "tokio",
        "jni",
        "zeroize",
    ] {
        assert!(names.contains(&needed), "{needed} missing from the SBOM");
    }
    for banned in [
        "webpki-roots",
        "rustls-native-certs",
        "openssl-probe",
        "aws-lc-rs",
    ] {
        assert!(
            !names.contains(&banned),
            "{banned} is in the shipped library"
        );
    }
}

/// Control: the same policy applied to the whole workspace *with* the testbed's
/// dev-dependencies (matrix-sdk pulls a public trust store) must fail on the bans — so the
/// passing check above is not passing because the bans never match anything.
#[test]
fn cargo_deny_rejects_a_public_trust_store_when_one_is_in_the_graph() {
    tools();
    let policy = std::fs::read_to_string(repo().join("deny.toml")).unwrap();
    let widened: String = policy
        .lines()
        .filter(|line| !line.starts_with("exclude = ") && !line.starts_with("exclude-dev = "))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(widened, policy, "deny.toml no longer scopes the graph");
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("deny-with-testbed.toml");
    std::fs::write(&config, widened).unwrap();
    let out = run(
        "cargo",
        &[
            "deny",
            "--locked",
            "--config",
            config.to_str().unwrap(),
            "check",
            "bans",
        ],
    );
    let log = text(&out);
    assert!(!out.status.success(), "the widened graph passed:\n{log}");
    for banned in ["webpki-roots", "rustls-native-certs", "openssl-probe"] {
        assert!(
            log.contains(&format!("crate '{banned} = ")) && log.contains("explicitly banned"),
            "{banned} not reported as banned:\n{log}"
        );
    }
}

#[test]
fn two_release_builds_in_different_directories_are_byte_identical() {
    let out = run("tests/repro-check.sh", &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let hash = log
        .lines()
        .find_map(|line| {
            line.split_once("sha256: ")
                .map(|(_, h)| h.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no hash in:\n{log}"));
    assert_eq!(hash.len(), 64, "{hash}");
    eprintln!("libtchap_secure.so sha256 {hash}");
}
