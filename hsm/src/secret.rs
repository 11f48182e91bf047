//! Secret types: zeroized on drop, never printed.
//!
//! - Fixed-size keys are [`LockedBytes<32>`]: the bytes are written once, in place, on a page of
//!   their own that is left out of core dumps, locked in RAM when possible and wiped on drop;
//!   moving the value moves a pointer, so no stray copies are left on the stack (STYLE §4).
//! - `Debug` destructures every field (`let Self { key: _ } = self;`): adding a field forces a
//!   decision about whether it may be printed. The output is snapshot-tested.
//! - None of these types is `Clone`: a second copy of a key is a decision the caller makes
//!   explicitly, through `expose()`.

use std::fmt;

use tchap_secure_memory::LockedBytes;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Variable-length secret bytes (a PIN, an unwrapped root secret), zeroized on drop.
pub struct SecretBytes {
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretBytes {
    /// Takes ownership of `bytes` (no copy is made).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The secret bytes. Keep the borrow short and do not copy them into unzeroized memory.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl From<&[u8]> for SecretBytes {
    /// Copies `bytes`; the caller remains responsible for its own copy.
    fn from(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
}

/// The inner `Zeroizing` wipes the whole allocation (length and spare capacity) on drop.
impl ZeroizeOnDrop for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { bytes } = self;
        write!(f, "SecretBytes(<redacted {} bytes>)", bytes.len())
    }
}

/// Defines a 32-byte derived key type. One macro so the three types cannot drift apart.
macro_rules! key32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name {
            key: LockedBytes<32>,
        }

        impl $name {
            /// Wraps key bytes already written on their locked page (HKDF output fills it in
            /// place).
            pub(crate) fn from_locked(key: LockedBytes<32>) -> Self {
                Self { key }
            }

            /// The raw key bytes. Keep the borrow short.
            pub fn expose(&self) -> &[u8; 32] {
                self.key.expose()
            }
        }

        /// `LockedBytes` wipes its page on drop.
        impl ZeroizeOnDrop for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Self { key: _ } = self;
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

key32!(
    /// SQLCipher raw database key (256 bits), derived from the vault root secret.
    DatabaseKey
);
key32!(
    /// Key protecting vodozemac pickles inside the (already encrypted) database.
    PickleKey
);
key32!(
    /// Key of the local attachment cache.
    MediaKey
);

impl DatabaseKey {
    /// The value for SQLCipher's `PRAGMA key`, exactly `x'<64 lowercase hex digits>'` (raw key,
    /// no passphrase KDF). Built in place in a zeroized string: no intermediate copies.
    pub fn sqlcipher_pragma_value(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value = Zeroizing::new(String::with_capacity(2 + 64 + 1));
        value.push_str("x'");
        for byte in self.key.expose().iter() {
            value.push(char::from(HEX[usize::from(byte >> 4)]));
            value.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        value.push('\'');
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(byte: u8) -> LockedBytes<32> {
        let mut key = LockedBytes::zeroed();
        key.expose_mut().fill(byte);
        key
    }

    #[test]
    fn debug_output_is_redacted() {
        // Snapshot of every secret type's Debug: a changed format must be a conscious decision.
        let secret = SecretBytes::new(vec![0xAB; 7]);
        assert_eq!(format!("{secret:?}"), "SecretBytes(<redacted 7 bytes>)");
        assert_eq!(
            format!("{:?}", DatabaseKey::from_locked(boxed(0xAB))),
            "DatabaseKey(<redacted>)"
        );
        assert_eq!(
            format!("{:?}", PickleKey::from_locked(boxed(0xAB))),
            "PickleKey(<redacted>)"
        );
        assert_eq!(
            format!("{:#?}", MediaKey::from_locked(boxed(0xAB))),
            "MediaKey(<redacted>)"
        );
    }

    #[test]
    fn secret_bytes_accessors() {
        let secret = SecretBytes::from(&b"1234"[..]);
        assert_eq!(secret.expose(), b"1234");
        assert_eq!(secret.len(), 4);
        assert!(!secret.is_empty());
        assert!(SecretBytes::new(Vec::new()).is_empty());
    }

    #[test]
    fn sqlcipher_pragma_value_format() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i * 8 + 1).unwrap();
        }
        let key = DatabaseKey::from_locked({
            let mut key = LockedBytes::zeroed();
            key.expose_mut().copy_from_slice(&bytes);
            key
        });
        let value = key.sqlcipher_pragma_value();
        let expected: String = std::iter::once("x'".to_owned())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .chain(std::iter::once("'".to_owned()))
            .collect();
        assert_eq!(value.as_str(), expected);
        assert_eq!(value.len(), 67);
        assert!(
            value[2..66]
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
        );
    }
}
