//! The key hierarchy over any [`KeyVault`]: the wrapped root secret in `vault.bin` and the keys
//! derived from it.
//!
//! # `vault.bin` (format version 1)
//!
//! ```text
//! offset  size  field
//! 0       8     magic "TSVAULT1"
//! 8       1     format version = 1
//! 9       16    KekId (CKA_ID of the KEK on the token)
//! 25      2     wrapped length = 60, u16 big-endian
//! 27      60    wrapped root secret: nonce (12) ‖ AES-256-GCM ciphertext (32) ‖ tag (16)
//! ```
//!
//! Exactly 87 bytes; nothing may follow. The file holds no metadata in clear: besides the
//! fixed magic, version and length, the only clear field is the KEK id, 16 random bytes that
//! say nothing about the account (and that [`Vault::wipe`] must be able to read from a
//! damaged file, hence its fixed offset). In particular the binding — the server name of the
//! account — is **not stored**: anyone who could read the data directory would otherwise learn
//! which homeserver it belongs to.
//!
//! The binding is instead supplied by the caller at [`Vault::open`] and authenticated by the
//! hardware key through the AES-GCM AAD:
//!
//! ```text
//! AAD = "tchap-secure/v1" ‖ bytes 0..25 of the file (magic, version, KEK id)
//!       ‖ server_name length n, u16 big-endian, 1 ≤ n ≤ 65535 ‖ server_name
//! ```
//!
//! So the magic, version, KEK id and server name are all authenticated: a `vault.bin` copied
//! from another account or server, opened with another binding, or edited, does not unwrap
//! ([`VaultError::Unwrap`]). There is no early comparison (there is nothing stored to compare
//! with): the backend's tag check is the only, and sound, check of the binding. An empty or
//! over-long server name is refused before anything else, at creation and at opening alike.
//!
//! Parsing is strict (a typed [`VaultError::Format`] for any deviation) and never writes: a
//! damaged file is left exactly as found, for the user or an investigator to look at.
//!
//! # Derived keys
//!
//! HKDF-SHA256 (`ring`) with input key material R, a fixed salt `"tchap-secure/v1/hkdf-salt"`
//! and one `info` label per use (`"tchap-secure/v1/database"`, `…/pickle`, `…/media`):
//! independent keys, so a leak of one (say the media key from the attachment cache code) says
//! nothing about the others. Keys are derived on each call and not cached here.
//!
//! # Wipe
//!
//! Crypto-shredding: destroying the KEK in hardware is what makes R, and so everything derived
//! from it, unrecoverable — even from a copy of `vault.bin` taken earlier. Overwriting the file
//! with zeros before deleting it is a courtesy; on flash storage with a journaling file system
//! it does not guarantee the old blocks are gone, which is why the KEK is what we rely on.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::backend::{KekId, KeyVault, NONCE_LEN, TAG_LEN};
use crate::error::VaultError;
use crate::secret::{DatabaseKey, MediaKey, PickleKey};
use tchap_secure_memory::LockedBytes;

/// File name of the wrapped root secret inside the store directory.
pub const VAULT_FILE: &str = "vault.bin";

const MAGIC: &[u8; 8] = b"TSVAULT1";
const FORMAT_VERSION: u8 = 1;
const AAD_CONTEXT: &[u8] = b"tchap-secure/v1";
const ROOT_LEN: usize = 32;
const WRAPPED_LEN: usize = NONCE_LEN + ROOT_LEN + TAG_LEN;
/// The wrapped length field; 60 fits a u16.
const WRAPPED_LEN_FIELD: [u8; 2] = (WRAPPED_LEN as u16).to_be_bytes();
/// Offset of the KEK id, fixed across the file so [`Vault::wipe`] finds it in a damaged file.
const KEK_ID_OFFSET: usize = MAGIC.len() + 1;
/// Magic, version and KEK id: the bytes of the file that go into the AAD.
const HEADER_LEN: usize = KEK_ID_OFFSET + 16;
/// The one size of a well-formed file (87 bytes).
const FILE_LEN: usize = HEADER_LEN + WRAPPED_LEN_FIELD.len() + WRAPPED_LEN;

const HKDF_SALT: &[u8] = b"tchap-secure/v1/hkdf-salt";
const INFO_DATABASE: &[u8] = b"tchap-secure/v1/database";
const INFO_PICKLE: &[u8] = b"tchap-secure/v1/pickle";
const INFO_MEDIA: &[u8] = b"tchap-secure/v1/media";

/// What the wrapped root secret is bound to. Not stored in `vault.bin`: the caller supplies it
/// at creation and at every opening, and it goes into the AES-GCM AAD after the file header,
/// so only the right binding unwraps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultBinding {
    /// Matrix server name of the account this store belongs to (e.g. `agent.ministere.gouv.fr`).
    pub server_name: String,
}

/// An opened vault: the unwrapped root secret R, from which the store keys are derived.
pub struct Vault {
    root: LockedBytes<ROOT_LEN>,
    kek_id: KekId,
}

