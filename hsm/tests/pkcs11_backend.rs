//! `Pkcs11Vault` against a real SoftHSM2 token (no mocks), one child process per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] fns: failing loudly is the point"
)]

mod support;

use support::{MODULE, TOKEN_A, TOKEN_B, USER_PIN, run_isolated};
use tchap_secure_hsm::{KekId, KeyVault, Pkcs11Config, Pkcs11Vault, SecretBytes, VaultError};

fn config(label: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: MODULE.into(),
        token_label: label.to_owned(),
    }
}

fn open(label: &str) -> Pkcs11Vault {
    Pkcs11Vault::open(&config(label), &SecretBytes::from(USER_PIN.as_bytes())).unwrap()
}

#[test]
fn opens_with_the_right_pin() {
    run_isolated(module_path!(), "opens_with_the_right_pin", || {
        let vault = open(TOKEN_A);
        let description = vault.describe();
        assert!(description.starts_with("pkcs11:"), "{description}");
        assert!(description.contains(TOKEN_A), "{description}");
        assert!(!description.contains(USER_PIN), "{description}");
    });
}

#[test]
fn wrong_pin_is_rejected() {
    run_isolated(module_path!(), "wrong_pin_is_rejected", || {
        let result = Pkcs11Vault::open(&config(TOKEN_A), &SecretBytes::from(&b"0000-wrong"[..]));
        let error = result.err().unwrap();
        assert!(matches!(error, VaultError::WrongPin), "{error:?}");
        assert_eq!(error.code(), "wrong_pin");
        // The right PIN still works afterwards.
        open(TOKEN_A);
    });
}

#[test]
fn unknown_label_is_token_not_found() {
    run_isolated(module_path!(), "unknown_label_is_token_not_found", || {
        let result = Pkcs11Vault::open(
            &config("no-such-token"),
            &SecretBytes::from(USER_PIN.as_bytes()),
        );
        match result {
            Err(VaultError::TokenNotFound { label }) => assert_eq!(label, "no-such-token"),
            other => panic!("{:?}", other.err()),
        }
    });
}

