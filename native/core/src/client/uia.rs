//! User-interactive authentication (spec § "User-Interactive Authentication API"), password
//! stage only: a request the server answers with 401 and a list of flows is sent again with
//! `auth: {type: m.login.password, identifier, password, session}`. The password comes from the
//! caller as secret bytes and is written only into a pre-sized zeroizing body.

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tchap_secure_hsm::SecretBytes;
use zeroize::Zeroizing;

use super::Client;
use crate::api::call::decode;
use crate::error::Error;
use crate::net::Request;

const PASSWORD_STAGE: &str = "m.login.password";

/// A 401 answer that starts (or continues) user-interactive authentication.
#[derive(Deserialize)]
struct UiaAnswer {
    flows: Vec<Flow>,
    #[serde(default)]
    session: Option<String>,
}

#[derive(Deserialize)]
struct Flow {
    stages: Vec<String>,
}

/// Who logs in or authenticates (`identifier` of `m.login.password`, both at login and in
/// user-interactive authentication).
#[derive(serde::Serialize)]
#[serde(tag = "type")]
pub(crate) enum Identifier<'a> {
    /// A Matrix user id or localpart.
    #[serde(rename = "m.id.user")]
    User {
        /// The user id or localpart.
        user: &'a str,
    },
    /// A third-party identifier bound to the account on the homeserver (Tchap: the work
    /// e-mail address).
    #[serde(rename = "m.id.thirdparty")]
    ThirdParty {
        /// `email`.
        medium: &'a str,
        /// The address, canonicalised (see [`canonical_email`]).
        address: &'a str,
    },
}

/// An e-mail address as the homeserver and the identity server store it (trimmed, lower
/// case), or a typed refusal of what cannot be one: one `@` with something on each side, no
/// whitespace or control character, at most 254 bytes (RFC 5321's path limit).
pub(crate) fn canonical_email(address: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::InvalidArgument {
        what: format!("e-mail address: {why}"),
    };
    let address = address.trim();
    if address.is_empty() || address.len() > 254 {
        return Err(invalid("empty or longer than 254 bytes"));
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains a space or a control character"));
    }
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(address.to_lowercase())
        }
        _ => Err(invalid("not of the form name@domain")),
    }
}

/// `body` with `auth` added, written into a zeroizing buffer sized once (no reallocation, so
/// no stray copy of the password).
fn with_password_auth(
    body: &Value,
    user_id: &str,
    password: &str,
    session: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    #[derive(serde::Serialize)]
    struct Auth<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        identifier: Identifier<'a>,
        password: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<&'a str>,
    }
    let invalid = |what: &str| Error::InvalidArgument {
        what: format!("authenticated body: {what}"),
    };
    let Value::Object(fields) = body else {
        return Err(invalid("not an object"));
    };
    let plain = serde_json::to_vec(body).map_err(|e| invalid(&e.to_string()))?;
    let auth = Auth {
        kind: PASSWORD_STAGE,
        identifier: Identifier::User { user: user_id },
        password,
        session,
    };
    // JSON escaping at most sextuples a character.
    let capacity = plain.len()
        + 128
        + 6 * (user_id.len() + password.len())
        + session.map_or(0, |s| 6 * s.len());
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    // `{…fields…,"auth":{…}}`: the plain body without its closing brace, then `auth`.
    out.extend_from_slice(
        plain
            .get(..plain.len().saturating_sub(1))
            .unwrap_or_default(),
    );
    if !fields.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(b"\"auth\":");
    serde_json::to_writer(&mut *out, &auth).map_err(|e| invalid(&e.to_string()))?;
    out.push(b'}');
    Ok(out)
}

impl Client {
    /// POSTs `body` to `path`; if the server asks for user-interactive authentication, sends
    /// it again with the password stage (the only one supported). Without a password →
    /// [`Error::PasswordRequired`]; a server offering no password flow →
    /// [`Error::AuthUnsupported`]; a wrong password → the server's `M_FORBIDDEN`.
    pub(crate) async fn post_with_uia<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &[&str],
        body: &Value,
        password: Option<&SecretBytes>,
    ) -> Result<T, Error> {
        let token = self.token()?;
        let (user_id, _) = self.own_ids()?;
        let send = |bytes: Zeroizing<Vec<u8>>| {
            let mut r = Request::new(Method::POST, path.to_vec());
            r.access_token = Some(token);
            r.body = Some(bytes);
            self.transport.send(r)
        };
        let plain =
            Zeroizing::new(
                serde_json::to_vec(body).map_err(|e| Error::InvalidArgument {
                    what: format!("request body: {e}"),
                })?,
            );
        let first = send(plain).await?;
        if first.status != 401 {
            return Ok(decode(endpoint, &first)?);
        }
        let Ok(uia) = serde_json::from_slice::<UiaAnswer>(&first.body) else {
            // A 401 without flows: an authentication error (a revoked token), typed as such.
            return Ok(decode(endpoint, &first)?);
        };
        if !uia
            .flows
            .iter()
            .any(|f| f.stages.len() == 1 && f.stages[0] == PASSWORD_STAGE)
        {
            let mut stages: Vec<String> = uia.flows.into_iter().flat_map(|f| f.stages).collect();
            stages.sort();
            stages.dedup();
            return Err(Error::AuthUnsupported { stages });
        }
        let Some(password) = password else {
            return Err(Error::PasswordRequired);
        };
        let password =
            std::str::from_utf8(password.expose()).map_err(|_| Error::InvalidArgument {
                what: "the password is not UTF-8".into(),
            })?;
        let authed = with_password_auth(body, &user_id, password, uia.session.as_deref())?;
        let second = send(authed).await?;
        tracing::debug!(
            endpoint,
            status = second.status,
            "user-interactive authentication"
        );
        Ok(decode(endpoint, &second)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_password_is_added_without_reallocation_and_the_body_stays_valid_json() {
        let body = json!({ "master_key": { "user_id": "@a:s", "usage": ["master"] } });
        let password = "p\u{1}\"\\é".repeat(40);
        let out = with_password_auth(&body, "@a:s", &password, Some("sess\"ion")).unwrap();
        let capacity = out.capacity();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["master_key"], body["master_key"]);
        assert_eq!(parsed["auth"]["type"], "m.login.password");
        assert_eq!(
            parsed["auth"]["identifier"],
            json!({"type": "m.id.user", "user": "@a:s"})
        );
        assert_eq!(parsed["auth"]["password"], password.as_str());
        assert_eq!(parsed["auth"]["session"], "sess\"ion");
        let expected = body.to_string().len() + 128 + 6 * (4 + password.len()) + 6 * 8;
        assert_eq!(capacity, expected, "sized once, never grown");
        // An empty body and no session.
        let out = with_password_auth(&json!({}), "@a:s", "pw", None).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 1);
        assert!(parsed["auth"].get("session").is_none());
        assert!(with_password_auth(&json!([]), "@a:s", "pw", None).is_err());
    }
}