impl Vault {
    /// First run: generate KekId + KEK, 32 random bytes R, write vault.bin atomically (tmp file + fsync + link/rename + fsync dir,
    /// mode 0600). Err(AlreadyExists) if vault.bin exists (never overwrite).
    ///
    /// On failure after the KEK was generated, the KEK is destroyed again: no partial state.
    /// The new file is placed with `link(2)`, which cannot replace an existing file, rather than
    /// `rename(2)`, which would (see `write_new_file`).
    pub fn create(
        dir: &Path,
        backend: &dyn KeyVault,
        binding: &VaultBinding,
    ) -> Result<Vault, VaultError> {
        let path = dir.join(VAULT_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Err(VaultError::AlreadyExists),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(VaultError::io("stat vault.bin")(e)),
        }
        // Refuse a bad binding before a KEK exists.
        let bound = encode_binding(binding)?;
        let kek_id = KekId::new_random()?;
        let header = encode_header(&kek_id);
        // Dropping `vault` on any early return below zeroizes R.
        let mut vault = Vault {
            root: LockedBytes::zeroed(),
            kek_id,
        };
        SystemRandom::new()
            .fill(&mut vault.root.expose_mut()[..])
            .map_err(|_| VaultError::Rng)?;

        backend.generate_kek(&vault.kek_id)?;
        let written = backend
            .wrap(
                &vault.kek_id,
                &aad(&header, &bound),
                &vault.root.expose()[..],
            )
            .and_then(|wrapped| {
                if wrapped.len() != WRAPPED_LEN {
                    return Err(VaultError::Format {
                        reason: "backend returned a wrapped blob of unexpected length",
                    });
                }
                let file = [header.as_slice(), &WRAPPED_LEN_FIELD, &wrapped].concat();
                write_new_file(dir, &vault.kek_id, &file)
            });
        if let Err(error) = written {
            // No partial state. If vault.bin was placed (the directory's fsync failed after the
            // link), it goes first: a vault.bin whose KEK was destroyed would leave the
            // directory unopenable for good. If it cannot be removed, the KEK is kept, so that
            // the vault.bin that stays is a complete, openable vault.
            match remove_placed(dir, &vault.kek_id) {
                Ok(()) => {
                    if let Err(cleanup) = backend.destroy_kek(&vault.kek_id) {
                        tracing::warn!(kek = ?vault.kek_id, error = %cleanup,
                            "could not destroy the KEK of a failed vault creation");
                    }
                }
                Err(cleanup) => {
                    tracing::warn!(kek = ?vault.kek_id, error = %cleanup,
                        "a failed vault creation left vault.bin: its KEK is kept");
                }
            }
            return Err(error);
        }
        tracing::info!(kek = ?vault.kek_id, backend = %backend.describe(), "vault created");
        Ok(vault)
    }

    /// Read vault.bin, parse strictly (Err(Format{reason}) on bad magic/version/length), unwrap R
    /// with `binding` in the AAD. Err(Format) for an empty or over-long server name (checked
    /// first), Err(NotFound) if vault.bin is absent. Wrong KEK/other token/tampered/swapped/
    /// another binding => Err(Unwrap) or Err(KekNotFound): the binding is not stored, so the
    /// backend's tag check is what refuses another one. Never writes anything.
    pub fn open(
        dir: &Path,
        backend: &dyn KeyVault,
        binding: &VaultBinding,
    ) -> Result<Vault, VaultError> {
        let bound = encode_binding(binding)?;
        let bytes = read_vault_file(&dir.join(VAULT_FILE))?;
        let file = VaultFile::parse(&bytes)?;
        let unwrapped = backend.unwrap(&file.kek_id, &aad(file.header, &bound), file.wrapped)?;
        let mut root = LockedBytes::<ROOT_LEN>::zeroed();
        if unwrapped.len() != ROOT_LEN {
            // Authenticated under our KEK yet the wrong size: not something we wrote.
            return Err(VaultError::Format {
                reason: "unwrapped root secret has the wrong length",
            });
        }
        root.expose_mut().copy_from_slice(unwrapped.expose());
        Ok(Vault {
            root,
            kek_id: file.kek_id,
        })
    }

    /// Whether a `vault.bin` (or anything under that name) is present in `dir`.
    pub fn exists(dir: &Path) -> bool {
        fs::symlink_metadata(dir.join(VAULT_FILE)).is_ok()
    }

    /// The id of the KEK that wraps this vault's root secret.
    pub fn kek_id(&self) -> &KekId {
        &self.kek_id
    }

    /// The SQLCipher raw database key.
    pub fn database_key(&self) -> DatabaseKey {
        DatabaseKey::from_locked(self.derive(INFO_DATABASE))
    }

    /// The vodozemac pickle key.
    pub fn pickle_key(&self) -> PickleKey {
        PickleKey::from_locked(self.derive(INFO_PICKLE))
    }

    /// The attachment cache key.
    pub fn media_key(&self) -> MediaKey {
        MediaKey::from_locked(self.derive(INFO_MEDIA))
    }

