//! The key hierarchy (`Vault`) over a real SoftHSM2 token, one child process per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] fns: failing loudly is the point"
)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{MODULE, TOKEN_A, TOKEN_B, USER_PIN, run_isolated};
use tchap_secure_hsm::{
    KeyVault, Pkcs11Config, Pkcs11Vault, SecretBytes, VAULT_FILE, Vault, VaultBinding, VaultError,
};

fn open(label: &str) -> Pkcs11Vault {
    let config = Pkcs11Config {
        module: MODULE.into(),
        token_label: label.to_owned(),
    };
    Pkcs11Vault::open(&config, &SecretBytes::from(USER_PIN.as_bytes())).unwrap()
}

fn binding(server_name: &str) -> VaultBinding {
    VaultBinding {
        server_name: server_name.to_owned(),
    }
}

fn read(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(VAULT_FILE)).unwrap()
}

/// Writes `bytes` as vault.bin, opens it, checks the file was left exactly as written.
fn open_bytes(
    dir: &Path,
    backend: &dyn KeyVault,
    binding: &VaultBinding,
    bytes: &[u8],
) -> Result<Vault, VaultError> {
    fs::write(dir.join(VAULT_FILE), bytes).unwrap();
    let result = Vault::open(dir, backend, binding);
    assert_eq!(read(dir), bytes, "Vault::open must never write");
    result
}

