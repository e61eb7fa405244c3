//! `POST /auth/introspect` (RFC 7662): the services behind authd ask whether a token is live.
//! This module authenticates the calling client (HTTP Basic against
//! `[introspection.clients]`, compared in constant time over every client) and reads the
//! `token` parameter (form or JSON); the answer is the domain's ([`sessions::introspect`]).
//!
//! It must not tell why a token is inactive: every dead token is `{"active": false}`.

use authd_strategy_api::Params;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::body::Body;
use hyper::header;
use hyper::{Request, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::BoxError;
use super::error::{Failure, Reply, json_response};
use crate::sessions;
use crate::state::Generation;

/// The `(name, secret)` of an `Authorization: Basic` header.
fn basic<B>(req: &Request<B>) -> Option<(String, Vec<u8>)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let name = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    // The secret as it is (what `curl -u name:secret` sends): base64 secrets hold `+` and
    // `/`, which a form-decoding of RFC 6749 2.3.1 would change.
    Some((name, decoded[colon + 1..].to_vec()))
}

/// Whether the request carries a configured client's credentials. Every client is compared,
/// digests of equal length, so that the time does not tell which part was wrong.
fn authorized<B>(generation: &Generation, req: &Request<B>) -> bool {
    let (name, secret) = basic(req).unwrap_or_default();
    let given_name = Sha256::digest(name.as_bytes());
    let given_secret = Sha256::digest(&secret);
    let mut ok = subtle::Choice::from(0);
    for (client, client_secret) in &generation.introspection_clients {
        let same_name = Sha256::digest(client.as_bytes()).ct_eq(&given_name);
        let same_secret = Sha256::digest(client_secret).ct_eq(&given_secret);
        ok |= same_name & same_secret;
    }
    bool::from(ok)
}

fn token_of(params: &Params) -> Result<&str, Failure> {
    match params.get("token") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => Ok(t),
        _ => Err(Failure::Rejected(authd_strategy_api::Rejection::Invalid(
            authd_strategy_api::FieldErrors::one("token", "is required"),
        ))),
    }
}

pub(super) async fn introspect<B>(
    generation: &Generation,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if !authorized(generation, &req) {
        return Err(Failure::ClientUnauthorized);
    }
    let params = super::params::read_form_or_json(req, generation.server.max_body_bytes).await?;
    let token = token_of(&params)?;
    let answer = sessions::introspect(generation, token).await?;
    Ok(json_response(StatusCode::OK, &answer))
}
