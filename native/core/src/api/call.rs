//! One Matrix API call: send, classify the answer, decode it, honour 429.
//!
//! Error bodies are decoded into [`ApiError`] variants; success bodies into the endpoint's
//! response type, and a body of the wrong shape is [`ApiError::MalformedResponse`] carrying
//! serde's description (which names a field or a position, never the body's content).

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::net::{Request, Response, Transport};

/// How many times a rate-limited request is retried before the error reaches the caller.
const MAX_RATE_LIMIT_RETRIES: u32 = 3;
/// The longest server-requested wait we sleep through; longer ones are returned at once.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct ErrorBody {
    errcode: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    soft_logout: bool,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

/// Classifies a non-2xx response.
fn error_of(response: &Response) -> ApiError {
    let Ok(body) = serde_json::from_slice::<ErrorBody>(&response.body) else {
        return ApiError::Http {
            status: response.status,
        };
    };
    match body.errcode.as_str() {
        "M_FORBIDDEN" => ApiError::Forbidden {
            message: body.error,
        },
        "M_LIMIT_EXCEEDED" => ApiError::LimitExceeded {
            retry_after_ms: body
                .retry_after_ms
                .or(response.retry_after_secs.map(|s| s.saturating_mul(1000))),
        },
        "M_UNKNOWN_TOKEN" => ApiError::UnknownToken {
            soft_logout: body.soft_logout,
        },
        "ORG_MATRIX_EXPIRED_ACCOUNT" => ApiError::ExpiredAccount,
        _ => ApiError::Matrix {
            status: response.status,
            errcode: body.errcode,
            message: body.error,
        },
    }
}

/// A small random jitter (0–250 ms) added to back-off waits, so that many clients rate-limited
/// together do not come back together.
pub(crate) fn jitter() -> Duration {
    let mut byte = [0u8; 1];
    let rng = ring::rand::SystemRandom::new();
    let _ = ring::rand::SecureRandom::fill(&rng, &mut byte);
    Duration::from_millis(u64::from(byte[0]))
}

/// Describes a decoding failure without quoting the body: serde_json's messages can include
/// the offending value, which may be a token.
pub(crate) fn malformed(endpoint: &'static str, e: &serde_json::Error) -> ApiError {
    let message = e.to_string();
    // Quoted values are where serde_json puts the data it saw: cut there.
    let safe = match message.find('"') {
        Some(i) => format!("{}…", &message[..i]),
        None => message,
    };
    ApiError::MalformedResponse {
        endpoint,
        detail: safe,
    }
}

/// Decodes an answer already received (a request that cannot be repeated, such as a streamed
/// upload: no rate-limit retry): a 2xx body as `T`, anything else as its [`ApiError`].
pub(crate) fn decode<T: DeserializeOwned>(
    endpoint: &'static str,
    response: &Response,
) -> Result<T, ApiError> {
    if (200..300).contains(&response.status) {
        return serde_json::from_slice(&response.body).map_err(|e| malformed(endpoint, &e));
    }
    let error = error_of(response);
    tracing::debug!(endpoint, status = response.status, %error, "API call failed");
    Err(error)
}

/// Sends `make()` (rebuilt for each retry) and decodes a successful answer as `T`.
pub(crate) async fn call<'a, T, F>(
    transport: &Transport,
    endpoint: &'static str,
    mut make: F,
) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    F: FnMut() -> Request<'a>,
{
    let mut attempt = 0;
    loop {
        let response = transport.send(make()).await?;
        if (200..300).contains(&response.status) {
            return serde_json::from_slice(&response.body).map_err(|e| malformed(endpoint, &e));
        }
        let error = error_of(&response);
        if let ApiError::LimitExceeded { retry_after_ms } = &error {
            let wait = Duration::from_millis(retry_after_ms.unwrap_or(1000));
            if attempt < MAX_RATE_LIMIT_RETRIES && wait <= MAX_RATE_LIMIT_WAIT {
                attempt += 1;
                tracing::info!(endpoint, ?wait, attempt, "rate limited; backing off");
                tokio::time::sleep(wait + jitter()).await;
                continue;
            }
        }
        tracing::debug!(endpoint, status = response.status, %error, "API call failed");
        return Err(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoding_error_never_quotes_the_body() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Login {
            access_token: u64,
        }
        let e = serde_json::from_slice::<Login>(br#"{"access_token": "syt_SECRET_TOKEN"}"#)
            .unwrap_err();
        let ApiError::MalformedResponse { detail, .. } = malformed("/login", &e) else {
            panic!("wrong variant")
        };
        assert!(!detail.contains("SECRET"), "{detail}");
        assert!(detail.starts_with("invalid type"), "{detail}");
    }

    #[test]
    fn error_bodies_map_to_typed_errors() {
        let response = |status, body: &str| Response {
            status,
            retry_after_secs: Some(3),
            body: zeroize::Zeroizing::new(body.as_bytes().to_vec()),
        };
        assert!(matches!(
            error_of(&response(
                401,
                r#"{"errcode":"M_UNKNOWN_TOKEN","error":"x","soft_logout":true}"#
            )),
            ApiError::UnknownToken { soft_logout: true }
        ));
        assert!(matches!(
            error_of(&response(429, r#"{"errcode":"M_LIMIT_EXCEEDED"}"#)),
            ApiError::LimitExceeded {
                retry_after_ms: Some(3000)
            }
        ));
        assert!(matches!(
            error_of(&response(403, r#"{"errcode":"M_FORBIDDEN","error":"no"}"#)),
            ApiError::Forbidden { .. }
        ));
        assert!(matches!(
            error_of(&response(400, r#"{"errcode":"M_UNKNOWN","error":"?"}"#)),
            ApiError::Matrix { status: 400, .. }
        ));
        assert!(matches!(
            error_of(&response(502, "<html>")),
            ApiError::Http { status: 502 }
        ));
    }
}
