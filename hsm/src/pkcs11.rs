//! PKCS#11 backend (SoftHSM2 on hosts and in tests; smartcards and HSMs in the field).
//!
//! # The KEK on the token
//!
//! `C_GenerateKey(CKM_AES_KEY_GEN)` inside the token, so the key never exists outside it, with:
//! `CKA_TOKEN` (persistent), `CKA_PRIVATE` (invisible before login), `CKA_SENSITIVE` and
//! `CKA_EXTRACTABLE = false` (the value can be neither read nor wrapped out; PKCS#11 forbids
//! turning either back), `CKA_ENCRYPT`/`CKA_DECRYPT` only — `CKA_WRAP`, `CKA_UNWRAP`,
//! `CKA_SIGN`, `CKA_VERIFY` and `CKA_DERIVE` false, since a derivable sensitive key is the
//! classic way to extract its value through a derived, extractable one — and
//! `CKA_MODIFIABLE`/`CKA_COPYABLE` false so no attribute can be relaxed afterwards. `CKA_ID` is
//! the [`KekId`]; `CKA_LABEL` is `tchap-secure-kek-<hex>` for humans using `pkcs11-tool`.
//!
//! # AES-GCM
//!
//! `CKM_AES_GCM`, 128-bit tag, 12-byte IV drawn from the system RNG (`ring`) for every wrap. A
//! PKCS#11 3.0 token may generate the IV itself and write it back into the IV buffer of the
//! mechanism parameters; we read the buffer *after* `C_Encrypt`, so the stored nonce is the one
//! actually used either way (SoftHSM2 uses ours).
//!
//! # Process-wide module state
//!
//! A PKCS#11 module is initialised once per process (`C_Initialize`), and `C_Finalize` tears
//! down every session of the process. `cryptoki` finalises when its context is dropped, so we
//! keep one context per module path in a process-wide registry that is never dropped, and we
//! accept `CKR_CRYPTOKI_ALREADY_INITIALIZED` (someone else in the process, e.g. a JVM's
//! SunPKCS11, initialised it first). Login state is also per process and token: see
//! [`VaultError::AlreadyLoggedIn`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use ring::rand::{SecureRandom, SystemRandom};

use crate::backend::{KekId, KeyVault, NONCE_LEN, TAG_LEN};
use crate::error::VaultError;
use crate::secret::SecretBytes;

/// Where Debian's `softhsm2` package installs the SoftHSM2 PKCS#11 module.
pub const DEFAULT_SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Which PKCS#11 module and token to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 shared library.
    pub module: PathBuf,
    /// Label of the token holding the KEKs (as set at `C_InitToken`).
    pub token_label: String,
}

/// A [`KeyVault`] on a PKCS#11 token, through one logged-in read-write user session.
///
/// The session is behind a mutex: PKCS#11 sessions must not run two operations at once.
/// Dropping the vault closes the session; closing an application's last session on a token
/// logs it out.
pub struct Pkcs11Vault {
    session: Mutex<Session>,
    description: String,
}