#[test]
fn missing_module_is_a_pkcs11_error() {
    run_isolated(module_path!(), "missing_module_is_a_pkcs11_error", || {
        let config = Pkcs11Config {
            module: "/nonexistent/libpkcs11.so".into(),
            token_label: TOKEN_A.to_owned(),
        };
        let result = Pkcs11Vault::open(&config, &SecretBytes::from(USER_PIN.as_bytes()));
        assert!(
            matches!(
                result,
                Err(VaultError::Pkcs11 {
                    op: "load module",
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
    });
}

#[test]
fn second_login_in_one_process_is_refused() {
    run_isolated(
        module_path!(),
        "second_login_in_one_process_is_refused",
        || {
            let first = open(TOKEN_A);
            // PKCS#11 login is per process: a second login could not check this (wrong) PIN.
            let wrong = Pkcs11Vault::open(&config(TOKEN_A), &SecretBytes::from(&b"0000-wrong"[..]));
            assert!(
                matches!(wrong, Err(VaultError::AlreadyLoggedIn)),
                "{:?}",
                wrong.err()
            );
            // Another token is independent.
            open(TOKEN_B);
            drop(first);
            open(TOKEN_A);
        },
    );
}

#[test]
fn wrap_unwrap_roundtrip_and_tampering() {
    run_isolated(
        module_path!(),
        "wrap_unwrap_roundtrip_and_tampering",
        || {
            let vault = open(TOKEN_A);
            let id = KekId::new_random().unwrap();
            assert!(matches!(
                vault.wrap(&id, b"aad", b"x"),
                Err(VaultError::KekNotFound)
            ));
            vault.generate_kek(&id).unwrap();
            assert!(matches!(
                vault.generate_kek(&id),
                Err(VaultError::KekExists)
            ));

            let secret = [0x5Au8; 32];
            let wrapped = vault.wrap(&id, b"aad", &secret).unwrap();
            assert_eq!(wrapped.len(), 12 + 32 + 16);
            let again = vault.wrap(&id, b"aad", &secret).unwrap();
            assert_ne!(wrapped[..12], again[..12], "a fresh nonce for every wrap");
            assert_eq!(
                vault.unwrap(&id, b"aad", &wrapped).unwrap().expose(),
                secret
            );
            assert_eq!(vault.unwrap(&id, b"aad", &again).unwrap().expose(), secret);

            let wrong_aad = vault.unwrap(&id, b"aae", &wrapped);
            assert!(
                matches!(wrong_aad, Err(VaultError::Unwrap)),
                "{:?}",
                wrong_aad.err()
            );
            for i in 0..wrapped.len() {
                let mut tampered = wrapped.clone();
                tampered[i] ^= 0x80;
                let result = vault.unwrap(&id, b"aad", &tampered);
                assert!(
                    matches!(result, Err(VaultError::Unwrap)),
                    "byte {i}: {:?}",
                    result.err()
                );
            }
            for len in [0, 11, 12, 27, wrapped.len() - 1] {
                let result = vault.unwrap(&id, b"aad", &wrapped[..len]);
                assert!(
                    matches!(result, Err(VaultError::Unwrap)),
                    "len {len}: {:?}",
                    result.err()
                );
            }
            let other = KekId::new_random().unwrap();
            assert!(matches!(
                vault.unwrap(&other, b"aad", &wrapped),
                Err(VaultError::KekNotFound)
            ));

            vault.destroy_kek(&id).unwrap();
            assert!(matches!(
                vault.unwrap(&id, b"aad", &wrapped),
                Err(VaultError::KekNotFound)
            ));
            assert!(matches!(
                vault.destroy_kek(&id),
                Err(VaultError::KekNotFound)
            ));
        },
    );
}

#[test]
fn kek_persists_on_its_token_only() {
    run_isolated(module_path!(), "kek_persists_on_its_token_only", || {
        let id = KekId::new_random().unwrap();
        let wrapped = {
            let vault = open(TOKEN_A);
            vault.generate_kek(&id).unwrap();
            vault.wrap(&id, b"", b"persisted").unwrap()
        };
        // A new session (after the first was closed and the token logged out) sees the KEK.
        let vault = open(TOKEN_A);
        assert_eq!(
            vault.unwrap(&id, b"", &wrapped).unwrap().expose(),
            b"persisted"
        );
        // Another token does not, even with the same id.
        let other = open(TOKEN_B);
        assert!(matches!(
            other.unwrap(&id, b"", &wrapped),
            Err(VaultError::KekNotFound)
        ));
        other.generate_kek(&id).unwrap();
        assert!(matches!(
            other.unwrap(&id, b"", &wrapped),
            Err(VaultError::Unwrap)
        ));
    });
}

#[test]
fn module_initialised_elsewhere_in_the_process_is_shared() {
    run_isolated(
        module_path!(),
        "module_initialised_elsewhere_in_the_process_is_shared",
        || {
            // Another user of the module in this process (a JVM's SunPKCS11, say) initialised it
            // first: C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED, which we accept.
            let other = cryptoki::context::Pkcs11::new(MODULE).unwrap();
            other
                .initialize(cryptoki::context::CInitializeArgs::OsThreads)
                .unwrap();
            let vault = open(TOKEN_A);
            let id = KekId::new_random().unwrap();
            vault.generate_kek(&id).unwrap();
            let wrapped = vault.wrap(&id, b"", b"shared").unwrap();
            assert_eq!(
                vault.unwrap(&id, b"", &wrapped).unwrap().expose(),
                b"shared"
            );
            // `other` is dropped last, after the vault's session closed: its drop calls
            // C_Finalize, which would end every session of the process — the hazard the
            // process-wide context registry exists to avoid.
            drop(vault);
            drop(other);
        },
    );
}
