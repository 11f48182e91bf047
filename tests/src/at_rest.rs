//! At-rest scanner: proves that a plaintext (a message text) is in **no** file of a data
//! directory, e.g. once it was erased (redaction, expiry).
//!
//! The database is SQLCipher-encrypted, so a raw byte search of it proves nothing. [`AtRest::scan`]
//! decrypts, with the database key, every page of `tchap-secure.db` and every frame of its WAL,
//! and keeps each decrypted page **whole**: live cells, free space inside b-tree pages
//! (freeblocks, the gap), freelist and overflow pages, and stale WAL frames (already
//! checkpointed, or past the end of the current WAL generation). That is where an erased text
//! lingers without `secure_delete` and a WAL checkpoint. Every file under the directory is also
//! kept raw (the database and WAL included, the `-shm` and any `-journal`, `vault.bin`, spools).
//!
//! # API
//!
//! - [`AtRest::scan`]`(dir, key)`: reads and decrypts now; `key` is the 32 raw bytes of the
//!   database key (the store opens the database with `PRAGMA key = "x'<64 hex>'"`).
//! - [`AtRest::find`]`(needle)`: human-readable locations of `needle`
//!   (`"tchap-secure.db page 12"`, `"tchap-secure.db-wal frame 3 (page 7)"`, `"spool/x raw"`);
//!   empty if nowhere.
//! - [`AtRest::pages`]: how many database pages and WAL frames were decrypted. A scan that
//!   decrypted nothing proves nothing: assert it is positive next to an empty `find`.
//! - [`AtRest::hmac_failures`]: how many of them failed SQLCipher's HMAC check. Expected 0:
//!   every page authenticated under the key proves the scan decrypted with the right key (with
//!   a wrong key, every page fails and the "decrypted" bytes are noise).
//! - [`database_key`]`(dir, token_label, pin, server_name)`: the database key of a data
//!   directory, through the real vault on its SoftHSM2 token; [`database_key_with`] takes an
//!   already opened backend (e.g. [`crate::harness::InProcess::vault`], whose token may not be
//!   opened a second time in the same process).
//!
//! ```ignore
//! let key = database_key_with(&member.data_dir(), &member.vault, &server_name);
//! let scan = AtRest::scan(&member.data_dir(), &key);
//! assert!(scan.pages() > 0);
//! assert_eq!(scan.hmac_failures(), 0);
//! assert_eq!(scan.find(canary.as_bytes()), Vec::<String>::new());
//! ```
//!
//! # SQLCipher 4 page format (defaults, raw key; checked against the bundled SQLCipher 4.6.1)
//!
//! - Page size 4096; each page ends with an 80-byte reserve: 16-byte IV, then 64-byte HMAC.
//! - With a raw key (`x'<64 hex>'`) the AES-256 key is the 32 raw bytes (no PBKDF2).
//! - The file starts with the 16-byte KDF salt: page 1's encrypted region is `[16 .. 4016)`,
//!   other pages' `[0 .. 4016)`; AES-256-CBC, no padding, IV at `[4016 .. 4032)`.
//! - HMAC-SHA512 over `encrypted region ‖ IV ‖ page number (u32 little-endian)`, stored at
//!   `[4032 .. 4096)`; its key is PBKDF2-HMAC-SHA512(raw key, salt XOR 0x3a, 2 iterations,
//!   32 bytes).
//! - WAL frames (32-byte WAL header, then 24-byte frame header + page) hold pages encrypted
//!   exactly as in the database file, under the page number of the frame header; a frame of
//!   page 1 starts with the salt too.
//!
//! # Limits
//!
//! - Each decrypted page is searched on its own: a needle split across two pages (a long text
//!   spilling onto overflow pages) is found only through its parts. Use canaries shorter than
//!   a few hundred bytes, which SQLite never splits across pages when they sit in a short row.
//! - A rollback journal (`-journal`; the store runs in WAL mode, so there is none) is searched
//!   raw only, as are the bytes of a truncated last page or frame.
//! - An all-zero page (a hole, a zeroed WAL tail) holds nothing and is neither decrypted nor
//!   counted.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use cbc::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::NoPadding};
use ring::{hmac, pbkdf2};
use tchap_secure_core::store::DATABASE_FILE;
use tchap_secure_hsm::{KeyVault, Vault, VaultBinding};
use zeroize::Zeroizing;