impl Pkcs11Vault {
    /// Load module, find the token by label (Err(TokenNotFound{label})), open RW session, C_Login as User.
    /// Wrong PIN => Err(VaultError::WrongPin); locked PIN => Err(PinLocked); other => Err(Pkcs11{op, detail}).
    pub fn open(config: &Pkcs11Config, pin: &SecretBytes) -> Result<Self, VaultError> {
        let pkcs11 = context(&config.module)?;
        let slot = find_token_settled(&pkcs11, &config.token_label)?;
        let info = pkcs11.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if info.user_pin_locked() {
            return Err(VaultError::PinLocked);
        }
        let session = pkcs11.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
        // secrecy's `Secret` zeroizes this copy of the PIN on drop.
        let raw_pin = RawAuthPin::new(pin.expose().to_vec());
        session
            .login_with_raw(UserType::User, &raw_pin)
            .map_err(|error| match error {
                CkError::Pkcs11(
                    RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                    _,
                ) => VaultError::WrongPin,
                CkError::Pkcs11(RvError::PinLocked, _) => VaultError::PinLocked,
                CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _) => VaultError::AlreadyLoggedIn,
                other => ck("C_Login")(other),
            })?;
        let description = format!(
            "pkcs11:{} token {:?} slot {}",
            info.model(),
            info.label(),
            slot.id()
        );
        tracing::info!(backend = %description, "PKCS#11 token opened");
        Ok(Self {
            session: Mutex::new(session),
            description,
        })
    }

    fn session(&self) -> Result<MutexGuard<'_, Session>, VaultError> {
        self.session.lock().map_err(|_| VaultError::Pkcs11 {
            op: "session lock",
            detail: "poisoned by a panic during an earlier operation".to_owned(),
        })
    }

    /// The KEK object with this id (`KekNotFound` if none). Several is refused: we created
    /// exactly one, so a second one was planted or is a token fault.
    fn find_kek(session: &Session, id: &KekId) -> Result<ObjectHandle, VaultError> {
        match session
            .find_objects(&kek_lookup(id))
            .map_err(ck("C_FindObjects"))?
            .as_slice()
        {
            [] => Err(VaultError::KekNotFound),
            [handle] => Ok(*handle),
            _ => Err(VaultError::Pkcs11 {
                op: "find KEK",
                detail: "several keys carry this KEK id".to_owned(),
            }),
        }
    }
}

impl std::fmt::Debug for Pkcs11Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            session: _,
            description,
        } = self;
        f.debug_struct("Pkcs11Vault")
            .field("description", description)
            .finish_non_exhaustive()
    }
}

impl KeyVault for Pkcs11Vault {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn generate_kek(&self, id: &KekId) -> Result<(), VaultError> {
        let session = self.session()?;
        if !session
            .find_objects(&kek_lookup(id))
            .map_err(ck("C_FindObjects"))?
            .is_empty()
        {
            return Err(VaultError::KekExists);
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Modifiable(false),
            Attribute::Copyable(false),
            Attribute::Id(id.as_bytes().to_vec()),
            Attribute::Label(id.label().into_bytes()),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(ck("C_GenerateKey"))?;
        tracing::info!(kek = ?id, backend = %self.description, "KEK generated");
        Ok(())
    }

    fn wrap(&self, id: &KekId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut iv = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut iv)
            .map_err(|_| VaultError::Rng)?;
        let session = self.session()?;
        let key = Self::find_kek(&session, id)?;
        let params = GcmParams::new(&mut iv, aad, tag_bits()).map_err(ck("GCM parameters"))?;
        let sealed = session
            .encrypt(&Mechanism::AesGcm(params), key, plaintext)
            .map_err(ck("C_Encrypt"))?;
        // `iv` is read only now, after the token had the chance to write the IV it used.
        if sealed.len() != plaintext.len() + TAG_LEN {
            return Err(VaultError::Pkcs11 {
                op: "C_Encrypt",
                detail: "unexpected AES-GCM output length".to_owned(),
            });
        }
        let mut wrapped = Vec::with_capacity(NONCE_LEN + sealed.len());
        wrapped.extend_from_slice(&iv);
        wrapped.extend_from_slice(&sealed);
        Ok(wrapped)
    }

