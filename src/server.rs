//! The HTTP server (hyper 1 + hyper-util): routing, body limits, parameter decoding and the
//! one function that turns every verdict and error into a response. The only module that
//! knows inbound HTTP.
//!
//! Each request takes one snapshot of the current [`Generation`] (config and registry) and
//! keeps it to the end, so a reload never changes the rules under a request in flight.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use authd_strategy_api::{
    Claims, FieldErrors, HashPool, Params, PhaseRequest, Purpose, Rejection, TokenError,
    TokenStore, Tokens, Verdict,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::registry::Registry;
use crate::store::Store;
use crate::tokens::TokenService;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read; larger ones are refused by hyper.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One loaded configuration: what a request snapshot holds.
pub struct Generation {
    pub registry: Registry,
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// 1 for the config loaded at start, +1 per applied reload.
    pub number: u64,
    /// SHA-256 (hex, first 16 characters) of the file in force.
    pub file_hash: String,
    /// When it was loaded, in Unix seconds.
    pub loaded_at: u64,
    /// Signs and checks tokens with this generation's key and settings.
    pub tokens: Arc<TokenService>,
    /// The hashing pool (shared with the previous generation unless its size changed).
    pub pool: HashPool,
}

/// What every request shares, across generations.
pub struct Shared {
    pub current: ArcSwap<Generation>,
    pub store: Store,
    /// What `/healthz` reports beyond the generation in force.
    pub status: std::sync::Mutex<Status>,
}

/// The last reload failure and the stale-hash census, for `/healthz`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Status {
    /// Set when the latest file was rejected; cleared by the next applied reload.
    pub last_reload_error: Option<ReloadFailure>,
    /// Users whose stored hash was made with other parameters than the current ones.
    pub stale_hashes: Option<StaleCensus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadFailure {
    /// Unix seconds.
    pub at: u64,
    pub file_hash: Option<String>,
    /// Every problem, each with its TOML path.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StaleCensus {
    /// Unix seconds.
    pub computed_at: u64,
    /// `"<subject>/<strategy>"` -> counts.
    pub strategies: std::collections::BTreeMap<String, StaleCount>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StaleCount {
    /// Users holding a credential of this strategy.
    pub users: u64,
    /// Of those, how many hashes will be upgraded at their next sign-in.
    pub stale: u64,
}

/// Serves `listener` until `shutdown` turns true (or its sender goes), then lets in-flight
/// requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "HT0001 accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let service = service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("HT0002 connections still open after the shutdown grace period");
        }
    }
}

/// Resolves once the stop flag is true, or its sender is gone.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Everything a request can end in other than success; mapped to a response in one place.
#[derive(Debug)]
enum Failure {
    NotFound,
    MethodNotAllowed(String),
    UnsupportedMediaType,
    PayloadTooLarge(usize),
    Timeout,
    Malformed(String),
    Rejected(Rejection),
    Internal(String),
}

impl From<authd_strategy_api::Error> for Failure {
    fn from(e: authd_strategy_api::Error) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => Failure::Rejected(Rejection::InvalidToken),
            TokenError::Internal(e) => e.into(),
        }
    }
}

type Reply = Response<Full<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn json_response(status: StatusCode, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_body(code: &str, message: &str, fields: Option<&FieldErrors>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(fields) = fields {
        error["fields"] = json!(fields);
    }
    json!({ "error": error })
}

/// The one mapping from failures to responses. Clients get a stable code and a generic
/// message; the cause of a 500 goes to the log only.
fn failure_response(failure: Failure) -> Reply {
    match failure {
        Failure::NotFound => json_response(
            StatusCode::NOT_FOUND,
            &error_body("not_found", "No such route", None),
        ),
        Failure::MethodNotAllowed(allow) => {
            let mut r = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body(
                    "method_not_allowed",
                    &format!("Allowed methods: {allow}"),
                    None,
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&allow) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            r
        }
        Failure::UnsupportedMediaType => json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &error_body(
                "unsupported_media_type",
                "Send the body as application/json",
                None,
            ),
        ),
        Failure::PayloadTooLarge(max) => json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &error_body(
                "payload_too_large",
                &format!("The body is larger than {max} bytes"),
                None,
            ),
        ),
        Failure::Timeout => json_response(
            StatusCode::REQUEST_TIMEOUT,
            &error_body("request_timeout", "The body was not received in time", None),
        ),
        Failure::Malformed(message) => json_response(
            StatusCode::BAD_REQUEST,
            &error_body("malformed", &message, None),
        ),
        Failure::Rejected(Rejection::AuthenticationFailed) => json_response(
            StatusCode::UNAUTHORIZED,
            &error_body("authentication_failed", "Authentication failed", None),
        ),
        Failure::Rejected(Rejection::InvalidToken) => json_response(
            StatusCode::UNAUTHORIZED,
            &error_body("invalid_token", "The token is invalid or has expired", None),
        ),
        Failure::Rejected(Rejection::Invalid(fields)) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &error_body("invalid", "Some fields are invalid", Some(&fields)),
        ),
        Failure::Rejected(Rejection::RateLimited { retry_after_secs }) => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &error_body(
                    "rate_limited",
                    "Too many failed attempts; retry later",
                    None,
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        Failure::Rejected(Rejection::Busy { retry_after_secs }) => {
            let mut r = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &error_body(
                    "busy",
                    "Too many requests are being processed; retry shortly",
                    None,
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        Failure::Internal(cause) => {
            tracing::error!(%cause, "HT0500 internal error");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &error_body("internal", "Internal error", None),
            )
        }
    }
}

