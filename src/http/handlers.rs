//! The answers of the public routes that the daemon gives itself (`/healthz`, `/me`,
//! `sign_out`, `sign_out_all`) and the rendering of strategy verdicts. The rules are the
//! domain's ([`crate::sessions`]); this module extracts and renders.

use std::net::IpAddr;
use std::sync::Arc;

use authd_strategy_api::{Event, Rejection, Session, Verdict, event_names};
use hyper::body::Body;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::BoxError;
use super::error::{Failure, Reply, json_bytes, json_response, no_content};
use super::params::read_params;
use crate::accounts;
use crate::sessions::{self, SignedIn};
use crate::state::{Generation, Shared};

/// The bearer credential of a request (`Authorization: Bearer <value>`).
pub(super) fn bearer<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

/// The signed-in caller of `subject`, or `401 invalid_token`.
pub(super) async fn require_session<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Session, Failure> {
    let token = bearer(req).ok_or(Failure::Rejected(Rejection::InvalidToken))?;
    sessions::authenticate(generation, subject, token)
        .await?
        .ok_or(Failure::Rejected(Rejection::InvalidToken))
}

/// The signed-in caller of `subject` by the bearer token, or else by the pages' session
/// cookie: always for reads (`GET /me`); for a state-changing JSON request (`sign_out`) only
/// with an `X-Requested-With` header, which a cross-site form cannot send and a cross-origin
/// script cannot send without a CORS preflight that authd does not grant for it. `401
/// invalid_token` otherwise.
pub(super) async fn require_session_or_cookie<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Session, Failure> {
    if bearer(req).is_some() {
        return require_session(generation, subject, req).await;
    }
    let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
    let marked = req.headers().contains_key("x-requested-with");
    let token = generation
        .pages
        .as_ref()
        .filter(|_| is_read || marked)
        .and_then(|p| super::pages::cookies::session_cookie(&p.config, req.headers()))
        .ok_or(Failure::Rejected(Rejection::InvalidToken))?;
    sessions::authenticate(generation, subject, &token)
        .await?
        .ok_or(Failure::Rejected(Rejection::InvalidToken))
}

/// Public health: what a load balancer or an operator diffing configs needs, nothing that
/// tells about accounts or settings. `503` while the store cannot serve.
pub(super) async fn health(shared: &Shared, generation: &Generation) -> Reply {
    let store_ok = tokio::time::timeout(std::time::Duration::from_secs(2), shared.store.health())
        .await
        .is_ok_and(|r| r.is_ok());
    let last_error = shared.with_status(|s| {
        s.last_reload_error
            .as_ref()
            .map(|e| json!({ "at": e.at, "file_hash": e.file_hash, "problems": e.problems.len() }))
    });
    let status = if store_ok { "ok" } else { "unavailable" };
    json_response(
        if store_ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &json!({
            "status": status,
            "store": if store_ok { "ok" } else { "unavailable" },
            "config": {
                "generation": generation.number,
                "file_hash": generation.file_hash,
                "loaded_at": generation.loaded_at,
            },
            "last_reload_error": last_error,
        }),
    )
}

/// The public keys that verify authd's tokens (RFC 7517), cacheable for less than
/// `tokens.publish_ahead`, readable from any origin (they are public).
pub(super) fn jwks(generation: &Generation) -> Reply {
    let (body, cache_control) = generation.tokens.jwks();
    let mut reply = super::error::json_bytes(StatusCode::OK, body);
    let headers = reply.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    reply
}

/// The OpenAPI document of the generation in force, serialized when it was built.
pub(super) fn openapi(generation: &Generation) -> Reply {
    let mut response = hyper::Response::new(http_body_util::Full::new(generation.openapi.clone()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) async fn me<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let session = require_session_or_cookie(generation, subject, req).await?;
    #[derive(serde::Serialize)]
    struct Me<'a> {
        user: sessions::View<'a>,
    }
    let me = Me {
        user: sessions::View::new(generation, subject, &session.user),
    };
    let mut body = Vec::with_capacity(256);
    serde_json::to_writer(&mut body, &me)
        .map_err(|e| Failure::Internal(format!("the user's view: {e}")))?;
    Ok(json_bytes(StatusCode::OK, body))
}

pub(super) async fn sign_out<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let by_cookie = bearer(req).is_none();
    let session = require_session_or_cookie(generation, subject, req).await?;
    sessions::sign_out(generation, &session).await??;
    let mut reply = no_content();
    if by_cookie && let Some(pages) = &generation.pages {
        // The cookie is dead: the browser may as well forget it.
        super::pages::cookies::clear_session_cookie(&pages.config, &mut reply);
    }
    Ok(reply)
}

pub(super) async fn sign_out_all<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let session = require_session(generation, subject, req).await?;
    sessions::sign_out_everywhere(generation, subject, &session.user).await?;
    Ok(no_content())
}

pub(super) async fn update_me<B>(
    generation: &Generation,
    subject: &str,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let session = require_session(generation, subject, &req).await?;
    let params = read_params(req, subject, generation.server.max_body_bytes).await?;
    let user = accounts::update(generation, subject, &session, &params).await??;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user": sessions::view(generation, subject, &user) }),
    ))
}