/// SQLCipher 4's default page size.
const PAGE_SIZE: usize = 4096;
/// The KDF salt at the start of the database file (and of page 1 in the WAL).
const SALT_LEN: usize = 16;
const IV_LEN: usize = 16;
const HMAC_LEN: usize = 64;
/// Bytes reserved at the end of every page: IV, then HMAC.
const RESERVE: usize = IV_LEN + HMAC_LEN;
/// XORed into the KDF salt to make the HMAC key's salt.
const HMAC_SALT_MASK: u8 = 0x3a;
/// PBKDF2 iterations deriving the HMAC key from the encryption key.
const HMAC_KDF_ITERATIONS: u32 = 2;
const WAL_HEADER_LEN: usize = 32;
const WAL_FRAME_HEADER_LEN: usize = 24;
/// What SQLCipher puts back in front of a decrypted page 1, in place of the salt.
const SQLITE_MAGIC: &[u8; SALT_LEN] = b"SQLite format 3\0";

/// One searchable place: a decrypted page, or a file's raw bytes.
struct Region {
    location: String,
    bytes: Vec<u8>,
}

/// Every place a plaintext could be left in `dir`: each decrypted database page and WAL frame
/// (whole, with free space), and every other file's raw bytes.
pub struct AtRest {
    regions: Vec<Region>,
    pages: usize,
    hmac_failures: usize,
}

impl AtRest {
    /// Reads and decrypts now. `key`: the 32 raw bytes of the database key.
    ///
    /// Panics if `dir` cannot be read (a scan that read nothing must not pass). Garbage pages
    /// (wrong key, torn write) do not make it panic: they are kept, decrypted to noise, and
    /// counted in [`AtRest::hmac_failures`].
    pub fn scan(dir: &Path, key: &[u8; 32]) -> AtRest {
        let mut scan = AtRest {
            regions: Vec::new(),
            pages: 0,
            hmac_failures: 0,
        };
        let mut files = Vec::new();
        list_files(dir, &mut files);
        files.sort();
        let mut database = None;
        let mut wal = None;
        for path in files {
            let Some(bytes) = read_file(&path) else {
                continue; // Removed since listed (a `-journal` of a finished transaction).
            };
            let name = relative_name(dir, &path);
            if path == dir.join(DATABASE_FILE) {
                database = Some(bytes.clone());
            } else if path == dir.join(format!("{DATABASE_FILE}-wal")) {
                wal = Some(bytes.clone());
            }
            scan.regions.push(Region {
                location: format!("{name} raw"),
                bytes,
            });
        }
        let database = database.unwrap_or_default();
        let wal = wal.unwrap_or_default();
        let salt = salt_of(&database, &wal);
        let cipher = PageCipher::new(key, salt.as_ref());
        scan.decrypt_database(&cipher, &database);
        scan.decrypt_wal(&cipher, &wal);
        scan
    }

    /// Where `needle` occurs: human-readable locations ("tchap-secure.db page 12",
    /// "tchap-secure.db-wal frame 3 (page 7)", "spool/x raw"); empty if nowhere.
    pub fn find(&self, needle: &[u8]) -> Vec<String> {
        assert!(!needle.is_empty(), "an empty needle is everywhere");
        self.regions
            .iter()
            .filter(|region| contains(&region.bytes, needle))
            .map(|region| region.location.clone())
            .collect()
    }

    /// How many database pages and WAL frames were decrypted (a scan that decrypted nothing
    /// proves nothing).
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// How many of the decrypted pages and frames failed SQLCipher's HMAC check (expected 0: a
    /// failure means a wrong key or a damaged page, whose decrypted bytes are noise; with no
    /// salt anywhere, neither a database file nor a WAL frame of page 1, none can be checked
    /// and all count as failures).
    pub fn hmac_failures(&self) -> usize {
        self.hmac_failures
    }