#[test]
fn create_then_open_in_a_new_session() {
    run_isolated(module_path!(), "create_then_open_in_a_new_session", || {
        let dir = tempfile::tempdir().unwrap();
        let server = binding("secure.gouv.example");
        assert!(!Vault::exists(dir.path()));
        let (key, pragma, kek_id) = {
            let backend = open(TOKEN_A);
            let vault = Vault::create(dir.path(), &backend, &server).unwrap();
            let key = *vault.database_key().expose();
            (
                key,
                vault.database_key().sqlcipher_pragma_value(),
                vault.kek_id().clone(),
            )
        };
        assert!(Vault::exists(dir.path()));

        let backend = open(TOKEN_A);
        let vault = Vault::open(dir.path(), &backend, &server).unwrap();
        assert_eq!(*vault.database_key().expose(), key);
        assert_eq!(vault.database_key().sqlcipher_pragma_value(), pragma);
        assert_eq!(vault.kek_id(), &kek_id);
        assert_ne!(vault.pickle_key().expose(), vault.media_key().expose());

        // File: the documented size, mode 0600, no temporary file left behind.
        let file = read(dir.path());
        assert_eq!(file.len(), 8 + 1 + 16 + 2 + 60);
        assert_eq!(&file[9..25], kek_id.as_bytes());
        let mode = fs::metadata(dir.path().join(VAULT_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [VAULT_FILE]);
    });
}

#[test]
fn create_never_overwrites() {
    run_isolated(module_path!(), "create_never_overwrites", || {
        let dir = tempfile::tempdir().unwrap();
        let backend = open(TOKEN_A);
        let first = Vault::create(dir.path(), &backend, &binding("a.example")).unwrap();
        let before = read(dir.path());
        let second = Vault::create(dir.path(), &backend, &binding("a.example"));
        assert!(
            matches!(second, Err(VaultError::AlreadyExists)),
            "{:?}",
            second.err()
        );
        assert_eq!(read(dir.path()), before);
        let reopened = Vault::open(dir.path(), &backend, &binding("a.example")).unwrap();
        assert_eq!(
            reopened.database_key().expose(),
            first.database_key().expose()
        );
    });
}

#[test]
fn another_token_cannot_open() {
    run_isolated(module_path!(), "another_token_cannot_open", || {
        let dir = tempfile::tempdir().unwrap();
        let server = binding("a.example");
        let a = open(TOKEN_A);
        Vault::create(dir.path(), &a, &server).unwrap();
        let bytes = read(dir.path());

        // Token B, with a vault (so a KEK) of its own.
        let b = open(TOKEN_B);
        let other_dir = tempfile::tempdir().unwrap();
        Vault::create(other_dir.path(), &b, &server).unwrap();
        let result = open_bytes(dir.path(), &b, &server, &bytes);
        assert!(
            matches!(result, Err(VaultError::KekNotFound | VaultError::Unwrap)),
            "{:?}",
            result.err()
        );
    });
}

#[test]
fn every_tampered_byte_is_a_typed_error() {
    run_isolated(
        module_path!(),
        "every_tampered_byte_is_a_typed_error",
        || {
            let dir = tempfile::tempdir().unwrap();
            let server = binding("a.example");
            let backend = open(TOKEN_A);
            drop(Vault::create(dir.path(), &backend, &server).unwrap());
            let original = read(dir.path());
            assert_eq!(original.len(), 87);

            for i in 0..original.len() {
                let mut tampered = original.clone();
                tampered[i] ^= 0x01;
                let result = open_bytes(dir.path(), &backend, &server, &tampered);
                let error = result.err().unwrap_or_else(|| panic!("byte {i} accepted"));
                let expected = match i {
                    0..=7 => matches!(
                        error,
                        VaultError::Format {
                            reason: "bad magic"
                        }
                    ),
                    8 => matches!(
                        error,
                        VaultError::Format {
                            reason: "unsupported format version"
                        }
                    ),
                    9..=24 => matches!(error, VaultError::KekNotFound), // KEK id
                    25..=26 => matches!(
                        error,
                        VaultError::Format {
                            reason: "unexpected wrapped blob length"
                        }
                    ),
                    27..=38 => matches!(error, VaultError::Unwrap), // nonce
                    39..=70 => matches!(error, VaultError::Unwrap), // ciphertext
                    71..=86 => matches!(error, VaultError::Unwrap), // tag
                    _ => false,
                };
                assert!(expected, "byte {i}: {error:?}");
            }
            // Untouched, it still opens.
            open_bytes(dir.path(), &backend, &server, &original).unwrap();
        },
    );
}

#[test]
fn the_aad_binds_the_server_name() {
    run_isolated(module_path!(), "the_aad_binds_the_server_name", || {
        // The server name is not in the file: opening with another one reaches the token,
        // whose tag check (the name is in the AAD) refuses it. The file is left as it was.
        let dir = tempfile::tempdir().unwrap();
        let backend = open(TOKEN_A);
        Vault::create(dir.path(), &backend, &binding("a.example")).unwrap();
        let original = read(dir.path());
        for other in ["b.example", "A.example", "a.example.", "a.exampl"] {
            let result = open_bytes(dir.path(), &backend, &binding(other), &original);
            assert!(
                matches!(result, Err(VaultError::Unwrap)),
                "{other}: {:?}",
                result.err()
            );
        }
        // An empty or over-long name is refused before the file is even read.
        for bad in [String::new(), "x".repeat(65_536)] {
            let result = open_bytes(dir.path(), &backend, &binding(&bad), &original);
            assert!(
                matches!(result, Err(VaultError::Format { .. })),
                "{:?}",
                result.err()
            );
        }
        open_bytes(dir.path(), &backend, &binding("a.example"), &original).unwrap();
    });
}

#[test]
fn the_file_is_87_bytes_without_the_server_name() {
    run_isolated(
        module_path!(),
        "the_file_is_87_bytes_without_the_server_name",
        || {
            let dir = tempfile::tempdir().unwrap();
            let backend = open(TOKEN_A);
            let server = "agent.ministere.gouv.example";
            let kek_id = Vault::create(dir.path(), &backend, &binding(server))
                .unwrap()
                .kek_id()
                .clone();
            let file = read(dir.path());
            assert_eq!(file.len(), 87);
            assert_eq!(&file[..9], b"TSVAULT1\x01");
            assert_eq!(&file[9..25], kek_id.as_bytes());
            assert_eq!(&file[25..27], &[0, 60]);
            for needle in [server, "ministere", "gouv"] {
                assert!(
                    !file.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle:?} in vault.bin"
                );
            }
        },
    );
}

#[test]
fn a_swapped_vault_file_does_not_open() {
    run_isolated(module_path!(), "a_swapped_vault_file_does_not_open", || {
        let backend = open(TOKEN_A);
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Vault::create(dir_a.path(), &backend, &binding("a.example")).unwrap();
        Vault::create(dir_b.path(), &backend, &binding("b.example")).unwrap();
        let file_b = read(dir_b.path());
        // B's vault.bin dropped into A's store, opened with A's binding.
        let result = open_bytes(dir_a.path(), &backend, &binding("a.example"), &file_b);
        assert!(
            matches!(result, Err(VaultError::Unwrap)),
            "{:?}",
            result.err()
        );
    });
}

