//! Finding a colleague (issue 19 item 2): the homeserver's user directory by name or e-mail
//! fragment, and an e-mail address resolved to a user through the infrastructure's identity
//! server with the hashed lookup of the Identity Service API v2 — the identity server learns a
//! peppered SHA-256 of the address, never the address — over the same pinned transport as the
//! homeserver. An invitation by e-mail is an invitation of the user the address resolves to:
//! an address the identity server does not know is a typed error, and no third-party invite
//! ever leaves the infrastructure.
//!
//! The identity server's access token comes from an OpenID token of the homeserver
//! (`/user/{userId}/openid/request_token` → `/_matrix/identity/v2/account/register`); it is
//! held in a zeroizing [`AccessToken`] for one lookup and revoked afterwards
//! (`/account/logout`), so no identity-server credential is ever stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Client;
use crate::api::ApiError;
use crate::api::call;
use crate::api::types::Empty;
use crate::error::Error;
use crate::net::{Request, Transport};
use crate::secret::AccessToken;

/// Most results asked of the directory.
pub const MAX_DIRECTORY_RESULTS: u32 = 50;

/// One user the directory found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryUser {
    /// The user id.
    pub user_id: String,
    /// The display name as the server has it (`Jean Martin [Ministère X]`), if any.
    pub display_name: Option<String>,
    /// The name and organisation, neutralised and checked ([`crate::display_name`]).
    pub name: crate::display_name::ParsedName,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<SearchResult>,
    #[serde(default)]
    limited: bool,
}

#[derive(Deserialize)]
struct SearchResult {
    user_id: String,
    #[serde(default)]
    display_name: Option<Value>,
}

/// The directory's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryResults {
    /// The users found (at most the limit asked).
    pub users: Vec<DirectoryUser>,
    /// Whether the server had more.
    pub limited: bool,
}

#[derive(Deserialize)]
struct HashDetails {
    algorithms: Vec<String>,
    lookup_pepper: String,
}

#[derive(Deserialize)]
struct LookupResponse {
    #[serde(default)]
    mappings: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RegisterResponse {
    token: String,
}

/// The hashed form of an e-mail address for the v2 lookup: unpadded URL-safe base64 of
/// SHA-256(`"{address} email {pepper}"`).
pub(crate) fn lookup_hash(address: &str, pepper: &str) -> String {
    let input = format!("{address} email {pepper}");
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        input.as_bytes(),
    ))
}

fn identity_error(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Identity {
        code,
        detail: detail.into(),
    }
}

impl Client {
    /// Searches the homeserver's user directory (`POST /user_directory/search`) by a name or
    /// e-mail fragment; at most `limit` users (1 to [`MAX_DIRECTORY_RESULTS`]). Each name is
    /// parsed into name and organisation and checked (lookalikes flagged).
    pub async fn search_directory(
        &self,
        term: &str,
        limit: u32,
    ) -> Result<DirectoryResults, Error> {
        let term = term.trim();
        if term.is_empty() || term.chars().count() > 256 {
            return Err(Error::InvalidArgument {
                what: "a search term of 1 to 256 characters".into(),
            });
        }
        if !(1..=MAX_DIRECTORY_RESULTS).contains(&limit) {
            return Err(Error::InvalidArgument {
                what: format!("a limit from 1 to {MAX_DIRECTORY_RESULTS}"),
            });
        }
        let body = super::e2ee::json_body(&json!({ "search_term": term, "limit": limit }));
        let answer: Result<SearchResponse, Error> = self
            .authed(
                Method::POST,
                "/user_directory/search",
                &["_matrix", "client", "v3", "user_directory", "search"],
                Some(body),
            )
            .await;
        let answer = answer.map_err(|e| self.judge_failure(e))?;
        let known = self.config.known_organisations();
        let users = answer
            .results
            .into_iter()
            // A hostile server's entries that are not user ids are dropped, not shown.
            .filter(|r| super::rooms::is_user_id(&r.user_id))
            .take(limit as usize)
            .map(|r| {
                // A display name that is not a string is no display name.
                let display_name = match r.display_name {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                };
                let name = crate::display_name::parse(display_name.as_deref(), &r.user_id, known);
                DirectoryUser {
                    user_id: r.user_id,
                    display_name,
                    name,
                }
            })
            .collect();
        Ok(DirectoryResults {
            users,
            limited: answer.limited,
        })
    }

    /// The user an e-mail address belongs to, by the identity server's hashed lookup:
    /// `None` if it knows no such address. Fails with `identity_server_not_configured` without
    /// `identity_server_url`, and with `identity_lookup_refused` when the server offers no
    /// SHA-256 lookup or answers with a user outside `allowed_user_domain`.
    pub async fn lookup_email(&self, address: &str) -> Result<Option<String>, Error> {
        let address = super::uia::canonical_email(address)?;
        let result = self.lookup_email_inner(&address).await;
        result.map_err(|e| self.judge_failure(e))
    }