    fn decrypt_database(&mut self, cipher: &PageCipher, database: &[u8]) {
        for (index, page) in database.chunks_exact(PAGE_SIZE).enumerate() {
            let pgno = u32::try_from(index + 1).expect("fewer than 2^32 pages");
            self.decrypt(cipher, pgno, page, format!("{DATABASE_FILE} page {pgno}"));
        }
    }

    fn decrypt_wal(&mut self, cipher: &PageCipher, wal: &[u8]) {
        let Some(header) = wal.get(..WAL_HEADER_LEN) else {
            return;
        };
        let page_size = usize::try_from(u32::from_be_bytes(header[8..12].try_into().unwrap()))
            .expect("u32 fits usize");
        // A power of two in 512..=65536 (65536 is written as 1); anything else is no WAL of
        // ours, searched raw only.
        let page_size = if page_size == 1 { 65536 } else { page_size };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return;
        }
        let frames = wal[WAL_HEADER_LEN..].chunks_exact(WAL_FRAME_HEADER_LEN + page_size);
        for (index, frame) in frames.enumerate() {
            let (frame_header, page) = frame.split_at(WAL_FRAME_HEADER_LEN);
            let pgno = u32::from_be_bytes(frame_header[..4].try_into().unwrap());
            if pgno == 0 {
                continue; // Not a frame ever written (SQLite numbers pages from 1).
            }
            let location = format!("{DATABASE_FILE}-wal frame {} (page {pgno})", index + 1);
            self.decrypt(cipher, pgno, page, location);
        }
    }

    fn decrypt(&mut self, cipher: &PageCipher, pgno: u32, page: &[u8], location: String) {
        if page.iter().all(|&b| b == 0) {
            return;
        }
        let decrypted = cipher.decrypt(pgno, page);
        self.pages += 1;
        if !decrypted.authentic {
            self.hmac_failures += 1;
        }
        self.regions.push(Region {
            location,
            bytes: decrypted.bytes,
        });
    }
}

/// A summary only: the decrypted pages are plaintext, and far too long to print.
impl fmt::Debug for AtRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            regions,
            pages,
            hmac_failures,
        } = self;
        f.debug_struct("AtRest")
            .field("regions", &regions.len())
            .field("pages", pages)
            .field("hmac_failures", hmac_failures)
            .finish()
    }
}

/// The database key of a data directory, derived through the real vault on its SoftHSM2
/// token (opened here with [`crate::harness::open_token`]).
pub fn database_key(
    dir: &Path,
    token_label: &str,
    pin: &str,
    server_name: &str,
) -> Zeroizing<[u8; 32]> {
    let backend = crate::harness::open_token(token_label, pin)
        .unwrap_or_else(|e| panic!("cannot open token {token_label}: {e}"));
    database_key_with(dir, &backend, server_name)
}

/// The database key of a data directory, derived through the real vault on an already opened
/// backend (e.g. [`crate::harness::InProcess::vault`]).
pub fn database_key_with(
    dir: &Path,
    backend: &dyn KeyVault,
    server_name: &str,
) -> Zeroizing<[u8; 32]> {
    let binding = VaultBinding {
        server_name: server_name.to_owned(),
    };
    let vault = Vault::open(dir, backend, &binding)
        .unwrap_or_else(|e| panic!("cannot open the vault of {}: {e}", dir.display()));
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(vault.database_key().expose());
    key
}

/// The encryption key, and the HMAC key when the salt is known.
struct PageCipher {
    key: Zeroizing<[u8; 32]>,
    hmac: Option<hmac::Key>,
}

struct Decrypted {
    /// The page up to its reserve; page 1 starts with the SQLite magic, as SQLCipher hands
    /// it to SQLite.
    bytes: Vec<u8>,
    /// Whether the HMAC checked (false if it could not be checked: no salt).
    authentic: bool,
}