    /// Crypto-shred: destroy the KEK in the backend, then overwrite vault.bin with zeros,
    /// fsync, delete it. Deleting the database is the caller's job, once this returned `Ok`
    /// (or [`VaultError::KekUnidentified`]).
    ///
    /// vault.bin is the only record of which KEK wraps the data, so **nothing is touched until
    /// the KEK is destroyed**: if the backend cannot destroy it, or vault.bin cannot be read,
    /// the error is returned with vault.bin intact, and a retry can finish the job. The KEK id
    /// is read from the file's prefix only, so a vault that cannot be opened (damaged after the
    /// id, or a device locked under `unlocked_device_required`, where the key cannot be *used*
    /// but can be deleted) is still shredded. A KEK already gone (`KekNotFound`) counts as
    /// destroyed. A file that does not name a KEK at all (garbage before the id) is erased and
    /// reported as [`VaultError::KekUnidentified`]: the data is gone but a KEK may remain in
    /// the backend. No vault.bin at all: nothing to do, `Ok`.
    pub fn wipe(dir: &Path, backend: &dyn KeyVault) -> Result<(), VaultError> {
        let path = dir.join(VAULT_FILE);
        let identified = match read_kek_id(&path)? {
            KekRecord::Absent => {
                tracing::info!("no vault.bin: nothing to wipe");
                return Ok(());
            }
            KekRecord::Named(kek_id) => {
                match backend.destroy_kek(&kek_id) {
                    Ok(()) => tracing::info!(kek = ?kek_id, "KEK destroyed"),
                    Err(VaultError::KekNotFound) => {
                        tracing::info!(kek = ?kek_id, "KEK already absent");
                    }
                    Err(error) => {
                        tracing::warn!(kek = ?kek_id, %error,
                            "the KEK could not be destroyed: nothing erased, vault.bin kept");
                        return Err(error);
                    }
                }
                true
            }
            KekRecord::Unnamed => {
                tracing::warn!("vault.bin names no KEK: erasing it, a KEK may remain");
                false
            }
        };
        overwrite_with_zeros(&path)?;
        // Something was found under the name: if it vanished meanwhile, say so (a retry finds
        // nothing and succeeds) rather than guess.
        fs::remove_file(&path).map_err(VaultError::io("delete vault.bin"))?;
        sync_dir(dir)?;
        tracing::info!(backend = %backend.describe(), "vault wiped");
        if identified {
            Ok(())
        } else {
            Err(VaultError::KekUnidentified)
        }
    }

    fn derive(&self, info: &'static [u8]) -> LockedBytes<32> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&self.root.expose()[..]);
        let mut key = LockedBytes::<32>::zeroed();
        let info = [info];
        #[allow(
            clippy::expect_used,
            reason = "HKDF-SHA256 fails only for outputs over 255 × 32 bytes; this is 32"
        )]
        prk.expand(&info, hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key.expose_mut()[..]))
            .expect("32-byte HKDF-SHA256 output");
        key
    }

    /// A vault with a known root secret, for derivation tests.
    #[cfg(test)]
    fn from_root(root: [u8; ROOT_LEN]) -> Self {
        Vault {
            root: {
                let mut locked = LockedBytes::zeroed();
                locked.expose_mut().copy_from_slice(&root);
                locked
            },
            kek_id: KekId::from_bytes([0; 16]),
        }
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { root: _, kek_id } = self;
        f.debug_struct("Vault")
            .field("root", &"<redacted>")
            .field("kek_id", kek_id)
            .finish()
    }
}

/// A parsed `vault.bin`, borrowing the file bytes.
struct VaultFile<'a> {
    kek_id: KekId,
    /// Magic, version and KEK id: the file's part of the AAD.
    header: &'a [u8],
    wrapped: &'a [u8],
}

impl<'a> VaultFile<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, VaultError> {
        let mut reader = Reader(bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(VaultError::Format {
                reason: "bad magic",
            });
        }
        if reader.take(1)? != [FORMAT_VERSION] {
            return Err(VaultError::Format {
                reason: "unsupported format version",
            });
        }
        let kek_id = KekId::from_bytes(reader.array()?);
        let header = &bytes[..HEADER_LEN];
        if usize::from(u16::from_be_bytes(reader.array()?)) != WRAPPED_LEN {
            return Err(VaultError::Format {
                reason: "unexpected wrapped blob length",
            });
        }
        let wrapped = reader.take(WRAPPED_LEN)?;
        if !reader.0.is_empty() {
            return Err(VaultError::Format {
                reason: "trailing bytes",
            });
        }
        Ok(Self {
            kek_id,
            header,
            wrapped,
        })
    }
}

/// A cursor over the file bytes that fails with a `Format` error instead of running short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], VaultError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(VaultError::Format {
            reason: "truncated",
        })?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], VaultError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(VaultError::Format {
            reason: "truncated",
        })?;
        self.0 = rest;
        Ok(*head)
    }
}

/// The header of a new `vault.bin`: magic, version, KEK id (up to, excluding, the wrapped length).
fn encode_header(kek_id: &KekId) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()] = FORMAT_VERSION;
    header[KEK_ID_OFFSET..].copy_from_slice(kek_id.as_bytes());
    header
}

