//! The test-only software vault cannot be built into a release: `cargo check --release` of the
//! hsm crate with the `soft-vault` feature must fail on the `compile_error!` (DESIGN §2), and
//! the same check without the feature must succeed (so the failure is the guard, not something
//! else).

use std::process::Command;

fn cargo_check_release(features: &[&str]) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../hsm/Cargo.toml");
    // A target directory of its own: the outer `cargo test` may hold the lock on the main one.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soft-vault-release-check");
    let output = Command::new(cargo)
        .args(["check", "--release", "--quiet", "--manifest-path", manifest])
        .args(features)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn release_build_with_soft_vault_fails_and_without_it_succeeds() {
    let (ok, stderr) = cargo_check_release(&[]);
    assert!(
        ok,
        "release check without soft-vault must succeed: {stderr}"
    );
    let (ok, stderr) = cargo_check_release(&["--features", "soft-vault"]);
    assert!(!ok, "a release build with the soft vault must be refused");
    assert!(
        stderr.contains("soft-vault feature is for tests only"),
        "refused for another reason: {stderr}"
    );
}
