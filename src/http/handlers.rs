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
use super::error::{Failure, Reply, json_response, no_content};
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

pub(super) async fn me<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let session = require_session(generation, subject, req).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user": sessions::view(generation, subject, &session.user) }),
    ))
}

pub(super) async fn sign_out<B>(
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let session = require_session(generation, subject, req).await?;
    sessions::sign_out(generation, &session).await??;
    Ok(no_content())
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

/// Renders a strategy's verdict, applying the session rules to sign-ins (and sending the
/// confirmation of a new user).
pub(super) async fn verdict(
    generation: &Generation,
    subject: &str,
    strategy: &str,
    verdict: Verdict,
    via: sessions::Via,
) -> Result<Reply, Failure> {
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
            let status = match &signed_in {
                SignedIn::Token { created: true, .. } => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            Ok(json_response(
                status,
                &sessions::signed_in_body(generation, subject, &signed_in),
            ))
        }
        Verdict::Continue { step, token } => Ok(json_response(
            StatusCode::OK,
            &json!({ "continue": step, "token": token.token }),
        )),
        Verdict::Accepted => Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "status": "accepted" }),
        )),
        Verdict::Json { status, body } => Ok(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            &body,
        )),
        Verdict::NoContent => Ok(no_content()),
        Verdict::Rejected(r) => Err(Failure::Rejected(r)),
    }
}
