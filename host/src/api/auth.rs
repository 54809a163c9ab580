//! Who may call what. Admin routes (changes) need the bearer token, and are
//! off when none is configured. Read routes need the token when one is
//! configured; without one they answer loopback callers only, and not a
//! request a proxy forwarded (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`:
//! behind a proxy on the same host every caller looks like loopback).
//! Tokens are compared in constant time (over their sha256, so neither
//! length nor content leaks).

use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorCode};

/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured admin token (its digest only).
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the admin token must be at least {MIN_TOKEN_LEN} characters with no whitespace")]
pub struct WeakToken;

impl AdminToken {
    /// A token from its text (surrounding whitespace, as a file's final
    /// newline, is trimmed).
    pub fn new(token: &str) -> Result<Self, WeakToken> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            return Err(WeakToken);
        }
        Ok(AdminToken(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `given` is the token, in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        same_bytes(&given, &self.0)
    }
}

/// Whether two byte strings are equal, in time independent of where they
/// differ (their lengths are not secret).
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a route: its address and the bearer token it sent.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The peer address (`None` when the server was not given it).
    pub peer: Option<SocketAddr>,
    bearer: Option<String>,
    /// A proxy's forwarding header was present.
    forwarded: bool,
    /// The client a proxy says it forwarded for (`X-Forwarded-For`'s first
    /// address), for the record only: never trusted for access.
    forwarded_for: Option<String>,
}

impl Caller {
    /// Who, for the record: `api@<peer>`, with the address a proxy says it
    /// forwarded for (`api@10.0.1.5 for 203.0.113.9`: behind a load
    /// balancer the peer is the balancer).
    pub fn who(&self) -> String {
        let by = match self.peer {
            Some(p) => format!("api@{}", p.ip()),
            None => "api".to_owned(),
        };
        match &self.forwarded_for {
            Some(f) => format!("{by} for {f}"),
            None => by,
        }
    }

    fn is_loopback(&self) -> bool {
        !self.forwarded && self.peer.is_some_and(|p| p.ip().is_loopback())
    }

    fn token_ok(&self, token: &AdminToken) -> Result<(), ApiError> {
        match &self.bearer {
            Some(b) if token.matches(b) => Ok(()),
            Some(_) => Err(ApiError::new(ErrorCode::Unauthorized, "wrong bearer token")),
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "missing bearer token (Authorization: Bearer <token>)",
            )),
        }
    }

    /// May change things: needs the configured token.
    pub fn admin(&self, token: Option<&AdminToken>) -> Result<(), ApiError> {
        match token {
            Some(t) => self.token_ok(t),
            None => Err(ApiError::new(
                ErrorCode::AdminOff,
                "the admin API is off: no admin token is configured (HEALER_ADMIN_TOKEN or --admin-token-file)",
            )),
        }
    }

    /// May read: with the token when one is configured, else from loopback.
    pub fn read(&self, token: Option<&AdminToken>) -> Result<(), ApiError> {
        match token {
            Some(t) => self.token_ok(t),
            None if self.is_loopback() => Ok(()),
            None => Err(ApiError::new(
                ErrorCode::LoopbackOnly,
                "without an admin token configured, this route answers direct loopback callers only",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<MockConnectInfo<SocketAddr>>()
                    .map(|m| m.0)
            });
        let bearer = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v.to_str().unwrap_or_default();
                match v.strip_prefix("Bearer ") {
                    Some(t) => Some(t.trim().to_owned()),
                    None => {
                        return Err(ApiError::new(
                            ErrorCode::Unauthorized,
                            "the Authorization header must be `Bearer <token>`",
                        ));
                    }
                }
            }
        };
        let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .any(|h| parts.headers.contains_key(*h));
        // Only an address's characters, bounded: it lands in the record.
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 45
                    && v.bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
            })
            .map(str::to_owned);
        Ok(Caller {
            peer,
            bearer,
            forwarded,
            forwarded_for,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_weak_ones_are_refused() {
        let t = AdminToken::new("correct-horse-battery\n").expect("strong");
        assert!(t.matches("correct-horse-battery"));
        assert!(!t.matches("correct-horse-batterY"));
        assert!(!t.matches(""));
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("has a space inside it").is_err());
    }

    async fn caller(headers: &[(&str, &str)]) -> Caller {
        let mut req = axum::http::Request::get("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (mut parts, ()) = req.body(()).expect("request").into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));
        Caller::from_request_parts(&mut parts, &())
            .await
            .expect("caller")
    }

    #[tokio::test]
    async fn forwarded_callers_are_not_loopback_and_are_named_for_the_record() {
        let direct = caller(&[]).await;
        assert!(direct.read(None).is_ok());
        assert_eq!(direct.who(), "api@127.0.0.1");
        let proxied = caller(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]).await;
        assert!(
            proxied.read(None).is_err(),
            "a proxy on the host is not loopback"
        );
        assert_eq!(proxied.who(), "api@127.0.0.1 for 203.0.113.9");
        let junk = caller(&[("x-forwarded-for", "<script>")]).await;
        assert_eq!(junk.who(), "api@127.0.0.1");
        let (mut parts, ()) = axum::http::Request::get("/")
            .header("authorization", "Basic abc")
            .body(())
            .expect("request")
            .into_parts();
        assert!(
            Caller::from_request_parts(&mut parts, &()).await.is_err(),
            "only Bearer"
        );
    }
}
