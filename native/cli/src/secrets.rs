//! Reading secrets (token PIN, password) from the environment or standard input, never from
//! the command line, into zeroizing buffers.
//!
//! Standard input is read with `read(2)` on a duplicate of file descriptor 0, one byte at a
//! time, straight into a pre-sized zeroizing buffer. It never goes through `std::io::stdin()`'s
//! reader: that is a process-wide 8 KiB `BufReader`, never freed and never wiped, which fills
//! itself with everything the pipe holds (the PIN, the password and whatever follows) on the
//! first one-byte read, and keeps it until the process exits.

use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::os::fd::AsFd as _;

use tchap_secure_hsm::SecretBytes;
use zeroize::Zeroizing;

use crate::exit::Failure;

/// The longest secret line accepted on standard input, in bytes.
const MAX_LINE: usize = 1024;

/// `EBADF` on Linux and Android: file descriptor 0 is closed.
const EBADF: i32 = 9;

/// Standard input for secrets, read line by line without reading ahead: the PIN comes first,
/// then the password, and what follows the last secret stays in the pipe for whoever reads
/// next (a message body read by [`read_text_stdin`]).
pub(crate) struct Stdin {
    /// A duplicate of fd 0 (same open file description, so the same offset), opened at the
    /// first secret; `None` before, or when fd 0 is closed (read as end of input, like std).
    fd: Option<File>,
    opened: bool,
}

impl Stdin {
    pub(crate) fn new() -> Self {
        Self {
            fd: None,
            opened: false,
        }
    }

    /// Reads from `fd` instead of fd 0 (the unit tests' pipes).
    #[cfg(test)]
    fn from_fd(fd: std::os::fd::OwnedFd) -> Self {
        Self {
            fd: Some(File::from(fd)),
            opened: true,
        }
    }

    /// The duplicate of fd 0. `std::io::stdin()` is only asked for its descriptor (a borrow of
    /// fd 0, no read: std's buffer stays empty); `dup` needs no `unsafe`, which this crate
    /// forbids.
    fn input(&mut self) -> Result<Option<&File>, Failure> {
        if !self.opened {
            self.opened = true;
            self.fd = match std::io::stdin().as_fd().try_clone_to_owned() {
                Ok(fd) => Some(File::from(fd)),
                Err(e) if e.raw_os_error() == Some(EBADF) => None,
                Err(e) => return Err(Failure::other(format!("reading standard input: {e}"))),
            };
        }
        Ok(self.fd.as_ref())
    }

    /// One line without its terminator (`\n`, or `\r\n`), read byte by byte into a buffer
    /// sized once for the longest accepted line (it never reallocates, so no unwiped copy is
    /// left behind), then handed over to the secret without a copy.
    fn read_line(&mut self) -> Result<SecretBytes, Failure> {
        let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE));
        if let Some(mut input) = self.input()? {
            let mut byte = Zeroizing::new([0u8; 1]);
            loop {
                match input.read(&mut byte[..]) {
                    Ok(0) => break,
                    Ok(_) if byte[0] == b'\n' => break,
                    Ok(_) if line.len() == MAX_LINE => {
                        return Err(Failure::usage("secret on standard input is too long"));
                    }
                    Ok(_) => line.push(byte[0]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::other(format!("reading standard input: {e}"))),
                }
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(SecretBytes::new(std::mem::take(&mut *line)))
    }
}

