//! Routing of the public listener: `/healthz`, `/openapi.json`, `/.well-known/jwks.json`,
//! `/auth/introspect`, the resource's own routes
//! (`/auth/<subject>/me`, `sign_out`, `sign_out_all`), and each strategy's phases
//! (`/auth/<subject>/<strategy>[/<phase>[/<param>]]`). `HEAD` is answered as `GET` (hyper
//! sends no body). Transfer and content codings authd does not decode are refused before any
//! body is read.

use std::net::SocketAddr;
use std::sync::Arc;

use authd_strategy_api::{Access, Method as PhaseMethod};
use hyper::body::Body;
use hyper::header;
use hyper::{Method, Request};

use super::BoxError;
use super::error::{Failure, Reply, allow};
use super::handlers;
use super::introspect;
use crate::metrics::SignInOutcome;
use crate::registry::Registry;
use crate::state::{Generation, Shared};

/// The most segments a path of the public API has (`/auth/<subject>/<strategy>/<phase>/<param>`).
const MAX_SEGMENTS: usize = 5;

/// Answers one request. Generic over the body so that benchmarks and tests can call it
/// without a socket.
pub async fn handle<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    handle_in(shared, &shared.current.load_full(), peer, req).await
}

/// Answers one request by the rules of `generation` (the caller's snapshot of the current
/// one, kept to the end of the request).
pub async fn handle_in<B>(
    shared: &Shared,
    generation: &Arc<Generation>,
    peer: SocketAddr,
    req: Request<B>,
) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match route(shared, generation, peer, req).await {
        Ok(reply) => reply,
        Err(failure) => failure.response(),
    }
}