/// The binding's part of the AAD: server_name length (u16 big-endian) ‖ server_name.
/// Err(Format) if the server name is empty or longer than 65535 bytes.
fn encode_binding(binding: &VaultBinding) -> Result<Vec<u8>, VaultError> {
    let name = binding.server_name.as_bytes();
    let name_len = u16::try_from(name.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or(VaultError::Format {
            reason: "server name empty or longer than 65535 bytes",
        })?;
    Ok([name_len.to_be_bytes().as_slice(), name].concat())
}

/// `"tchap-secure/v1" ‖ file header ‖ encoded binding`.
fn aad(header: &[u8], bound: &[u8]) -> Vec<u8> {
    [AAD_CONTEXT, header, bound].concat()
}

/// The KEK id of a `vault.bin` that may be damaged past its fixed-offset prefix.
fn kek_id_of_damaged(bytes: &[u8]) -> Option<KekId> {
    let rest = bytes.strip_prefix(MAGIC)?.strip_prefix(&[FORMAT_VERSION])?;
    let (id, _) = rest.split_first_chunk::<16>()?;
    Some(KekId::from_bytes(*id))
}

/// What [`Vault::wipe`] finds in vault.bin.
enum KekRecord {
    /// No file (nor anything) under the name.
    Absent,
    /// The KEK id, read from the file's prefix however damaged or long the rest.
    Named(KekId),
    /// Something is there, but its prefix names no KEK (garbage, or not a regular file).
    Unnamed,
}

/// For [`Vault::wipe`]: the KEK id from the prefix of `path`. An I/O error other than
/// "absent" is an error (the file may name a KEK we cannot read now).
fn read_kek_id(path: &Path) -> Result<KekRecord, VaultError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => {}
        Ok(_) => return Ok(KekRecord::Unnamed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(KekRecord::Absent),
        Err(e) => return Err(VaultError::io("stat vault.bin")(e)),
    }
    let file = File::open(path).map_err(VaultError::io("open vault.bin"))?;
    let mut prefix = Vec::new();
    file.take(HEADER_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(VaultError::io("read vault.bin"))?;
    Ok(kek_id_of_damaged(&prefix).map_or(KekRecord::Unnamed, KekRecord::Named))
}

/// Reads `path` up to one byte more than [`FILE_LEN`] — enough for [`VaultFile::parse`] to see
/// that something follows ("trailing bytes"), however long the file; `NotFound` if absent.
fn read_vault_file(path: &Path) -> Result<Vec<u8>, VaultError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => VaultError::NotFound,
        _ => VaultError::io("open vault.bin")(e),
    })?;
    let mut bytes = Vec::new();
    file.take(FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(VaultError::io("read vault.bin"))?;
    Ok(bytes)
}

/// Writes `contents` as `dir/vault.bin`, atomically and without ever replacing an existing file.
///
/// A temporary file (mode 0600, created exclusively) is written and fsynced, then linked to
/// its final name — `link(2)` fails if the name exists, which `rename(2)` would silently
/// replace — then the directory is fsynced. Where `link(2)` is not permitted (some Android
/// SELinux policies, some file systems) we fall back to checking for the name and `rename(2)`:
/// the window between the two only matters to two first runs racing in one directory.
fn write_new_file(dir: &Path, kek_id: &KekId, contents: &[u8]) -> Result<(), VaultError> {
    let path = dir.join(VAULT_FILE);
    let tmp = dir.join(format!(".{VAULT_FILE}.{}.tmp", kek_id.hex()));
    let placed = write_tmp_then_link(&tmp, &path, contents);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, "could not remove the vault.bin temporary file"),
    }
    placed?;
    sync_dir(dir)
}

fn write_tmp_then_link(tmp: &Path, path: &Path, contents: &[u8]) -> Result<(), VaultError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(VaultError::io("create vault.bin temporary file"))?;
    file.write_all(contents)
        .map_err(VaultError::io("write vault.bin temporary file"))?;
    file.sync_all()
        .map_err(VaultError::io("fsync vault.bin temporary file"))?;
    drop(file);
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(VaultError::AlreadyExists),
        Err(_) if fs::symlink_metadata(path).is_ok() => Err(VaultError::AlreadyExists),
        Err(_) => fs::rename(tmp, path).map_err(VaultError::io("rename vault.bin")),
    }
}

/// After a failed [`Vault::create`]: removes `dir/vault.bin` if it is the one just written
/// for `kek_id` (a vault.bin naming another KEK is never ours to remove), and makes that
/// durable. `Ok` when no such file remains.
fn remove_placed(dir: &Path, kek_id: &KekId) -> Result<(), VaultError> {
    let path = dir.join(VAULT_FILE);
    if !matches!(read_kek_id(&path)?, KekRecord::Named(id) if id == *kek_id) {
        return Ok(());
    }
    fs::remove_file(&path).map_err(VaultError::io("delete vault.bin"))?;
    sync_dir(dir)
}

