//! Secrets the core holds besides the vault's keys: the access token.
//!
//! The token lives in a zeroizing string with a redacted `Debug`; it is stored only inside the
//! SQLCipher database and leaves this type only to become an `Authorization` header value
//! marked sensitive.

use reqwest::header::HeaderValue;
use zeroize::Zeroizing;

/// A Matrix access token (cloning copies it into another zeroizing buffer).
#[derive(Clone)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Wraps a token received from the server or read from the store.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token itself, for storing it in the encrypted database.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `Bearer <token>` as a header value (built in a zeroizing buffer).
    pub(crate) fn authorization_header(&self) -> Result<HeaderValue, ()> {
        let mut value = Zeroizing::new(String::with_capacity(7 + self.0.len()));
        value.push_str("Bearer ");
        value.push_str(&self.0);
        HeaderValue::from_str(&value).map_err(|_| ())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(_) = self;
        f.write_str("AccessToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let t = AccessToken::new("syt_secret_token".into());
        assert_eq!(format!("{t:?}"), "AccessToken(<redacted>)");
        assert_eq!(t.authorization_header().unwrap(), "Bearer syt_secret_token");
    }
}
