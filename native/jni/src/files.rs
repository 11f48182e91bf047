//! Files crossing the bridge without crossing the JVM: the file to send and the download's
//! destination are opened (or adopted) here, and their bytes flow between the file and the core
//! natively, streamed — never as a Java array or `String`.
//!
//! Two shapes:
//!
//! - **A file descriptor** (`int fd`): what Android gives (`ParcelFileDescriptor.detachFd()`,
//!   also for a Storage Access Framework document). **Ownership passes to the library with the
//!   call**: once a native method receives an open `fd` ≥ 3, the library closes it when the call
//!   ends, on success or failure, and the caller must neither use nor close it again. [`adopt`]
//!   first checks that the number is an open descriptor with the needed access mode
//!   (`fcntl(F_GETFL)`); a negative number, a standard stream (0, 1, 2: never taken, never
//!   closed) or a number that is not open is refused with `invalid_argument` and left alone.
//! - **A path** (host-friendly): opened here. A download goes, as in the CLI, into a private
//!   temporary file next to the destination, moved into place only when the scanner said clean
//!   and the whole ciphertext matched its hash (`persist_noclobber`): a refused or tampered file
//!   never appears at the path, and an existing file is never overwritten.
//!
//! A download into a descriptor gets bytes only once the core has the scanner's verdict and the
//! verified ciphertext (see `Client::download_file`); a regular file that is not empty is
//! refused (`file_exists`: never overwritten). A failure after writing started (the descriptor
//! failed) leaves a partial file the caller discards.

#![allow(
    unsafe_code,
    reason = "adopting a raw file descriptor the Java caller hands over (fcntl, OwnedFd::from_raw_fd)"
)]

use std::fs::File;
use std::io::{BufWriter, Seek as _};
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::error::BridgeError;

/// What an adopted descriptor must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Readable (`O_RDONLY` or `O_RDWR`): a file to send.
    Read,
    /// Writable (`O_WRONLY` or `O_RDWR`): a download's destination.
    Write,
    /// Anything (only to close it).
    Any,
}

/// Takes ownership of the open descriptor `fd` (see the module documentation) and checks its
/// access mode; a descriptor of the wrong mode is closed, then refused.
pub(crate) fn adopt(fd: i32, access: Access, what: &'static str) -> Result<File, BridgeError> {
    let invalid = |why| BridgeError::InvalidArgument { what, why };
    if fd < 0 {
        return Err(invalid("negative file descriptor"));
    }
    if fd <= 2 {
        return Err(invalid("a standard stream (0, 1, 2) is never taken"));
    }
    let raw: RawFd = fd;
    // SAFETY: `fcntl(F_GETFL)` with an integer reads the descriptor's status flags and touches
    // no memory of ours; on a number that is not an open descriptor it fails with `EBADF`, and it
    // never closes or changes the descriptor. (libc's `fcntl` is `unsafe` as a variadic foreign
    // function; with `F_GETFL` it takes no third argument.)
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(invalid("not an open file descriptor"));
    }
    // SAFETY: `raw` is an open descriptor (the `fcntl` just above succeeded, and nothing on this
    // thread closed it since). By the contract of every native method taking an `fd`
    // (`Native.java`, module documentation), the Java caller hands its ownership over — on
    // Android it comes from `ParcelFileDescriptor.detachFd()`, which gives the number up — and
    // never uses or closes it again, so this `OwnedFd` is its one owner: it is closed exactly
    // once, when the `File` made from it is dropped, and no other code reads or writes through it.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    let file = File::from(owned);
    let mode = flags & libc::O_ACCMODE;
    let allowed = match access {
        Access::Read => mode == libc::O_RDONLY || mode == libc::O_RDWR,
        Access::Write => mode == libc::O_WRONLY || mode == libc::O_RDWR,
        Access::Any => true,
    };
    if !allowed {
        drop(file);
        return Err(invalid(match access {
            Access::Write => "file descriptor not open for writing",
            _ => "file descriptor not open for reading",
        }));
    }
    Ok(file)
}

/// The number of bytes to send from `file`: `len` if ≥ 0 (any descriptor, a pipe included: it
/// must yield exactly that many), else what is left of a regular file after its current offset.
pub(crate) fn send_len(file: &mut File, len: i64, what: &'static str) -> Result<u64, BridgeError> {
    if let Ok(len) = u64::try_from(len) {
        return Ok(len);
    }
    if len != -1 {
        return Err(BridgeError::InvalidArgument {
            what: "length",
            why: "negative (only -1, \"the file's size\", is allowed)",
        });
    }
    let io = |error| BridgeError::File { what, error };
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(BridgeError::InvalidArgument {
            what: "length",
            why: "-1 needs a regular file: give the length of a pipe or socket",
        });
    }
    let offset = file.stream_position().map_err(io)?;
    Ok(metadata.len().saturating_sub(offset))
}