/// Answers one request. Generic over the body so that benchmarks and tests can call it
/// without a socket.
pub async fn handle<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let generation = shared.current.load_full();
    match route(shared, &generation, peer, req).await {
        Ok(reply) => reply,
        Err(failure) => failure_response(failure),
    }
}

fn allow(methods: &[&str], method: &Method) -> Result<(), Failure> {
    if methods.contains(&method.as_str()) {
        Ok(())
    } else {
        Err(Failure::MethodNotAllowed(methods.join(", ")))
    }
}

async fn route<B>(
    shared: &Shared,
    generation: &Generation,
    peer: SocketAddr,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        ["healthz"] => {
            allow(&["GET"], req.method())?;
            Ok(health(shared, generation))
        }
        ["auth", subject, "me"] if generation.registry.has_subject(subject) => {
            allow(&["GET"], req.method())?;
            me(shared, generation, subject, &req).await
        }
        ["auth", subject, "sign_out"] if generation.registry.has_subject(subject) => {
            allow(&["POST"], req.method())?;
            sign_out(shared, generation, subject, &req).await
        }
        ["auth", subject, strategy_name, phase_name] => {
            let strategy = generation
                .registry
                .strategy(subject, strategy_name)
                .ok_or(Failure::NotFound)?;
            let phase = Registry::phase(strategy, phase_name).ok_or(Failure::NotFound)?;
            let methods: Vec<&str> = phase.methods.iter().map(|m| m.as_str()).collect();
            allow(&methods, req.method())?;
            let client_ip = client_ip(peer.ip(), req.headers(), &generation.trusted_proxies);
            let params = read_params(req, subject, generation.max_body_bytes).await?;
            let verdict = strategy
                .handle(
                    phase.name,
                    PhaseRequest {
                        params,
                        client_ip: Some(client_ip),
                    },
                )
                .await?;
            verdict_response(verdict)
        }
        _ => Err(Failure::NotFound),
    }
}

fn verdict_response(verdict: Verdict) -> Result<Reply, Failure> {
    match verdict {
        Verdict::Authenticated {
            user,
            token,
            created,
        } => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(
                status,
                &json!({ "user": user.public_view(), "token": token.token }),
            ))
        }
        Verdict::Accepted => Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "status": "accepted" }),
        )),
        Verdict::Rejected(r) => Err(Failure::Rejected(r)),
    }
}

fn health(shared: &Shared, generation: &Generation) -> Reply {
    let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "config": {
                "generation": generation.number,
                "file_hash": generation.file_hash,
                "loaded_at": generation.loaded_at,
            },
            "last_reload_error": status.last_reload_error,
            "stale_hashes": status.stale_hashes,
            "outbox": crate::outbox::stats(&shared.store),
            "hash_pool": {
                "workers": generation.pool.workers(),
                "queue_capacity": generation.pool.depth(),
                "pending": generation.pool.pending(),
                "completed": generation.pool.completed(),
            },
        }),
    )
}