impl Stdin {
    /// One line of plain input (an answer to a question), `None` at the end of input.
    pub(crate) fn read_answer(&mut self) -> Result<Option<String>, Failure> {
        let mut got_any = false;
        let mut line = Vec::new();
        if let Some(mut input) = self.input()? {
            let mut byte = [0u8; 1];
            loop {
                match input.read(&mut byte[..]) {
                    Ok(0) => break,
                    Ok(_) => {
                        got_any = true;
                        if byte[0] == b'\n' {
                            break;
                        }
                        if line.len() < MAX_LINE {
                            line.push(byte[0]);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::other(format!("reading standard input: {e}"))),
                }
            }
        }
        Ok(got_any.then(|| String::from_utf8_lossy(&line).trim().to_owned()))
    }
}

/// The secret from stdin (if `from_stdin`) or from `env_var`.
pub(crate) fn read_secret(
    stdin: &mut Stdin,
    from_stdin: bool,
    env_var: &str,
    what: &str,
) -> Result<SecretBytes, Failure> {
    let secret = if from_stdin {
        stdin.read_line()?
    } else {
        match std::env::var_os(env_var) {
            Some(value) => {
                let value = Zeroizing::new(value.into_encoded_bytes());
                SecretBytes::from(&value[..])
            }
            None => {
                return Err(Failure::usage(format!(
                    "the {what} is read from ${env_var} or standard input; neither was given"
                )));
            }
        }
    };
    if secret.is_empty() {
        return Err(Failure::usage(format!("empty {what}")));
    }
    Ok(secret)
}

/// A message body from standard input (not a secret: read whole, trailing newline dropped).
pub(crate) fn read_text_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::other(format!("reading standard input: {e}")))?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    if text.is_empty() {
        return Err(Failure::usage("empty message"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::fd::OwnedFd;

    use super::*;

    /// A `Stdin` reading a pipe that holds `input`, its write end closed.
    fn piped(input: &[u8]) -> Stdin {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(input).unwrap();
        drop(writer);
        Stdin::from_fd(OwnedFd::from(reader))
    }

    #[test]
    fn the_pin_then_the_password_are_read_from_one_pipe() {
        let mut stdin = piped(b"1234\nmot de passe\r\n");
        let pin = read_secret(&mut stdin, true, "UNUSED_PIN", "token PIN").unwrap();
        let password = read_secret(&mut stdin, true, "UNUSED_PASSWORD", "password").unwrap();
        assert_eq!(pin.expose(), b"1234");
        assert_eq!(password.expose(), b"mot de passe");
    }

    #[test]
    fn nothing_after_the_last_secret_is_read() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"1234\nthe message body\n").unwrap();
        drop(writer);
        let mut reader = reader;
        let mut stdin = Stdin::from_fd(OwnedFd::from(reader.try_clone().unwrap()));
        let pin = read_secret(&mut stdin, true, "UNUSED_PIN", "token PIN").unwrap();
        assert_eq!(pin.expose(), b"1234");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "the message body\n", "the secret reader read ahead");
    }

    #[test]
    fn a_last_line_without_newline_is_read_whole() {
        let mut stdin = piped(b"1234");
        let pin = read_secret(&mut stdin, true, "UNUSED_PIN", "token PIN").unwrap();
        assert_eq!(pin.expose(), b"1234");
    }

    #[test]
    fn an_empty_or_missing_line_is_a_usage_error() {
        for input in [&b""[..], b"\n", b"\r\n"] {
            let mut stdin = piped(input);
            let Err(failure) = read_secret(&mut stdin, true, "UNUSED_PIN", "token PIN") else {
                panic!("accepted an empty PIN from {input:?}");
            };
            assert_eq!(failure.code, crate::exit::CONFIG);
        }
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused_and_one_at_the_limit_accepted() {
        let mut long = vec![b'x'; MAX_LINE];
        long.push(b'\n');
        let mut stdin = piped(&long);
        let secret = read_secret(&mut stdin, true, "UNUSED", "password").unwrap();
        assert_eq!(secret.len(), MAX_LINE);

        let mut stdin = piped(&[b'x'; MAX_LINE + 1]);
        let Err(failure) = read_secret(&mut stdin, true, "UNUSED", "password") else {
            panic!("accepted a secret longer than {MAX_LINE} bytes");
        };
        assert_eq!(failure.code, crate::exit::CONFIG);
    }
}