    fn unwrap(&self, id: &KekId, aad: &[u8], wrapped: &[u8]) -> Result<SecretBytes, VaultError> {
        let (nonce, sealed) = wrapped
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(VaultError::Unwrap)?;
        if sealed.len() < TAG_LEN {
            return Err(VaultError::Unwrap);
        }
        let mut iv = *nonce;
        let session = self.session()?;
        let key = Self::find_kek(&session, id)?;
        let params = GcmParams::new(&mut iv, aad, tag_bits()).map_err(ck("GCM parameters"))?;
        match session.decrypt(&Mechanism::AesGcm(params), key, sealed) {
            Ok(plaintext) => Ok(SecretBytes::new(plaintext)),
            // A failed tag check: the only answer for wrong key, wrong AAD or tampering.
            Err(CkError::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                _,
            )) => Err(VaultError::Unwrap),
            // SoftHSM2 up to 2.6 reports a failed GCM tag check in single-part C_Decrypt as
            // CKR_GENERAL_ERROR (later versions: CKR_ENCRYPTED_DATA_INVALID). Only from
            // C_Decrypt itself — C_DecryptInit accepted key and parameters — is it read as a
            // failed unwrap; it fails closed either way.
            Err(CkError::Pkcs11(RvError::GeneralError, Function::Decrypt)) => {
                Err(VaultError::Unwrap)
            }
            Err(other) => Err(ck("C_Decrypt")(other)),
        }
    }

    fn destroy_kek(&self, id: &KekId) -> Result<(), VaultError> {
        let session = self.session()?;
        // Every object with this id goes, should there ever be more than one.
        let handles = session
            .find_objects(&kek_lookup(id))
            .map_err(ck("C_FindObjects"))?;
        if handles.is_empty() {
            return Err(VaultError::KekNotFound);
        }
        for handle in handles {
            session
                .destroy_object(handle)
                .map_err(ck("C_DestroyObject"))?;
        }
        tracing::info!(kek = ?id, backend = %self.description, "KEK destroyed");
        Ok(())
    }
}

/// The template that finds our KEK: an AES secret key with this `CKA_ID`.
fn kek_lookup(id: &KekId) -> [Attribute; 3] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Id(id.as_bytes().to_vec()),
    ]
}

fn tag_bits() -> cryptoki::types::Ulong {
    // TAG_LEN * 8, written as a literal so it converts into CK_ULONG, which is 32 bits wide on
    // 32-bit Android ABIs.
    const _: () = assert!(TAG_LEN * 8 == 128);
    128.into()
}

/// Maps a `cryptoki` error of operation `op` to [`VaultError::Pkcs11`].
fn ck(op: &'static str) -> impl FnOnce(CkError) -> VaultError {
    move |error| VaultError::Pkcs11 {
        op,
        detail: error.to_string(),
    }
}

/// The process-wide, initialised context of the module at `module` (see the module docs).
fn context(module: &Path) -> Result<Pkcs11, VaultError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    // The map stays consistent even if a holder panicked: recover it rather than fail forever.
    let mut contexts = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(pkcs11) = contexts.get(module) {
        return Ok(pkcs11.clone());
    }
    let pkcs11 = Pkcs11::new(module).map_err(ck("load module"))?;
    match pkcs11.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(other) => return Err(ck("C_Initialize")(other)),
    }
    contexts.insert(module.to_path_buf(), pkcs11.clone());
    Ok(pkcs11)
}

/// How many times the token is looked for, [`TOKEN_SETTLE`] apart, before it is reported
/// missing or unreadable.
const TOKEN_LOOKUPS: u32 = 5;
const TOKEN_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// [`find_token`], looked for again a few times over half a second when the token is absent
/// or unreadable: a file-backed token store (SoftHSM2) that another process of ours is
/// writing at that moment — the app's sync and a push handler open the vault concurrently —
/// reads as no token, or as an unreadable one, for an instant. A token that stays absent is
/// reported as before.
fn find_token_settled(pkcs11: &Pkcs11, label: &str) -> Result<Slot, VaultError> {
    settled(TOKEN_LOOKUPS, TOKEN_SETTLE, || find_token(pkcs11, label))
}

/// Calls `lookup` until it answers anything but an absent or unreadable token, at most
/// `lookups` times, `pause` apart; the last answer is returned. Any other error (a wrong PIN,
/// an ambiguous label) is returned at once: looking again would not change it.
fn settled<T>(
    lookups: u32,
    pause: std::time::Duration,
    mut lookup: impl FnMut() -> Result<T, VaultError>,
) -> Result<T, VaultError> {
    let mut attempt = 1;
    loop {
        match lookup() {
            Err(VaultError::TokenNotFound { .. } | VaultError::Pkcs11 { .. })
                if attempt < lookups =>
            {
                tracing::debug!(attempt, "token not readable yet; looking again");
                attempt += 1;
                std::thread::sleep(pause);
            }
            other => return other,
        }
    }
}