/// Refuses codings authd does not decode: only `chunked` transfer coding, and no content
/// coding, are read (a `gzip` body would otherwise be taken as plain JSON).
fn check_codings<B>(req: &Request<B>) -> Result<(), Failure> {
    for value in req.headers().get_all(header::TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| Failure::NotImplemented("this transfer coding"))?;
        if text
            .split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("chunked"))
        {
            return Err(Failure::NotImplemented(
                "a transfer coding other than chunked",
            ));
        }
    }
    for value in req.headers().get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("unknown");
        if !text.trim().eq_ignore_ascii_case("identity") {
            return Err(Failure::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// The sign-in outcome of a verdict that refuses or continues (the granted ones are counted
/// once the session rules have been applied).
fn refused_sign_in(verdict: &authd_strategy_api::Verdict) -> Option<SignInOutcome> {
    use authd_strategy_api::{Rejection, Verdict};
    match verdict {
        Verdict::Continue { .. } => Some(SignInOutcome::Continue),
        Verdict::Rejected(Rejection::AuthenticationFailed | Rejection::InvalidToken) => {
            Some(SignInOutcome::Failed)
        }
        Verdict::Rejected(Rejection::RateLimited { .. }) => Some(SignInOutcome::Locked),
        Verdict::Rejected(Rejection::Unconfirmed) => Some(SignInOutcome::Unconfirmed),
        _ => None,
    }
}

fn phase_method(method: &Method) -> Option<PhaseMethod> {
    match *method {
        Method::GET | Method::HEAD => Some(PhaseMethod::Get),
        Method::POST => Some(PhaseMethod::Post),
        Method::PATCH => Some(PhaseMethod::Patch),
        Method::DELETE => Some(PhaseMethod::Delete),
        _ => None,
    }
}

async fn route<B>(
    shared: &Shared,
    generation: &Arc<Generation>,
    peer: SocketAddr,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    check_codings(&req)?;
    if let Some(pages) = &generation.pages
        && super::pages::is_page_path(&pages.config, req.uri().path())
    {
        return Ok(super::pages::handle(generation, pages, peer, req).await);
    }
    // The path's segments, borrowed from a clone of the URI (a reference count, not a copy):
    // the request itself moves into the handler. No route has more than five.
    let uri = req.uri().clone();
    let mut segments = [""; MAX_SEGMENTS];
    let mut count = 0;
    for segment in uri.path().split('/').skip(1) {
        let slot = segments.get_mut(count).ok_or(Failure::NotFound)?;
        *slot = segment;
        count += 1;
    }
    match &segments[..count] {
        ["healthz"] => {
            allow(&["GET"], req.method())?;
            Ok(handlers::health(shared, generation).await)
        }
        [".well-known", "jwks.json"] => {
            allow(&["GET"], req.method())?;
            Ok(handlers::jwks(generation))
        }
        ["auth", "introspect"] => {
            allow(&["POST"], req.method())?;
            introspect::introspect(generation, req).await
        }
        ["openapi.json"] => {
            allow(&["GET"], req.method())?;
            Ok(handlers::openapi(generation))
        }
        ["auth", subject, "me"] if generation.registry.has_subject(subject) => {
            allow(&["GET", "PATCH", "DELETE"], req.method())?;
            match *req.method() {
                Method::PATCH => handlers::update_me(generation, subject, req).await,
                Method::DELETE => handlers::delete_me(generation, subject, req).await,
                _ => handlers::me(generation, subject, &req).await,
            }
        }
        ["auth", subject, "confirm"] if generation.registry.confirmation(subject).is_some() => {
            allow(&["GET", "POST"], req.method())?;
            handlers::confirm(generation, subject, req).await
        }
        ["auth", subject, "confirm", "resend"]
            if generation.registry.confirmation(subject).is_some() =>
        {
            allow(&["POST"], req.method())?;
            let client_ip = super::client_ip::client_ip(
                peer.ip(),
                req.headers(),
                &generation.server.trusted_proxies,
                generation.server.forwarded_header,
            );
            handlers::resend(generation, subject, client_ip, req).await
        }
        ["auth", subject, "sign_out"] if generation.registry.has_subject(subject) => {
            allow(&["POST"], req.method())?;
            handlers::sign_out(generation, subject, &req).await
        }
        ["auth", subject, "sign_out_all"] if generation.registry.has_subject(subject) => {
            allow(&["POST"], req.method())?;
            handlers::sign_out_all(generation, subject, &req).await
        }
        ["auth", subject, strategy_name, rest @ ..] if rest.len() <= 2 => {
            let strategy = generation
                .registry
                .strategy(subject, strategy_name)
                .ok_or(Failure::NotFound)?;
            let (phase_name, param) = match rest {
                [] => ("", None),
                [phase] => (*phase, None),
                [phase, param] => (*phase, Some((*param).to_string())),
                _ => return Err(Failure::NotFound),
            };
            let phase =
                Registry::phase(strategy, phase_name, param.is_some()).ok_or(Failure::NotFound)?;
            let methods: Vec<&str> = phase.methods.iter().map(|m| m.as_str()).collect();
            allow(&methods, req.method())?;
            let method = phase_method(req.method()).ok_or(Failure::NotFound)?;
            let session = match phase.access {
                Access::Public => None,
                Access::Session => {
                    Some(handlers::require_session(generation, subject, &req).await?)
                }
            };
            let client_ip = super::client_ip::client_ip(
                peer.ip(),
                req.headers(),
                &generation.server.trusted_proxies,
                generation.server.forwarded_header,
            );
            let params =
                super::params::read_params(req, subject, generation.server.max_body_bytes).await?;
            let request = authd_strategy_api::PhaseRequest {
                method,
                params,
                client_ip: Some(client_ip),
                param,
                session,
            };
            let via = match phase.access {
                Access::Public => crate::sessions::Via::FirstFactor,
                Access::Session => crate::sessions::Via::Session,
            };
            let verdict = strategy.handle(phase.name, request).await?;
            if via == crate::sessions::Via::FirstFactor
                && let Some(metrics) = &generation.metrics
                && let Some(outcome) = refused_sign_in(&verdict)
            {
                metrics.sign_in(subject, strategy_name, outcome);
            }
            handlers::verdict(generation, subject, strategy_name, verdict, via).await
        }
        _ => Err(Failure::NotFound),
    }
}
