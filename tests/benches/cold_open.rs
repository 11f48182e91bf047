//! Cold open: what a cabinet member waits for when the app starts — the vault's root secret
//! unwrapped by the PKCS#11 token (a real SoftHSM2 token), the SQLCipher database opened and
//! migrated, the session restored. Run with `cargo bench -p tchap-secure-tests --bench cold_open`.

use criterion::{Criterion, criterion_group, criterion_main};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tchap_secure_tests::pki::Pki;
use tchap_secure_tests::softhsm::SoftHsmToken;

fn cold_open(c: &mut Criterion) {
    let token = SoftHsmToken::process_wide();
    let vault = Pkcs11Vault::open(
        &Pkcs11Config {
            module: token.module.clone(),
            token_label: token.label.clone(),
        },
        &SecretBytes::from(token.user_pin.as_bytes()),
    )
    .expect("open the token");
    let pki = Pki::generate();
    let config = Config::from_json(
        serde_json::json!({
            "homeserver_url": "https://localhost:8448",
            "server_name": "secure.tchap.test",
            "trust_anchors_pem": pki.root_ca_pem,
            "spki_pins_sha256": [pki.server_pin(), pki.backup_pin],
        })
        .to_string()
        .as_bytes(),
    )
    .expect("config");
    let dir = tempfile::tempdir().expect("temp dir");
    // First open creates the vault (KEK on the token) and the database.
    drop(Client::open(config.clone(), dir.path(), &vault).expect("create"));
    c.bench_function(
        "cold_open (PKCS#11 unwrap + SQLCipher open + session restore)",
        |b| {
            b.iter(|| {
                let client = Client::open(config.clone(), dir.path(), &vault).expect("open");
                std::hint::black_box(client.session());
            })
        },
    );
}

criterion_group!(benches, cold_open);
criterion_main!(benches);