    async fn lookup_email_inner(&self, address: &str) -> Result<Option<String>, Error> {
        let Some(base) = self.config.identity_server_url() else {
            return Err(identity_error(
                "identity_server_not_configured",
                "no identity_server_url in the configuration",
            ));
        };
        let is = self.transport.with_base(base.clone());
        let token = self.identity_token(&is).await?;
        let result = lookup_with(&is, &token, address).await;
        // The identity server's token is for this lookup only.
        let revoked: Result<Empty, ApiError> = call(&is, "/account/logout", || {
            let mut r = Request::new(
                Method::POST,
                vec!["_matrix", "identity", "v2", "account", "logout"],
            );
            r.access_token = Some(&token);
            r.body = Some(Zeroizing::new(b"{}".to_vec()));
            r
        })
        .await;
        if let Err(e) = revoked {
            tracing::debug!(code = e.code(), "identity server token not revoked");
        }
        let found = result?;
        if let Some(user_id) = &found {
            if !super::rooms::is_user_id(user_id) {
                return Err(identity_error(
                    "identity_lookup_refused",
                    "the identity server answered with something that is not a user id",
                ));
            }
            self.check_user_allowed(user_id).map_err(|_| {
                identity_error(
                    "identity_lookup_refused",
                    format!(
                        "the identity server answered with {user_id}, outside the allowed domain"
                    ),
                )
            })?;
        }
        Ok(found)
    }

    /// An access token of the identity server, from an OpenID token of the homeserver.
    async fn identity_token(&self, is: &Transport) -> Result<AccessToken, Error> {
        let (user_id, _) = self.own_ids()?;
        let openid: Value = self
            .authed(
                Method::POST,
                "/openid/request_token",
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "user",
                    &user_id,
                    "openid",
                    "request_token",
                ],
                Some(Zeroizing::new(b"{}".to_vec())),
            )
            .await?;
        let body =
            Zeroizing::new(
                serde_json::to_vec(&openid).map_err(|e| Error::InvalidArgument {
                    what: format!("OpenID token: {e}"),
                })?,
            );
        let registered: RegisterResponse = call(is, "/account/register", || {
            let mut r = Request::new(
                Method::POST,
                vec!["_matrix", "identity", "v2", "account", "register"],
            );
            r.body = Some(body.clone());
            r
        })
        .await?;
        Ok(AccessToken::new(registered.token))
    }

    /// Invites the user an e-mail address belongs to (resolved by [`Client::lookup_email`]);
    /// an unknown address is `unknown_address` and nothing is sent: no third-party invitation
    /// ever leaves the infrastructure. Returns the user invited.
    pub async fn invite_by_email(&mut self, room_id: &str, address: &str) -> Result<String, Error> {
        let Some(user_id) = self.lookup_email(address).await? else {
            return Err(identity_error(
                "unknown_address",
                "no user of the infrastructure has this e-mail address",
            ));
        };
        self.invite(room_id, &user_id).await?;
        Ok(user_id)
    }
}

async fn lookup_with(
    is: &Transport,
    token: &AccessToken,
    address: &str,
) -> Result<Option<String>, Error> {
    let details: HashDetails = call(is, "/hash_details", || {
        let mut r = Request::new(
            Method::GET,
            vec!["_matrix", "identity", "v2", "hash_details"],
        );
        r.access_token = Some(token);
        r
    })
    .await?;
    if !details.algorithms.iter().any(|a| a == "sha256") || details.lookup_pepper.is_empty() {
        // `none` would send the address in clear: never.
        return Err(identity_error(
            "identity_lookup_refused",
            "the identity server offers no peppered SHA-256 lookup",
        ));
    }
    let hash = lookup_hash(address, &details.lookup_pepper);
    let body = super::e2ee::json_body(&json!({
        "addresses": [hash],
        "algorithm": "sha256",
        "pepper": details.lookup_pepper,
    }));
    let answer: LookupResponse = call(is, "/lookup", || {
        let mut r = Request::new(Method::POST, vec!["_matrix", "identity", "v2", "lookup"]);
        r.access_token = Some(token);
        r.body = Some(body.clone());
        r
    })
    .await?;
    // Only the mapping of the hash we asked counts.
    Ok(answer.mappings.get(&hash).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_hash_is_the_specifications() {
        // Identity Service API v2 § "Client behaviour", example: "alice@example.com email
        // matrixrocks" → 4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc.
        assert_eq!(
            lookup_hash("alice@example.com", "matrixrocks"),
            "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"
        );
        assert_ne!(
            lookup_hash("alice@example.com", "matrixrocks"),
            lookup_hash("alice@example.com", "matrixrockz")
        );
    }
}