pub(super) async fn delete_me<B>(
    generation: &Generation,
    subject: &str,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let session = require_session(generation, subject, &req).await?;
    let params = read_params(req, subject, generation.server.max_body_bytes).await?;
    accounts::delete(generation, subject, &session, &params).await??;
    Ok(no_content())
}

/// `GET|POST /auth/<subject>/confirm`: with `require_interaction`, a GET changes nothing and
/// says a POST is needed (whatever the token: it tells nothing about it).
pub(super) async fn confirm<B>(
    generation: &Generation,
    subject: &str,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let interaction = generation
        .registry
        .confirmation(subject)
        .is_some_and(|c| c.config.require_interaction);
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let params = read_params(req, subject, generation.server.max_body_bytes).await?;
    if is_get && interaction {
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "status": "confirmation_required",
                "message": format!("POST the token as `confirm` to /auth/{subject}/confirm to confirm"),
            }),
        ));
    }
    let token = match params.get("confirm").or_else(|| params.get("token")) {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => {
            return Err(Failure::Rejected(Rejection::Invalid(
                authd_strategy_api::FieldErrors::one("confirm", "is required"),
            )));
        }
    };
    let user = accounts::confirm(generation, subject, &token).await??;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user": sessions::view(generation, subject, &user) }),
    ))
}

pub(super) async fn resend<B>(
    generation: &Arc<Generation>,
    subject: &str,
    client_ip: IpAddr,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let params = read_params(req, subject, generation.server.max_body_bytes).await?;
    accounts::resend(generation, subject, &params, client_ip).await??;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "status": "accepted" }),
    ))
}

/// A first factor let a user in (not a registration): counted, and `user.signed_in` when a
/// token was granted.
fn count_sign_in(generation: &Generation, subject: &str, strategy: &str, signed_in: &SignedIn) {
    use crate::metrics::SignInOutcome;
    let outcome = match signed_in {
        SignedIn::Continue { .. } => SignInOutcome::Continue,
        SignedIn::Token { token: None, .. } => SignInOutcome::Unconfirmed,
        SignedIn::Token {
            user,
            token: Some(_),
            ..
        } => {
            generation.services.events.emit(Event::Account {
                name: event_names::USER_SIGNED_IN,
                subject,
                strategy: Some(strategy),
                user: Some(user),
            });
            SignInOutcome::Ok
        }
    };
    if let Some(metrics) = &generation.metrics {
        metrics.sign_in(subject, strategy, outcome);
    }
}

/// A strategy's verdict after the daemon's rules: a sign-in settled by [`sessions::sign_in`]
/// (and a new user's confirmation sent), or any other verdict as it was.
pub(super) enum Settled {
    SignedIn(SignedIn),
    Other(Verdict),
}

/// Applies the session rules to an `Authenticated` verdict (and sends the confirmation of a
/// new user); the JSON API ([`verdict`]) and the pages render what this returns.
pub(super) async fn settle(
    generation: &Generation,
    subject: &str,
    strategy: &str,
    verdict: Verdict,
    via: sessions::Via,
) -> Result<Settled, Failure> {
    match verdict {
        Verdict::Authenticated {
            user,
            created,
            grant,
        } => {
            if created {
                accounts::after_create(generation, subject, &user).await?;
            }
            let signed_in =
                sessions::sign_in(generation, subject, strategy, (user, created, grant), via)?;
            if via == sessions::Via::FirstFactor && !created {
                count_sign_in(generation, subject, strategy, &signed_in);
            }
            Ok(Settled::SignedIn(signed_in))
        }
        other => Ok(Settled::Other(other)),
    }
}

/// Renders a strategy's verdict, applying the session rules to sign-ins (and sending the
/// confirmation of a new user).
pub(super) async fn verdict(
    generation: &Generation,
    subject: &str,
    strategy: &str,
    verdict: Verdict,
    via: sessions::Via,
) -> Result<Reply, Failure> {
    match settle(generation, subject, strategy, verdict, via).await? {
        Settled::SignedIn(signed_in) => {
            let status = match &signed_in {
                SignedIn::Token { created: true, .. } => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            Ok(json_response(
                status,
                &sessions::signed_in_body(generation, subject, &signed_in),
            ))
        }
        Settled::Other(Verdict::Authenticated { .. }) => Err(Failure::Internal(
            "a settled verdict is still a sign-in".into(),
        )),
        Settled::Other(Verdict::Continue { step, token }) => Ok(json_response(
            StatusCode::OK,
            &json!({ "continue": step, "token": token.token }),
        )),
        Settled::Other(Verdict::Accepted) => Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "status": "accepted" }),
        )),
        Settled::Other(Verdict::Json { status, body }) => Ok(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            &body,
        )),
        Settled::Other(Verdict::NoContent) => Ok(no_content()),
        Settled::Other(Verdict::Rejected(r)) => Err(Failure::Rejected(r)),
    }
}