/// The client's address: the socket's peer, unless the peer is a trusted proxy; then the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (addresses to the
/// left of it were written by the client and cannot be believed).
pub fn client_ip(peer: IpAddr, headers: &hyper::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(&ip) {
                        return ip;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

/// Reads the request's parameters: the query string for GET; for POST a JSON object (the
/// body), plus a `token` query parameter if the body has none. Parameters nested under the
/// subject name (`{"user": {...}}`) are taken out of their envelope.
async fn read_params<B>(req: Request<B>, subject: &str, max: usize) -> Result<Params, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let query = req.uri().query().map(str::to_string);
    if req.method() == Method::GET {
        return Ok(decode_query(query.as_deref()));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Failure::PayloadTooLarge(max));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid").to_string());
    let body = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), max).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(Failure::PayloadTooLarge(max)),
        Ok(Err(e)) => return Err(Failure::Malformed(format!("could not read the body: {e}"))),
        Err(_) => return Err(Failure::Timeout),
    };
    decode_params(subject, content_type.as_deref(), &body, query.as_deref()).map_err(|e| match e {
        DecodeError::UnsupportedMediaType => Failure::UnsupportedMediaType,
        DecodeError::Malformed(m) => Failure::Malformed(m),
    })
}

/// Why a request's parameters could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A body that is not `application/json`.
    UnsupportedMediaType,
    /// A body that is not one JSON object.
    Malformed(String),
}

/// Query parameters as string values.
pub fn decode_query(query: Option<&str>) -> Params {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes a POST's parameters (pure: the fuzz target calls it): the body must be one JSON
/// object, flat or nested under the subject name (`{"user": {...}}`); a `token` query parameter
/// is added when the body has none.
///
/// # Errors
/// [`DecodeError`] for a body of another type or that is not one JSON object.
pub fn decode_params(
    subject: &str,
    content_type: Option<&str>,
    body: &[u8],
    query: Option<&str>,
) -> Result<Params, DecodeError> {
    let mut params = if body.is_empty() {
        Params::new()
    } else {
        let is_json = content_type.is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
        if !is_json {
            return Err(DecodeError::UnsupportedMediaType);
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(DecodeError::Malformed(
                    "the body must be a JSON object".into(),
                ));
            }
            Err(e) => {
                return Err(DecodeError::Malformed(format!(
                    "the body is not valid JSON: {e}"
                )));
            }
        }
    };
    if let Some(Value::Object(_)) = params.get(subject)
        && let Some(Value::Object(inner)) = params.remove(subject)
    {
        // AshAuthentication's form: {"user": {...}}; top-level keys (e.g. token_type) stay.
        for (k, v) in inner {
            params.insert(k, v);
        }
    }
    if !params.contains_key("token")
        && let Some(token) = decode_query(query).remove("token")
    {
        params.insert("token".into(), token);
    }
    Ok(params)
}

/// Checks a session token from `Authorization: Bearer`: signature, purpose and subject, then,
/// in one read of the store, that it is not revoked and that its user exists and has not reset
/// their password since (`sep`). Returns its claims and the user.
async fn session<B>(
    shared: &Shared,
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<(Claims, authd_strategy_api::UserRecord), Failure> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(Failure::Rejected(Rejection::InvalidToken))?;
    let claims = generation.tokens.verify(token)?;
    let id = claims
        .user_id(subject)
        .filter(|_| claims.purpose == Purpose::User)
        .ok_or(Failure::Rejected(Rejection::InvalidToken))?;
    let user = shared
        .store
        .live_session_user(subject, id, &claims.jti)
        .map_err(|e| Failure::Internal(e.to_string()))?
        // Sessions from before the user's last password reset are revoked.
        .filter(|user| claims.sep.unwrap_or(0) == user.session_epoch)
        .ok_or(Failure::Rejected(Rejection::InvalidToken))?;
    Ok((claims, user))
}

async fn me<B>(
    shared: &Shared,
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let (_, user) = session(shared, generation, subject, req).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user": user.public_view() }),
    ))
}

async fn sign_out<B>(
    shared: &Shared,
    generation: &Generation,
    subject: &str,
    req: &Request<B>,
) -> Result<Reply, Failure> {
    let (claims, _) = session(shared, generation, subject, req).await?;
    shared.store.revoke(&claims.jti, claims.exp).await?;
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for v in xff {
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
        let spoofed = headers(&["1.2.3.4"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &spoofed, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("10.0.0.2"), &spoofed, &trusted), ip("1.2.3.4"));
        // The client wrote the left-most entries: take the right-most untrusted one.
        let chain = headers(&["6.6.6.6, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &chain, &trusted),
            ip("198.51.100.7")
        );
        let garbage = headers(&["not-an-ip"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &garbage, &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers(&[]), &[]),
            ip("10.0.0.2")
        );
    }
}
