//! The bearer token check: with a token configured, every request must carry
//! `Authorization: Bearer <token>`, else it gets 401 and nothing else. Tokens are compared by
//! their SHA-256 digests, so that the comparison's time tells nothing about the token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// Whether the `Authorization` header value carries `token`.
pub fn authorized(header_value: Option<&[u8]>, token: &str) -> bool {
    let Some(v) = header_value else {
        return false;
    };
    let Some(given) = v.strip_prefix(b"Bearer ") else {
        return false;
    };
    let d = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    d(given.trim_ascii()).as_ref() == d(token.as_bytes()).as_ref()
}

pub(super) async fn require_token(
    State(s): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(t) = &s.token {
        let h = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !authorized(h, t.expose()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required: Authorization: Bearer <token>\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = "a-long-random-token";
        assert!(authorized(Some(b"Bearer a-long-random-token"), t));
        assert!(!authorized(None, t));
        assert!(!authorized(Some(b"a-long-random-token"), t));
        assert!(!authorized(Some(b"Basic a-long-random-token"), t));
        assert!(!authorized(Some(b"Bearer a-long-random-toke"), t));
        assert!(!authorized(Some(b"Bearer "), t));
    }
}