impl PageCipher {
    fn new(key: &[u8; 32], salt: Option<&[u8; SALT_LEN]>) -> Self {
        let hmac = salt.map(|salt| {
            let mut hmac_salt = *salt;
            for byte in &mut hmac_salt {
                *byte ^= HMAC_SALT_MASK;
            }
            let mut hmac_key = Zeroizing::new([0u8; 32]);
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA512,
                NonZeroU32::new(HMAC_KDF_ITERATIONS).unwrap(),
                &hmac_salt,
                key,
                &mut hmac_key[..],
            );
            hmac::Key::new(hmac::HMAC_SHA512, &hmac_key[..])
        });
        Self {
            key: Zeroizing::new(*key),
            hmac,
        }
    }

    /// Decrypts one page of any size SQLite allows (the caller checked it is a power of two
    /// of at least 512 bytes).
    fn decrypt(&self, pgno: u32, page: &[u8]) -> Decrypted {
        let offset = if pgno == 1 { SALT_LEN } else { 0 };
        let usable = page.len() - RESERVE;
        let (signed, mac) = page[offset..].split_at(usable - offset + IV_LEN);
        let iv = &page[usable..usable + IV_LEN];
        let authentic = self.hmac.as_ref().is_some_and(|key| {
            let mut context = hmac::Context::with_key(key);
            context.update(signed);
            context.update(&pgno.to_le_bytes());
            // Not secret: a plain comparison is fine in a test.
            context.sign().as_ref() == &mac[..HMAC_LEN]
        });
        let mut bytes = page[..usable].to_vec();
        if offset != 0 {
            bytes[..SALT_LEN].copy_from_slice(SQLITE_MAGIC);
        }
        let decryptor = cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.key[..], iv)
            .expect("AES-256 key and IV lengths");
        decryptor
            .decrypt_padded::<NoPadding>(&mut bytes[offset..])
            .expect("a page's encrypted region is whole AES blocks");
        Decrypted { bytes, authentic }
    }
}

/// The KDF salt: the first 16 bytes of the database file, or of a WAL frame of page 1 if the
/// database file is shorter (never checkpointed).
fn salt_of(database: &[u8], wal: &[u8]) -> Option<[u8; SALT_LEN]> {
    if let Some(salt) = database.get(..SALT_LEN) {
        return salt.try_into().ok();
    }
    let page_size = usize::try_from(u32::from_be_bytes(wal.get(8..12)?.try_into().ok()?)).ok()?;
    if page_size < 512 {
        return None;
    }
    wal.get(WAL_HEADER_LEN..)?
        .chunks_exact(WAL_FRAME_HEADER_LEN + page_size)
        .find(|frame| frame[..4] == 1u32.to_be_bytes())
        .and_then(|frame| frame[WAL_FRAME_HEADER_LEN..][..SALT_LEN].try_into().ok())
}

/// Every regular file under `dir`, recursively (symbolic links are not followed).
fn list_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", entry.path().display()));
        if kind.is_dir() {
            list_files(&entry.path(), files);
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
}