/// The slot of the one initialised token labelled `label`.
fn find_token(pkcs11: &Pkcs11, label: &str) -> Result<Slot, VaultError> {
    let mut found = None;
    // A token that cannot be read (another process writing it, a card being pulled) must
    // not hide the one we look for: remember the failure, report it only if ours is absent.
    let mut unreadable = None;
    for slot in pkcs11.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
        let info = match pkcs11.get_token_info(slot) {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(?slot, error = %e, "token unreadable while looking for ours");
                unreadable = Some(ck("C_GetTokenInfo")(e));
                continue;
            }
        };
        if info.token_initialized() && info.label() == label {
            if found.is_some() {
                return Err(VaultError::AmbiguousToken {
                    label: label.to_owned(),
                });
            }
            found = Some(slot);
        }
    }
    match (found, unreadable) {
        (Some(slot), _) => Ok(slot),
        (None, Some(error)) => Err(error),
        (None, None) => Err(VaultError::TokenNotFound {
            label: label.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use cryptoki::object::{AttributeInfo, AttributeType};

    use super::*;
    use crate::test_support::{TOKEN_A, USER_PIN, run_isolated};

    fn open_a() -> Pkcs11Vault {
        let config = Pkcs11Config {
            module: DEFAULT_SOFTHSM_MODULE.into(),
            token_label: TOKEN_A.to_owned(),
        };
        Pkcs11Vault::open(&config, &SecretBytes::from(USER_PIN.as_bytes())).unwrap()
    }

    /// The edges of a wrapped blob: an empty secret (the sealed part is exactly the tag)
    /// round-trips; anything shorter than nonce and tag is a failed unwrap, never sent as is.
    #[test]
    fn an_empty_secret_round_trips_and_a_blob_shorter_than_the_tag_is_refused() {
        run_isolated(
            module_path!(),
            "an_empty_secret_round_trips_and_a_blob_shorter_than_the_tag_is_refused",
            || {
                let vault = open_a();
                let id = KekId::new_random().unwrap();
                vault.generate_kek(&id).unwrap();
                let wrapped = vault.wrap(&id, b"aad", b"").unwrap();
                assert_eq!(wrapped.len(), NONCE_LEN + TAG_LEN);
                assert!(
                    vault
                        .unwrap(&id, b"aad", &wrapped)
                        .unwrap()
                        .expose()
                        .is_empty()
                );
                for len in [0, NONCE_LEN, NONCE_LEN + 1, NONCE_LEN + TAG_LEN - 1] {
                    assert!(
                        matches!(
                            vault.unwrap(&id, b"aad", &wrapped[..len]),
                            Err(VaultError::Unwrap)
                        ),
                        "{len} bytes"
                    );
                }
                vault.destroy_kek(&id).unwrap();
            },
        );
    }

    /// The token looked for again: an absent or unreadable token is looked for up to
    /// `TOKEN_LOOKUPS` times and found if it appears meanwhile; an absent one is reported
    /// after the last lookup; any other error is reported at once.
    #[test]
    fn an_absent_or_unreadable_token_is_looked_for_again_a_bounded_number_of_times() {
        use std::time::Duration;
        let absent = || VaultError::TokenNotFound {
            label: "t".to_owned(),
        };
        let unreadable = || VaultError::Pkcs11 {
            op: "C_GetTokenInfo",
            detail: "locked".to_owned(),
        };
        // Found on the last allowed lookup, after absent and unreadable answers.
        let mut calls = 0;
        let found = settled(TOKEN_LOOKUPS, Duration::ZERO, || {
            calls += 1;
            match calls {
                n if n == TOKEN_LOOKUPS => Ok(n),
                n if n % 2 == 0 => Err(unreadable()),
                _ => Err(absent()),
            }
        });
        assert_eq!(found.unwrap(), TOKEN_LOOKUPS);
        // Absent throughout: exactly TOKEN_LOOKUPS lookups, then the absence is reported.
        let mut calls = 0;
        let missing: Result<(), _> = settled(TOKEN_LOOKUPS, Duration::ZERO, || {
            calls += 1;
            Err(absent())
        });
        assert!(matches!(missing, Err(VaultError::TokenNotFound { .. })));
        assert_eq!(calls, TOKEN_LOOKUPS);
        // Another error: one lookup only.
        let mut calls = 0;
        let ambiguous: Result<(), _> = settled(TOKEN_LOOKUPS, Duration::ZERO, || {
            calls += 1;
            Err(VaultError::AmbiguousToken {
                label: "t".to_owned(),
            })
        });
        assert!(matches!(ambiguous, Err(VaultError::AmbiguousToken { .. })));
        assert_eq!(calls, 1);
        // The pause is taken between lookups, not after the last one.
        let start = std::time::Instant::now();
        let _ = settled(3, Duration::from_millis(30), || -> Result<(), _> {
            Err(absent())
        });
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn kek_is_sensitive_and_not_extractable() {
        run_isolated(
            module_path!(),
            "kek_is_sensitive_and_not_extractable",
            || {
                let vault = open_a();
                let id = KekId::new_random().unwrap();
                vault.generate_kek(&id).unwrap();
                let session = vault.session().unwrap();
                let kek = Pkcs11Vault::find_kek(&session, &id).unwrap();

                let attributes = session
                    .get_attributes(
                        kek,
                        &[
                            AttributeType::Sensitive,
                            AttributeType::AlwaysSensitive,
                            AttributeType::Extractable,
                            AttributeType::NeverExtractable,
                            AttributeType::Local,
                            AttributeType::Private,
                            AttributeType::Token,
                            AttributeType::Wrap,
                            AttributeType::Derive,
                            AttributeType::Modifiable,
                            AttributeType::ValueLen,
                            AttributeType::Label,
                        ],
                    )
                    .unwrap();
                for attribute in &attributes {
                    match attribute {
                        Attribute::Sensitive(v)
                        | Attribute::AlwaysSensitive(v)
                        | Attribute::NeverExtractable(v)
                        | Attribute::Local(v)
                        | Attribute::Private(v)
                        | Attribute::Token(v) => assert!(*v, "{attribute:?}"),
                        Attribute::Extractable(v)
                        | Attribute::Wrap(v)
                        | Attribute::Derive(v)
                        | Attribute::Modifiable(v) => assert!(!*v, "{attribute:?}"),
                        Attribute::ValueLen(len) => assert_eq!(u64::from(*len), 32),
                        Attribute::Label(label) => assert_eq!(label, id.label().as_bytes()),
                        other => panic!("unexpected attribute {other:?}"),
                    }
                }
                assert_eq!(attributes.len(), 12);

                // The value cannot be read...
                assert!(matches!(
                    session
                        .get_attribute_info(kek, &[AttributeType::Value])
                        .unwrap()
                        .as_slice(),
                    [AttributeInfo::Sensitive]
                ));
                assert!(
                    session
                        .get_attributes(kek, &[AttributeType::Value])
                        .unwrap()
                        .is_empty()
                );
                // ...nor wrapped out under a key of ours...
                let wrapping_key = session
                    .generate_key(
                        &Mechanism::AesKeyGen,
                        &[
                            Attribute::ValueLen(32.into()),
                            Attribute::Token(false),
                            Attribute::Wrap(true),
                        ],
                    )
                    .unwrap();
                let wrapped = session.wrap_key(&Mechanism::AesKeyWrap, wrapping_key, kek);
                assert!(
                    matches!(wrapped, Err(CkError::Pkcs11(RvError::KeyUnextractable, _))),
                    "{wrapped:?}"
                );
                // ...and its protection cannot be relaxed.
                for relax in [Attribute::Extractable(true), Attribute::Sensitive(false)] {
                    assert!(session.update_attributes(kek, &[relax]).is_err());
                }
            },
        );
    }
}
