//! Reading secrets (token PIN, password) from the environment or standard input, never from
//! the command line, into zeroizing buffers.

use std::io::Read as _;

use tchap_secure_hsm::SecretBytes;
use zeroize::Zeroizing;

use crate::exit::Failure;

/// Standard input, read line by line without buffering more than needed: the PIN comes first,
/// then the password.
pub(crate) struct Stdin(std::io::Stdin);

impl Stdin {
    pub(crate) fn new() -> Self {
        Self(std::io::stdin())
    }

    /// One line without its terminator, read byte by byte into a pre-sized zeroizing buffer.
    fn read_line(&mut self) -> Result<SecretBytes, Failure> {
        const MAX: usize = 1024;
        let mut line = Zeroizing::new(Vec::with_capacity(MAX));
        let mut byte = [0u8; 1];
        loop {
            match self.0.lock().read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if line.len() == MAX => {
                    return Err(Failure::usage("secret on standard input is too long"));
                }
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(Failure::other(format!("reading standard input: {e}"))),
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        zeroize::Zeroize::zeroize(&mut byte);
        Ok(SecretBytes::from(&line[..]))
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
