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

/// A text no other test writes: a recognisable prefix and 80 random bits.
pub fn canary(prefix: &str) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 10];
    SystemRandom::new().fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix} {hex}")
}

/// Where `text` is left in `member`'s data directory: every database page and log frame
/// decrypted with the key its vault gives (free space included), every other file raw
/// (`tchap_secure_tests::at_rest`). Empty: nowhere.
pub fn left_at_rest(member: &InProcess, text: &str) -> Vec<String> {
    let key = tchap_secure_tests::at_rest::database_key_with(
        &member.data_dir(),
        &member.vault,
        &tchap_secure_tests::synapse::Synapse::shared().server_name,
    );
    let scan = tchap_secure_tests::at_rest::AtRest::scan(&member.data_dir(), &key);
    assert!(scan.pages() > 10, "the scan decrypted nothing");
    assert_eq!(scan.hmac_failures(), 0, "a page not of this key");
    scan.find(text.as_bytes())
}