/// A download's destination descriptor: refused if it is a regular file with content (a
/// download never overwrites), else wrapped for buffered writing.
pub(crate) fn download_sink<'f>(
    file: &'f File,
    what: &'static str,
) -> Result<BufWriter<&'f File>, BridgeError> {
    let metadata = file
        .metadata()
        .map_err(|error| BridgeError::File { what, error })?;
    if metadata.is_file() && metadata.len() > 0 {
        return Err(BridgeError::FileExists(what));
    }
    Ok(BufWriter::new(file))
}

/// Commits a download written into a descriptor to disk, if it is a regular file (a pipe or a
/// socket has nothing to sync).
pub(crate) fn sync_if_regular(file: &File, what: &'static str) -> Result<(), BridgeError> {
    let io = |error| BridgeError::File { what, error };
    if file.metadata().map_err(io)?.is_file() {
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// The file to send, opened from its path, with its length and its name (the path's last
/// component, if `name` is not given).
pub(crate) fn open_to_send(path: &Path) -> Result<(File, u64, String), BridgeError> {
    let io = |error| BridgeError::File {
        what: "path",
        error,
    };
    let file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(BridgeError::InvalidArgument {
            what: "path",
            why: "not a regular file",
        });
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((file, metadata.len(), name))
}

/// A download to `path`: the private temporary file it is written into first (next to it, so
/// the final move is a rename), after checking nothing exists at `path`.
pub(crate) fn download_partial(path: &Path) -> Result<tempfile::NamedTempFile, BridgeError> {
    if path.symlink_metadata().is_ok() {
        return Err(BridgeError::FileExists("path"));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".tchap-secure-download-")
        .tempfile_in(&dir)
        .map_err(|error| BridgeError::File {
            what: "path",
            error,
        })
}

/// Moves a complete download into place, never over an existing file (the temporary file is
/// removed if that fails).
pub(crate) fn finish_download(
    partial: tempfile::NamedTempFile,
    path: &Path,
) -> Result<(), BridgeError> {
    let io = |error| BridgeError::File {
        what: "path",
        error,
    };
    partial.as_file().sync_all().map_err(io)?;
    match partial.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(BridgeError::FileExists("path"))
        }
        Err(e) => Err(io(e.error)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::fd::IntoRawFd as _;

    use super::*;

    #[test]
    fn bad_descriptors_are_refused_and_left_alone() {
        for fd in [-1, 0, 1, 2] {
            let e = adopt(fd, Access::Any, "fd").unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{fd}");
        }
        // A number far above anything open (not one just closed: the tests run in parallel
        // threads, one of which could be given that number again meanwhile).
        let e = adopt(1_000_000, Access::Any, "fd").unwrap_err();
        assert!(e.to_string().contains("not an open file descriptor"), "{e}");
    }

    #[test]
    fn access_mode_is_checked_and_the_descriptor_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let read_only = File::open(&path).unwrap().into_raw_fd();
        let e = adopt(read_only, Access::Write, "fd").unwrap_err();
        assert!(e.to_string().contains("not open for writing"), "{e}");

        let fd = File::open(&path).unwrap().into_raw_fd();
        let mut file = adopt(fd, Access::Read, "fd").unwrap();
        assert_eq!(send_len(&mut file, -1, "fd").unwrap(), 5);
        let mut first = [0u8; 2];
        file.read_exact(&mut first).unwrap();
        assert_eq!(send_len(&mut file, -1, "fd").unwrap(), 3);
        assert_eq!(send_len(&mut file, 7, "fd").unwrap(), 7);
        assert_eq!(
            send_len(&mut file, -2, "fd").unwrap_err().code(),
            "invalid_argument"
        );

        // A non-empty destination is never written.
        let fd = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .into_raw_fd();
        let file = adopt(fd, Access::Write, "fd").unwrap();
        assert_eq!(
            download_sink(&file, "fd").unwrap_err().code(),
            "file_exists"
        );
    }

    #[test]
    fn a_path_download_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("taken");
        std::fs::write(&taken, b"keep").unwrap();
        assert_eq!(download_partial(&taken).unwrap_err().code(), "file_exists");

        let out = dir.path().join("out");
        let mut partial = download_partial(&out).unwrap();
        // Something appears at the destination meanwhile: the download does not replace it.
        std::fs::write(&out, b"first").unwrap();
        partial.write_all(b"second").unwrap();
        assert_eq!(
            finish_download(partial, &out).unwrap_err().code(),
            "file_exists"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"first");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "temporary file left"
        );

        let fresh = dir.path().join("fresh");
        let mut partial = download_partial(&fresh).unwrap();
        partial.write_all(b"content").unwrap();
        finish_download(partial, &fresh).unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"content");
    }
}