/// Overwrites the whole file with zeros and fsyncs it; absent is fine. Only a regular file is
/// overwritten: a symbolic link planted under the name is deleted, never followed.
fn overwrite_with_zeros(path: &Path) -> Result<(), VaultError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(VaultError::io("stat vault.bin")(e)),
    }
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(VaultError::io("open vault.bin for wiping")(e)),
    };
    let len = file
        .metadata()
        .map_err(VaultError::io("stat vault.bin"))?
        .len();
    let zeros = [0u8; 4096];
    let mut remaining = len;
    while remaining > 0 {
        let n = remaining.min(zeros.len() as u64);
        // n ≤ 4096, so the cast is exact.
        file.write_all(&zeros[..n as usize])
            .map_err(VaultError::io("overwrite vault.bin"))?;
        remaining -= n;
    }
    file.sync_all().map_err(VaultError::io("fsync vault.bin"))
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    #[cfg(test)]
    if tests::FAIL_DIR_SYNCS.with(|n| {
        let left = n.get();
        n.set(left.saturating_sub(1));
        left > 0
    }) {
        return Err(VaultError::io("fsync store directory")(io::Error::other(
            "injected fsync failure",
        )));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(VaultError::io("fsync store directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pkcs11Vault;
    use crate::pkcs11::{DEFAULT_SOFTHSM_MODULE, Pkcs11Config};
    use crate::secret::SecretBytes;
    use crate::test_support::{TOKEN_A, USER_PIN, run_isolated};

    thread_local! {
        /// How many coming directory fsyncs of this thread fail (fault injection).
        pub(super) static FAIL_DIR_SYNCS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn token() -> Pkcs11Vault {
        let config = Pkcs11Config {
            module: DEFAULT_SOFTHSM_MODULE.into(),
            token_label: TOKEN_A.to_owned(),
        };
        Pkcs11Vault::open(&config, &SecretBytes::from(USER_PIN.as_bytes())).unwrap()
    }

    /// The real token, except that destroying a KEK fails (a token that refuses, a keystore
    /// error): what a wipe must never report as done.
    struct DestroyFails<'a>(&'a dyn KeyVault);

    impl KeyVault for DestroyFails<'_> {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn generate_kek(&self, id: &KekId) -> Result<(), VaultError> {
            self.0.generate_kek(id)
        }
        fn wrap(&self, id: &KekId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
            self.0.wrap(id, aad, plaintext)
        }
        fn unwrap(
            &self,
            id: &KekId,
            aad: &[u8],
            wrapped: &[u8],
        ) -> Result<SecretBytes, VaultError> {
            self.0.unwrap(id, aad, wrapped)
        }
        fn destroy_kek(&self, _id: &KekId) -> Result<(), VaultError> {
            Err(VaultError::Pkcs11 {
                op: "C_DestroyObject",
                detail: "CKR_DEVICE_ERROR (injected)".into(),
            })
        }
    }

    /// Issue 15 item 2: a wipe whose KEK destruction fails touches nothing and says so; a
    /// retry with a working backend finishes it. Before, vault.bin was erased anyway (the only
    /// record of the KEK's id) and the retry reported success while the KEK lived on.
    #[test]
    fn a_wipe_whose_kek_survives_touches_nothing_and_a_retry_finishes_it() {
        run_isolated(
            module_path!(),
            "a_wipe_whose_kek_survives_touches_nothing_and_a_retry_finishes_it",
            || {
                let dir = tempfile::tempdir().unwrap();
                let token = token();
                let binding = named("a.example");
                let kek_id = Vault::create(dir.path(), &token, &binding)
                    .unwrap()
                    .kek_id()
                    .clone();
                let before = fs::read(dir.path().join(VAULT_FILE)).unwrap();

                let error = Vault::wipe(dir.path(), &DestroyFails(&token)).unwrap_err();
                assert!(matches!(error, VaultError::Pkcs11 { .. }), "{error:?}");
                assert_eq!(fs::read(dir.path().join(VAULT_FILE)).unwrap(), before);
                Vault::open(dir.path(), &token, &binding).expect("the vault is untouched");
                // Damaged after the id, or unopenable for now: the same.
                let mut damaged = before.clone();
                damaged.truncate(HEADER_LEN + 3);
                fs::write(dir.path().join(VAULT_FILE), &damaged).unwrap();
                assert!(Vault::wipe(dir.path(), &DestroyFails(&token)).is_err());
                assert_eq!(fs::read(dir.path().join(VAULT_FILE)).unwrap(), damaged);

                // Retry with the token working: the KEK goes, then the file.
                Vault::wipe(dir.path(), &token).unwrap();
                assert!(!Vault::exists(dir.path()));
                assert!(matches!(
                    token.wrap(&kek_id, b"", b""),
                    Err(VaultError::KekNotFound)
                ));
            },
        );
    }

    #[test]
    fn a_wipe_that_cannot_read_vault_bin_touches_nothing() {
        run_isolated(
            module_path!(),
            "a_wipe_that_cannot_read_vault_bin_touches_nothing",
            || {
                let dir = tempfile::tempdir().unwrap();
                let token = token();
                let kek_id = Vault::create(dir.path(), &token, &named("a.example"))
                    .unwrap()
                    .kek_id()
                    .clone();
                let path = dir.path().join(VAULT_FILE);
                let before = fs::read(&path).unwrap();
                // A directory under the name: cannot be read as a vault.
                fs::rename(&path, dir.path().join("saved")).unwrap();
                fs::create_dir(&path).unwrap();
                fs::write(path.join("inside"), b"x").unwrap();
                let error = Vault::wipe(dir.path(), &token).unwrap_err();
                assert!(
                    matches!(error, VaultError::KekUnidentified | VaultError::Io { .. }),
                    "{error:?}"
                );
                assert!(path.join("inside").exists(), "a directory is never removed");
                fs::remove_dir_all(&path).unwrap();
                fs::rename(dir.path().join("saved"), &path).unwrap();
                assert_eq!(fs::read(&path).unwrap(), before);
                // A vault.bin planted as a symbolic link to another directory's vault names no
                // KEK of ours: that vault's KEK is left alone, the link removed, and the wipe
                // reports it.
                let other = tempfile::tempdir().unwrap();
                let binding = named("a.example");
                let other_kek = Vault::create(other.path(), &token, &binding)
                    .unwrap()
                    .kek_id()
                    .clone();
                let saved = dir.path().join("saved");
                fs::rename(&path, &saved).unwrap();
                std::os::unix::fs::symlink(other.path().join(VAULT_FILE), &path).unwrap();
                assert!(matches!(
                    Vault::wipe(dir.path(), &token),
                    Err(VaultError::KekUnidentified)
                ));
                assert!(fs::symlink_metadata(&path).is_err(), "the link was removed");
                Vault::open(other.path(), &token, &binding).expect("the other vault is intact");
                token.destroy_kek(&other_kek).unwrap();
                fs::rename(&saved, &path).unwrap();

                // A path that cannot be examined (here: the "directory" is a file) is an error,
                // not "nothing to wipe".
                let not_a_dir = dir.path().join("plain-file");
                fs::write(&not_a_dir, b"x").unwrap();
                assert!(matches!(
                    Vault::wipe(&not_a_dir, &token),
                    Err(VaultError::Io { .. })
                ));

                // Garbage before the id: erased, and reported — the KEK may remain.
                fs::write(&path, b"garbage").unwrap();
                assert!(matches!(
                    Vault::wipe(dir.path(), &token),
                    Err(VaultError::KekUnidentified)
                ));
                assert!(!Vault::exists(dir.path()));
                token.destroy_kek(&kek_id).unwrap();
            },
        );
    }

    /// Issue 15 item 2: when the directory's fsync fails after vault.bin was linked, creation
    /// fails without leaving a vault.bin whose KEK is destroyed (the directory would be
    /// unopenable for good, and `create` refuses to overwrite it): the next start creates a
    /// vault normally.
    #[test]
    fn a_creation_failing_at_the_directory_fsync_leaves_the_directory_usable() {
        run_isolated(
            module_path!(),
            "a_creation_failing_at_the_directory_fsync_leaves_the_directory_usable",
            || {
                let dir = tempfile::tempdir().unwrap();
                let token = token();
                let binding = named("a.example");
                FAIL_DIR_SYNCS.with(|n| n.set(1));
                let error = Vault::create(dir.path(), &token, &binding).err().unwrap();
                assert!(matches!(error, VaultError::Io { .. }), "{error:?}");
                assert!(
                    !Vault::exists(dir.path()),
                    "a vault.bin without its KEK was left"
                );
                assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
                let vault = Vault::create(dir.path(), &token, &binding).unwrap();
                let kek = vault.kek_id().clone();
                drop(vault);
                Vault::open(dir.path(), &token, &binding).unwrap();

                // Cleanup removes only the vault.bin written for that KEK: one naming another KEK
                // (a concurrent first run that won the race) stays.
                let before = fs::read(dir.path().join(VAULT_FILE)).unwrap();
                remove_placed(dir.path(), &KekId::from_bytes([9; 16])).unwrap();
                assert_eq!(fs::read(dir.path().join(VAULT_FILE)).unwrap(), before);
                remove_placed(&dir.path().join("absent"), &kek).unwrap();

                // If vault.bin cannot be removed either (both fsyncs fail), the KEK is kept:
                // what is left opens.
                let other = tempfile::tempdir().unwrap();
                FAIL_DIR_SYNCS.with(|n| n.set(2));
                assert!(Vault::create(other.path(), &token, &binding).is_err());
                FAIL_DIR_SYNCS.with(|n| n.set(0));
                if Vault::exists(other.path()) {
                    Vault::open(other.path(), &token, &binding)
                        .expect("a vault.bin left behind must open");
                    Vault::wipe(other.path(), &token).unwrap();
                }
                Vault::wipe(dir.path(), &token).unwrap();
                assert!(matches!(
                    token.wrap(&kek, b"", b""),
                    Err(VaultError::KekNotFound)
                ));
            },
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sample_file() -> Vec<u8> {
        let header = encode_header(&KekId::from_bytes([7; 16]));
        [header.as_slice(), &WRAPPED_LEN_FIELD, &[0xEE; WRAPPED_LEN]].concat()
    }

    fn named(server_name: impl Into<String>) -> VaultBinding {
        VaultBinding {
            server_name: server_name.into(),
        }
    }

    fn format_reason(bytes: &[u8]) -> &'static str {
        match VaultFile::parse(bytes) {
            Err(VaultError::Format { reason }) => reason,
            Err(other) => panic!("expected Format, got {other:?}"),
            Ok(_) => panic!("expected Format, got Ok"),
        }
    }

    #[test]
    fn derivation_known_answers() {
        // Expected values computed independently (Python hmac/hashlib, RFC 5869 by hand).
        let mut root = [0u8; 32];
        for (i, b) in root.iter_mut().enumerate() {
            *b = i as u8;
        }
        let vault = Vault::from_root(root);
        assert_eq!(
            hex(vault.database_key().expose()),
            "1e907948f6ec6d78d52b2718d60ba6321bc86bbc614a814d8eabf3fbcc43db19"
        );
        assert_eq!(
            hex(vault.pickle_key().expose()),
            "eca12c0f6256af0bfc8bcee50077e9e95df8cb529562dfc7326f44e7f2c888ce"
        );
        assert_eq!(
            hex(vault.media_key().expose()),
            "571a49564fd43436581311c8ffe9fdc0279c76d4e5281ff77e50683bc847b802"
        );
        assert_eq!(
            vault.database_key().sqlcipher_pragma_value().as_str(),
            "x'1e907948f6ec6d78d52b2718d60ba6321bc86bbc614a814d8eabf3fbcc43db19'"
        );
    }

    #[test]
    fn derived_keys_differ_and_are_deterministic() {
        let a = Vault::from_root([1; 32]);
        let b = Vault::from_root([2; 32]);
        let keys = [
            *a.database_key().expose(),
            *a.pickle_key().expose(),
            *a.media_key().expose(),
            *b.database_key().expose(),
        ];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        assert_eq!(
            a.database_key().expose(),
            Vault::from_root([1; 32]).database_key().expose()
        );
        assert_eq!(
            a.pickle_key().expose(),
            Vault::from_root([1; 32]).pickle_key().expose()
        );
        assert_eq!(
            a.media_key().expose(),
            Vault::from_root([1; 32]).media_key().expose()
        );
    }

    #[test]
    fn debug_is_redacted() {
        let vault = Vault::from_root([0xA5; 32]);
        let debug = format!("{vault:?}");
        assert_eq!(
            debug,
            format!(
                "Vault {{ root: \"<redacted>\", kek_id: KekId({}) }}",
                "00".repeat(16)
            )
        );
        for secret in [
            format!("{:?}", vault.database_key()),
            format!("{:?}", vault.pickle_key()),
            format!("{:?}", vault.media_key()),
        ] {
            assert!(secret.ends_with("(<redacted>)"), "{secret}");
            assert!(!secret.contains(&hex(vault.database_key().expose())[..8]));
        }
        assert!(!debug.to_lowercase().contains("a5a5"));
    }

    #[test]
    fn layout_and_aad() {
        let file = sample_file();
        let parsed = VaultFile::parse(&file).unwrap();
        assert_eq!(FILE_LEN, 87);
        assert_eq!(file.len(), 87);
        assert_eq!(&file[..8], b"TSVAULT1");
        assert_eq!(file[8], 1);
        assert_eq!(&file[9..25], &[7; 16]);
        assert_eq!(parsed.kek_id, KekId::from_bytes([7; 16]));
        assert_eq!(parsed.header, &file[..25]);
        assert_eq!(&file[25..27], &[0, 60]);
        assert_eq!(parsed.wrapped, &file[27..]);
        assert_eq!(parsed.wrapped, &[0xEE; 60]);
        // The binding is not in the file; it is appended to the header in the AAD.
        let bound = encode_binding(&named("example.org")).unwrap();
        assert_eq!(bound, [&[0, 11][..], b"example.org"].concat());
        assert_eq!(
            aad(parsed.header, &bound),
            [
                b"tchap-secure/v1".as_slice(),
                &file[..25],
                &[0, 11],
                b"example.org"
            ]
            .concat()
        );
        assert_eq!(
            kek_id_of_damaged(&file[..25]),
            Some(KekId::from_bytes([7; 16]))
        );
        assert_eq!(kek_id_of_damaged(&file[..24]), None);
    }

    #[test]
    fn strict_parsing() {
        let file = sample_file();
        for len in 0..file.len() {
            assert_eq!(format_reason(&file[..len]), "truncated", "{len}");
        }
        assert_eq!(
            format_reason(&[file.as_slice(), &[0]].concat()),
            "trailing bytes"
        );
        let mut bad = file.clone();
        bad[0] ^= 1;
        assert_eq!(format_reason(&bad), "bad magic");
        let mut bad = file.clone();
        bad[8] = 2;
        assert_eq!(format_reason(&bad), "unsupported format version");
        for (index, value) in [(25, 1), (26, 61), (26, 0)] {
            let mut bad = file.clone();
            bad[index] = value;
            assert_eq!(
                format_reason(&bad),
                "unexpected wrapped blob length",
                "{index}"
            );
        }
    }

    #[test]
    fn binding_bounds() {
        for refused in [String::new(), "x".repeat(65_536)] {
            assert!(matches!(
                encode_binding(&named(refused)),
                Err(VaultError::Format { .. })
            ));
        }
        let longest = encode_binding(&named("x".repeat(65_535))).unwrap();
        assert_eq!(&longest[..2], &[0xFF, 0xFF]);
        assert_eq!(longest.len(), 2 + 65_535);
        assert_eq!(encode_binding(&named("a")).unwrap(), [0, 1, b'a']);
    }

    #[test]
    fn missing_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VAULT_FILE);
        assert!(matches!(read_vault_file(&path), Err(VaultError::NotFound)));
        assert!(!Vault::exists(dir.path()));
        // A well-formed file followed by a lot: only one byte past it is read, and that is
        // enough to refuse it.
        fs::write(&path, [sample_file(), vec![0u8; 200_000]].concat()).unwrap();
        assert!(Vault::exists(dir.path()));
        let bytes = read_vault_file(&path).unwrap();
        assert_eq!(bytes.len(), FILE_LEN + 1);
        assert_eq!(format_reason(&bytes), "trailing bytes");
    }

    #[cfg(feature = "soft-vault")]
    mod over_soft_vault {
        use super::*;
        use crate::soft::SoftVault;

        fn binding() -> VaultBinding {
            named("a.example")
        }

        #[test]
        fn create_open_wipe() {
            let dir = tempfile::tempdir().unwrap();
            let soft = SoftVault::new().unwrap();
            let created = Vault::create(dir.path(), &soft, &binding()).unwrap();
            let opened = Vault::open(dir.path(), &soft, &binding()).unwrap();
            assert_eq!(
                created.database_key().expose(),
                opened.database_key().expose()
            );
            assert_eq!(created.kek_id(), opened.kek_id());
            // Another binding: only the AAD tells, and the file is left as it was.
            let before = fs::read(dir.path().join(VAULT_FILE)).unwrap();
            for other in ["b.example", "A.example", "a.example.", "a.exampl"] {
                assert!(
                    matches!(
                        Vault::open(dir.path(), &soft, &named(other)),
                        Err(VaultError::Unwrap)
                    ),
                    "{other}"
                );
            }
            assert_eq!(fs::read(dir.path().join(VAULT_FILE)).unwrap(), before);
            Vault::wipe(dir.path(), &soft).unwrap();
            assert!(matches!(
                soft.destroy_kek(created.kek_id()),
                Err(VaultError::KekNotFound)
            ));
            assert!(matches!(
                Vault::open(dir.path(), &soft, &binding()),
                Err(VaultError::NotFound)
            ));
        }

        #[test]
        fn the_file_is_87_bytes_without_the_server_name() {
            let dir = tempfile::tempdir().unwrap();
            let soft = SoftVault::new().unwrap();
            let vault = Vault::create(dir.path(), &soft, &binding()).unwrap();
            let file = fs::read(dir.path().join(VAULT_FILE)).unwrap();
            assert_eq!(file.len(), 87);
            assert_eq!(&file[9..25], vault.kek_id().as_bytes());
            let name = binding().server_name.into_bytes();
            assert!(!file.windows(name.len()).any(|w| w == name.as_slice()));
        }

        #[test]
        fn bad_bindings_are_refused_at_create_and_open() {
            let dir = tempfile::tempdir().unwrap();
            let soft = SoftVault::new().unwrap();
            for bad in [String::new(), "x".repeat(65_536)] {
                let result = Vault::create(dir.path(), &soft, &named(bad.clone()));
                assert!(
                    matches!(result, Err(VaultError::Format { .. })),
                    "{result:?}"
                );
                assert_eq!(soft.kek_count(), 0);
                assert!(!Vault::exists(dir.path()));
            }
            drop(Vault::create(dir.path(), &soft, &binding()).unwrap());
            let before = fs::read(dir.path().join(VAULT_FILE)).unwrap();
            for bad in [String::new(), "x".repeat(65_536)] {
                let result = Vault::open(dir.path(), &soft, &named(bad));
                assert!(
                    matches!(result, Err(VaultError::Format { .. })),
                    "{result:?}"
                );
            }
            assert_eq!(fs::read(dir.path().join(VAULT_FILE)).unwrap(), before);
            // The longest allowed name works end to end.
            let longest = named("x".repeat(65_535));
            let other_dir = tempfile::tempdir().unwrap();
            let created = Vault::create(other_dir.path(), &soft, &longest).unwrap();
            let opened = Vault::open(other_dir.path(), &soft, &longest).unwrap();
            assert_eq!(
                created.database_key().expose(),
                opened.database_key().expose()
            );
        }

        #[test]
        fn failed_create_leaves_no_kek_and_no_file() {
            let soft = SoftVault::new().unwrap();
            // The directory does not exist: writing vault.bin fails after the KEK was made.
            let missing = tempfile::tempdir().unwrap().path().join("gone");
            let result = Vault::create(&missing, &soft, &binding());
            assert!(matches!(result, Err(VaultError::Io { .. })), "{result:?}");
            // The KEK generated for it was destroyed again.
            assert_eq!(soft.kek_count(), 0);
            assert!(!missing.exists());
        }
    }
}
