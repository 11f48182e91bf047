//! Helpers shared by the end-to-end tests: the real `tchap-secure` binary, per-member data
//! directories and tokens, and in-process clients on the process-wide SoftHSM2 token.

use std::path::{Path, PathBuf};

pub use tchap_secure_tests::cli_member::{Member, Run, cli, cli_bin, write_config};

pub use tchap_secure_tests::harness::{
    InProcess, PASSWORD, contains_bytes, files_under, password, rt, synapse_config,
};

/// An in-process client of `localpart` on its own token, logged in straight to the shared
/// Synapse as device `device` (its cross-signing identity set up at login).
pub fn logged_in(
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    localpart: &str,
    device: &str,
) -> (InProcess, tchap_secure_core::Client) {
    let member = InProcess::new(prefix);
    let mut client = member.open().unwrap();
    rt.block_on(client.login(localpart, &password(), device))
        .unwrap();
    (member, client)
}

/// Snapshot of every file's bytes under `dir`.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}