/// The file's bytes, or `None` if it vanished since it was listed.
fn read_file(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn relative_name(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use ring::rand::{SecureRandom, SystemRandom};
    use rusqlite::Connection;

    use super::*;

    fn random<const N: usize>() -> [u8; N] {
        let mut bytes = [0u8; N];
        SystemRandom::new().fill(&mut bytes).unwrap();
        bytes
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn canary(name: &str) -> String {
        format!("canary-{name}-{}", hex(&random::<12>()))
    }

    /// A SQLCipher database in a fresh directory, keyed and set up as `Store::open` does,
    /// `secure_delete` aside (the tests set it). The connection stays open: closing the last
    /// one checkpoints and deletes the WAL.
    fn database(key: &[u8; 32]) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.execute_batch("PRAGMA cipher_memory_security = ON;")
            .unwrap();
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex(key)))
            .unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA temp_store = MEMORY;
             CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        )
        .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        checkpoint(&conn, "TRUNCATE");
        (dir, conn)
    }

    fn checkpoint(conn: &Connection, mode: &str) {
        let busy: i64 = conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "checkpoint {mode} was blocked");
    }

    fn insert(conn: &Connection, body: &str) {
        conn.execute("INSERT INTO messages (body) VALUES (?1)", [body])
            .unwrap();
    }

    fn delete(conn: &Connection, body: &str) {
        assert_eq!(
            conn.execute("DELETE FROM messages WHERE body = ?1", [body])
                .unwrap(),
            1
        );
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages WHERE instr(body, ?1) > 0",
                [body],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "SQL no longer sees the row");
    }

    fn wal_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(format!("{DATABASE_FILE}-wal")))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Scans and checks that every page was authenticated under `key`.
    fn scan(dir: &Path, key: &[u8; 32]) -> AtRest {
        let scan = AtRest::scan(dir, key);
        assert!(scan.pages() > 0, "nothing decrypted: {scan:?}");
        assert_eq!(scan.hmac_failures(), 0, "{scan:?}");
        scan
    }

    fn in_wal(locations: &[String]) -> bool {
        locations
            .iter()
            .any(|l| l.starts_with(&format!("{DATABASE_FILE}-wal frame ")))
    }

    fn in_database(locations: &[String]) -> bool {
        locations
            .iter()
            .any(|l| l.starts_with(&format!("{DATABASE_FILE} page ")))
    }

    fn raw(locations: &[String]) -> bool {
        locations.iter().any(|l| l.ends_with(" raw"))
    }

    #[test]
    fn decrypted_pages_are_sqlite_pages() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        insert(&conn, "hello");
        checkpoint(&conn, "TRUNCATE");
        let scan = scan(dir.path(), &key);
        let page = |n: u32| {
            let location = format!("{DATABASE_FILE} page {n}");
            &scan
                .regions
                .iter()
                .find(|r| r.location == location)
                .unwrap_or_else(|| panic!("no {location}"))
                .bytes
        };
        let first = page(1);
        assert_eq!(&first[..16], SQLITE_MAGIC);
        assert_eq!(first[16..18], [0x10, 0x00], "page size 4096");
        assert_eq!(first[20], 80, "80 reserved bytes per page");
        assert_eq!(first[21..24], [64, 32, 32], "payload fractions");
        assert_eq!(first[100], 0x0d, "sqlite_schema: a leaf table b-tree page");
        assert_eq!(page(2)[0], 0x0d, "messages: a leaf table b-tree page");
        assert!(contains(page(2), b"hello"));
        assert_eq!(first.len(), PAGE_SIZE - RESERVE);

        // A WAL frame of page 1 is encrypted as page 1 of the file: salt first, then the rest.
        conn.execute_batch("CREATE TABLE wal_only (x);").unwrap();
        let scan = super::AtRest::scan(dir.path(), &key);
        assert_eq!(scan.hmac_failures(), 0, "{scan:?}");
        let frame = scan
            .regions
            .iter()
            .find(|r| {
                r.location
                    .starts_with(&format!("{DATABASE_FILE}-wal frame "))
            })
            .filter(|r| r.location.ends_with("(page 1)"))
            .expect("a WAL frame of page 1");
        assert_eq!(frame.bytes[16..18], [0x10, 0x00]);
        assert!(contains(&frame.bytes, b"CREATE TABLE wal_only"));

        // Without the database file, the salt (for the HMAC) comes from that frame.
        let alone = tempfile::tempdir().unwrap();
        let wal = format!("{DATABASE_FILE}-wal");
        std::fs::copy(dir.path().join(&wal), alone.path().join(&wal)).unwrap();
        let scan = super::AtRest::scan(alone.path(), &key);
        assert!(scan.pages() > 0, "{scan:?}");
        assert_eq!(scan.hmac_failures(), 0, "{scan:?}");
    }

    #[test]
    fn finds_a_row_in_the_wal_then_in_the_database() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        let text = canary("live");
        insert(&conn, &text);

        let before = scan(dir.path(), &key).find(text.as_bytes());
        assert!(in_wal(&before), "{before:?}");
        assert!(!in_database(&before), "not checkpointed yet: {before:?}");
        assert!(!raw(&before), "the files are encrypted: {before:?}");

        checkpoint(&conn, "TRUNCATE");
        assert_eq!(wal_len(dir.path()), 0);
        let after = scan(dir.path(), &key).find(text.as_bytes());
        assert!(in_database(&after), "{after:?}");
        assert!(!in_wal(&after), "{after:?}");
        assert!(!raw(&after), "{after:?}");
    }

    #[test]
    fn finds_a_deleted_row_in_free_space_without_secure_delete() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        conn.execute_batch("PRAGMA secure_delete = OFF;").unwrap();
        let text = canary("freed");
        insert(&conn, &text);
        insert(&conn, "another row, live");
        checkpoint(&conn, "TRUNCATE");
        delete(&conn, &text);
        checkpoint(&conn, "TRUNCATE");
        assert_eq!(wal_len(dir.path()), 0);

        let found = scan(dir.path(), &key).find(text.as_bytes());
        assert!(
            in_database(&found),
            "a deleted row lingers in the page's free space: {found:?}"
        );
    }

    #[test]
    fn finds_a_deleted_row_on_a_freelist_page_without_secure_delete() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        conn.execute_batch("PRAGMA secure_delete = OFF;").unwrap();
        let text = canary("overflow");
        // Several pages of overflow, the canary in the middle of the second one.
        let body = format!("{}{text}{}", "a".repeat(6000), "b".repeat(6000));
        insert(&conn, &body);
        checkpoint(&conn, "TRUNCATE");
        delete(&conn, &body);
        checkpoint(&conn, "TRUNCATE");
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert!(free >= 3, "the overflow pages were freed: {free}");

        let found = scan(dir.path(), &key).find(text.as_bytes());
        assert!(
            in_database(&found),
            "a freelist page keeps its old content: {found:?}"
        );
    }

    #[test]
    fn finds_a_row_in_stale_wal_frames_until_truncated() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        conn.execute_batch("PRAGMA secure_delete = ON;").unwrap();
        let text = canary("stale");
        insert(&conn, &text);
        delete(&conn, &text);

        // The frame of the insert is still in the WAL, superseded by the delete's.
        let found = scan(dir.path(), &key).find(text.as_bytes());
        assert!(in_wal(&found), "{found:?}");
        assert!(!in_database(&found), "{found:?}");

        // Checkpointed, yet not truncated: the frames stay in the file.
        checkpoint(&conn, "PASSIVE");
        assert!(wal_len(dir.path()) > 0);
        let found = scan(dir.path(), &key).find(text.as_bytes());
        assert!(in_wal(&found), "stale frames: {found:?}");
        assert!(!in_database(&found), "secure_delete: {found:?}");

        checkpoint(&conn, "TRUNCATE");
        assert_eq!(
            scan(dir.path(), &key).find(text.as_bytes()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn secure_delete_and_a_truncating_checkpoint_leave_nothing() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        conn.execute_batch("PRAGMA secure_delete = ON;").unwrap();
        let control = canary("control");
        let text = canary("erased");
        insert(&conn, &control);
        insert(&conn, &text);
        checkpoint(&conn, "TRUNCATE");
        let found = scan(dir.path(), &key).find(text.as_bytes());
        assert!(in_database(&found), "{found:?}");

        delete(&conn, &text);
        checkpoint(&conn, "TRUNCATE");
        let scan = scan(dir.path(), &key);
        assert_eq!(scan.find(text.as_bytes()), Vec::<String>::new());
        // The page the erased row was on is still read: the live row next to it is found.
        assert!(in_database(&scan.find(control.as_bytes())));
    }

    #[test]
    fn a_wrong_key_decrypts_nothing_that_authenticates() {
        let key = random::<32>();
        let (dir, conn) = database(&key);
        let text = canary("wrong-key");
        insert(&conn, &text);
        checkpoint(&conn, "PASSIVE");
        assert!(!scan(dir.path(), &key).find(text.as_bytes()).is_empty());

        let wrong = AtRest::scan(dir.path(), &random::<32>());
        assert!(wrong.pages() > 0, "{wrong:?}");
        assert_eq!(wrong.hmac_failures(), wrong.pages(), "{wrong:?}");
        assert_eq!(wrong.find(text.as_bytes()), Vec::<String>::new());
    }

    #[test]
    fn other_files_are_searched_raw() {
        let key = random::<32>();
        let (dir, _conn) = database(&key);
        let text = canary("spooled");
        std::fs::create_dir(dir.path().join("spool")).unwrap();
        std::fs::write(dir.path().join("spool/x"), format!("..{text}..")).unwrap();
        assert_eq!(
            scan(dir.path(), &key).find(text.as_bytes()),
            vec!["spool/x raw".to_owned()]
        );
    }
}
