//! At-rest scan of a CLI member's data directory, from a process of its own: SoftHSM2 reads
//! its configuration once per process, and a member's token lives under its own
//! `SOFTHSM2_CONF`, which the caller sets for this process.
//!
//! `AT_REST_PROBE_SOFTHSM2_CONF=… at_rest_probe DIR MODULE TOKEN_LABEL PIN SERVER_NAME NEEDLE…`
//! prints one JSON object:
//! `{"pages": n, "hmac_failures": n, "found": {"NEEDLE": ["location", …], …}}` (see
//! `tchap_secure_tests::at_rest`). The PIN comes on the command line: a test token's PIN.

use std::path::Path;

use serde_json::{Map, Value, json};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tchap_secure_tests::at_rest::{AtRest, database_key_with};

#[allow(unsafe_code)]
fn main() {
    // The testbed library linked here names its own process-wide SoftHSM2 configuration in
    // `SOFTHSM2_CONF` before `main` (see `softhsm.rs`): the member's comes in
    // `AT_REST_PROBE_SOFTHSM2_CONF` and is put back before any PKCS#11 call.
    if let Ok(conf) = std::env::var("AT_REST_PROBE_SOFTHSM2_CONF") {
        // SAFETY: first statement of `main` in a binary that starts no thread before it (its
        // only pre-`main` code, the `.init_array` constructor, starts none): no other thread
        // can read the environment while it changes.
        unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, module, label, pin, server, needles @ ..] = args.as_slice() else {
        eprintln!("usage: at_rest_probe DIR MODULE TOKEN_LABEL PIN SERVER_NAME NEEDLE…");
        std::process::exit(2);
    };
    let backend = Pkcs11Vault::open(
        &Pkcs11Config {
            module: module.into(),
            token_label: label.clone(),
        },
        &SecretBytes::from(pin.as_bytes()),
    )
    .expect("open the member's token");
    let key = database_key_with(Path::new(dir), &backend, server);
    let scan = AtRest::scan(Path::new(dir), &key);
    let mut found = Map::new();
    for needle in needles {
        found.insert(needle.clone(), json!(scan.find(needle.as_bytes())));
    }
    println!(
        "{}",
        json!({
            "pages": scan.pages(),
            "hmac_failures": scan.hmac_failures(),
            "found": Value::Object(found),
        })
    );
}