#[test]
fn truncated_or_extended_files_are_format_errors() {
    run_isolated(
        module_path!(),
        "truncated_or_extended_files_are_format_errors",
        || {
            let dir = tempfile::tempdir().unwrap();
            let server = binding("a.example");
            let backend = open(TOKEN_A);
            Vault::create(dir.path(), &backend, &server).unwrap();
            let original = read(dir.path());
            assert_eq!(original.len(), 87);
            for len in [0, 1, 8, 9, 24, 25, 26, 27, 39, 71, 86] {
                let result = open_bytes(dir.path(), &backend, &server, &original[..len]);
                assert!(
                    matches!(result, Err(VaultError::Format { .. })),
                    "{len}: {:?}",
                    result.err()
                );
            }
            let extended = [original.as_slice(), b"\0"].concat();
            let result = open_bytes(dir.path(), &backend, &server, &extended);
            assert!(
                matches!(
                    result,
                    Err(VaultError::Format {
                        reason: "trailing bytes"
                    })
                ),
                "{:?}",
                result.err()
            );
            fs::remove_file(dir.path().join(VAULT_FILE)).unwrap();
            assert!(matches!(
                Vault::open(dir.path(), &backend, &server),
                Err(VaultError::NotFound)
            ));
        },
    );
}

#[test]
fn wipe_shreds_the_kek_and_the_file() {
    run_isolated(module_path!(), "wipe_shreds_the_kek_and_the_file", || {
        let dir = tempfile::tempdir().unwrap();
        let server = binding("a.example");
        let backend = open(TOKEN_A);
        let kek_id = Vault::create(dir.path(), &backend, &server)
            .unwrap()
            .kek_id()
            .clone();
        let saved = read(dir.path());

        Vault::wipe(dir.path(), &backend).unwrap();
        assert!(!Vault::exists(dir.path()));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // The KEK is gone from the token: no object with its CKA_ID (what wrap looks up).
        assert!(matches!(
            backend.wrap(&kek_id, b"", b""),
            Err(VaultError::KekNotFound)
        ));
        assert!(matches!(
            Vault::open(dir.path(), &backend, &server),
            Err(VaultError::NotFound)
        ));
        // A copy of the old vault.bin is now worthless, also from a fresh session.
        drop(backend);
        let backend = open(TOKEN_A);
        let result = open_bytes(dir.path(), &backend, &server, &saved);
        assert!(
            matches!(result, Err(VaultError::KekNotFound)),
            "{:?}",
            result.err()
        );

        // Wiping again (KEK already gone, file present), or with nothing left, is fine.
        Vault::wipe(dir.path(), &backend).unwrap();
        Vault::wipe(dir.path(), &backend).unwrap();
        assert!(!Vault::exists(dir.path()));
    });
}

#[test]
fn wipe_copes_with_a_damaged_file() {
    run_isolated(module_path!(), "wipe_copes_with_a_damaged_file", || {
        let dir = tempfile::tempdir().unwrap();
        let backend = open(TOKEN_A);
        let kek_id = Vault::create(dir.path(), &backend, &binding("a.example"))
            .unwrap()
            .kek_id()
            .clone();
        // Damaged after the KEK id: the KEK is still found and destroyed.
        let mut damaged = read(dir.path());
        damaged.truncate(30);
        fs::write(dir.path().join(VAULT_FILE), &damaged).unwrap();
        Vault::wipe(dir.path(), &backend).unwrap();
        assert!(matches!(
            backend.destroy_kek(&kek_id),
            Err(VaultError::KekNotFound)
        ));
        assert!(!Vault::exists(dir.path()));

        // A symbolic link under the name is removed, its target left alone; it named no KEK,
        // and the wipe says so.
        let target = dir.path().join("not-ours");
        fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(VAULT_FILE)).unwrap();
        assert!(matches!(
            Vault::wipe(dir.path(), &backend),
            Err(VaultError::KekUnidentified)
        ));
        assert!(!Vault::exists(dir.path()));
        assert_eq!(fs::read(&target).unwrap(), b"precious");

        // Garbage, short or oversized: erased, and reported (a KEK may remain).
        for garbage in [&b"garbage"[..], &vec![0xFF; 200_000]] {
            fs::write(dir.path().join(VAULT_FILE), garbage).unwrap();
            assert!(matches!(
                Vault::wipe(dir.path(), &backend),
                Err(VaultError::KekUnidentified)
            ));
            assert!(!Vault::exists(dir.path()));
        }
        // Nothing left: nothing to do.
        Vault::wipe(dir.path(), &backend).unwrap();
    });
}
