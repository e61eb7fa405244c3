//! The admin listener (`[admin] listen`): routes for operators, each behind the admin token
//! (`Authorization: Bearer <token>`, compared in constant time). Without a valid token every
//! route answers `401`. What `/healthz` must not tell (reload problems, the stale-hash census,
//! the outbox, the hashing pool) is here, and the users API ([`crate::admin`]): list, show,
//! create, edit, delete, revoke sessions, unlock, send a reset, import and export as NDJSON,
//! streamed both ways in bounded memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use authd_strategy_api::Rejection;
use bytes::{Bytes, BytesMut};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::BoxError;
use super::error::allow;
use super::error::{Failure, json_response, no_content};
use super::handlers::bearer;
use super::params::{decode_query, read_params};
use crate::admin::{self, Import};
use crate::state::{Generation, Shared};

/// The answer of an admin route: whole, or streamed.
pub type AdminBody = Either<Full<Bytes>, Channel<Bytes, Infallible>>;
type AdminReply = Response<AdminBody>;

/// The longest import line read.
const MAX_LINE: usize = 64 * 1024;
/// Lines of output buffered ahead of a slow reader.
const STREAM_BUFFER: usize = 64;

fn whole(reply: super::error::Reply) -> AdminReply {
    reply.map(Either::Left)
}

/// Answers one request of the admin listener.
pub async fn handle<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> AdminReply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    match route(shared, peer, req).await {
        Ok(reply) => reply,
        Err(failure) => whole(failure.response()),
    }
}

/// Whether the request carries the admin token.
fn authorized<B>(generation: &Generation, req: &Request<B>) -> bool {
    match (&generation.admin_token, bearer(req)) {
        (Some(expected), Some(given)) => bool::from(expected.as_slice().ct_eq(given.as_bytes())),
        _ => false,
    }
}

fn ndjson_stream() -> (Sender<Bytes, Infallible>, AdminReply) {
    let (tx, body) = Channel::new(STREAM_BUFFER);
    let mut reply = Response::new(Either::Right(body));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    (tx, reply)
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

async fn route<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Result<AdminReply, Failure>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let generation = shared.current.load_full();
    if !authorized(&generation, &req) {
        tracing::warn!(%peer, path = %req.uri().path(), "AD0401 admin request without a valid token");
        return Err(Failure::Unauthorized);
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let known = |subject: &str| generation.registry.has_subject(subject);
    match segments.as_slice() {
        ["admin", "status"] => {
            allow(&["GET"], req.method())?;
            Ok(whole(status(shared, &generation).await))
        }
        ["admin", subject, "users"] if known(subject) => {
            allow(&["GET", "POST"], req.method())?;
            if req.method() == Method::POST {
                create(&generation, subject, req).await
            } else {
                list(&generation, subject, req.uri().query()).await
            }
        }
        ["admin", subject, "users", "import"] if known(subject) => {
            allow(&["POST"], req.method())?;
            Ok(import(Arc::clone(&generation), subject, req).await)
        }
        ["admin", subject, "users", "export"] if known(subject) => {
            allow(&["GET"], req.method())?;
            Ok(export(Arc::clone(&generation), subject))
        }
        ["admin", subject, "users", id, rest @ ..] if known(subject) && rest.len() <= 2 => {
            let id: Uuid = id
                .parse()
                .map_err(|_| Failure::Rejected(Rejection::NotFound))?;
            let user = generation
                .services
                .store
                .get(subject, id)
                .await?
                .ok_or(Failure::Rejected(Rejection::NotFound))?;
            match rest {
                [] => {
                    allow(&["GET", "PATCH", "DELETE"], req.method())?;
                    match *req.method() {
                        Method::PATCH => {
                            let params =
                                read_params(req, subject, generation.server.max_body_bytes).await?;
                            let user =
                                admin::update(&generation, subject, &user, &params).await??;
                            Ok(whole(json_response(
                                StatusCode::OK,
                                &json!({ "user": admin::detail(&generation, subject, &user).await? }),
                            )))
                        }
                        Method::DELETE => {
                            admin::delete(&generation, subject, id).await?;
                            Ok(whole(no_content()))
                        }
                        _ => Ok(whole(json_response(
                            StatusCode::OK,
                            &json!({ "user": admin::detail(&generation, subject, &user).await? }),
                        ))),
                    }
                }
                ["revoke_sessions"] => {
                    allow(&["POST"], req.method())?;
                    admin::revoke_sessions(&generation, subject, id).await?;
                    Ok(whole(no_content()))
                }
                ["unlock"] => {
                    allow(&["POST"], req.method())?;
                    admin::unlock(&generation, subject, &user).await?;
                    Ok(whole(no_content()))
                }
                ["credentials", strategy] => {
                    allow(&["DELETE"], req.method())?;
                    if admin::remove_credential(&generation, subject, &user, strategy).await? {
                        Ok(whole(no_content()))
                    } else {
                        Err(Failure::Rejected(Rejection::NotFound))
                    }
                }
                ["send_reset"] => {
                    allow(&["POST"], req.method())?;
                    if admin::send_reset(&generation, subject, &user).await? {
                        Ok(whole(json_response(
                            StatusCode::ACCEPTED,
                            &json!({ "status": "accepted" }),
                        )))
                    } else {
                        Err(Failure::Rejected(Rejection::NotFound))
                    }
                }
                _ => Err(Failure::NotFound),
            }
        }
        _ => Err(Failure::NotFound),
    }
}

async fn list(
    generation: &Generation,
    subject: &str,
    query: Option<&str>,
) -> Result<AdminReply, Failure> {
    let query = decode_query(query);
    let text = |k: &str| query.get(k).and_then(Value::as_str);
    let users = if let Some(identity) = text("identity") {
        admin::find(generation, subject, identity).await?
    } else {
        let limit = match text("limit") {
            None => 50,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=admin::MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    Failure::Rejected(Rejection::Invalid(authd_strategy_api::FieldErrors::one(
                        "limit",
                        format!("must be between 1 and {}", admin::MAX_PAGE),
                    )))
                })?,
        };
        let after = match text("after") {
            None => None,
            Some(a) => Some(a.parse::<Uuid>().map_err(|_| {
                Failure::Rejected(Rejection::Invalid(authd_strategy_api::FieldErrors::one(
                    "after",
                    "must be a cursor from a previous page",
                )))
            })?),
        };
        let page = generation
            .services
            .store
            .users_page(subject, after, limit)
            .await?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|u| u.id))
            .flatten();
        let users: Vec<Value> = page
            .iter()
            .map(|u| crate::sessions::view(generation, subject, u))
            .collect();
        return Ok(whole(json_response(
            StatusCode::OK,
            &json!({ "users": users, "next": next }),
        )));
    };
    let users: Vec<Value> = users
        .iter()
        .map(|u| crate::sessions::view(generation, subject, u))
        .collect();
    Ok(whole(json_response(
        StatusCode::OK,
        &json!({ "users": users, "next": null }),
    )))
}

async fn create<B>(
    generation: &Generation,
    subject: &str,
    req: Request<B>,
) -> Result<AdminReply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let params = read_params(req, subject, generation.server.max_body_bytes).await?;
    let input = admin::parse_line(&Value::Object(params).to_string())
        .map_err(|r| Failure::Rejected(r.into_rejection()))?;
    let user = admin::create(generation, subject, input)
        .await?
        .map_err(|r| Failure::Rejected(r.into_rejection()))?;
    Ok(whole(json_response(
        StatusCode::CREATED,
        &json!({ "user": admin::detail(generation, subject, &user).await? }),
    )))
}

/// Streams an import: lines are read from the body as they arrive, checked, written in
/// batches, and answered one result per line, then a summary.
async fn import<B>(generation: Arc<Generation>, subject: &str, req: Request<B>) -> AdminReply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let dry_run = decode_query(req.uri().query())
        .get("dry_run")
        .and_then(Value::as_str)
        .is_some_and(|v| v == "true" || v == "1");
    let (mut tx, reply) = ndjson_stream();
    let subject = subject.to_string();
    let mut body = Box::pin(req.into_body());
    tokio::spawn(async move {
        let mut import = Import::new(&generation, &subject, dry_run);
        let mut buffer = BytesMut::new();
        let mut skipping = false;
        let mut failed: Option<String> = None;
        'read: loop {
            let chunk = match body.frame().await {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Some(Err(e)) => {
                    failed = Some(format!("the body could not be read: {}", e.into()));
                    break;
                }
            };
            buffer.extend_from_slice(bytes::Buf::chunk(&chunk));
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let raw = buffer.split_to(end + 1);
                if std::mem::take(&mut skipping) {
                    continue; // the rest of an over-long line
                }
                let results = match std::str::from_utf8(&raw) {
                    Ok(text) => import.line(text).await,
                    Err(_) => {
                        import.lines += 1;
                        import.failed += 1;
                        Ok(vec![(
                            import.lines,
                            admin::LineResult::Refused(admin::Refusal {
                                code: "malformed",
                                message: "the line is not UTF-8".into(),
                                fields: None,
                            }),
                        )])
                    }
                };
                match results {
                    Ok(results) => {
                        for (n, r) in results {
                            if tx.send_data(line(&r.to_json(n))).await.is_err() {
                                break 'read;
                            }
                        }
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break 'read;
                    }
                }
            }
            if buffer.len() > MAX_LINE {
                buffer.clear();
                skipping = true;
                import.lines += 1;
                import.failed += 1;
                let refused = admin::LineResult::Refused(admin::Refusal {
                    code: "malformed",
                    message: format!("the line is longer than {MAX_LINE} bytes"),
                    fields: None,
                });
                let _ = tx.send_data(line(&refused.to_json(import.lines))).await;
            }
        }
        if failed.is_none()
            && !buffer.is_empty()
            && !skipping
            && let Ok(text) = std::str::from_utf8(&buffer)
        {
            {
                match import.line(text).await {
                    Ok(results) => {
                        for (n, r) in results {
                            let _ = tx.send_data(line(&r.to_json(n))).await;
                        }
                    }
                    Err(e) => failed = Some(e.to_string()),
                }
            }
        }
        if failed.is_none() {
            match import.flush().await {
                Ok(results) => {
                    for (n, r) in results {
                        let _ = tx.send_data(line(&r.to_json(n))).await;
                    }
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        import.log("admin listener");
        let mut summary = import.summary();
        if let Some(error) = failed {
            tracing::error!(%error, "AD0500 import stopped");
            summary["summary"]["stopped"] = json!(
                "the import stopped: the store failed; lines without a result were not imported"
            );
        }
        let _ = tx.send_data(line(&summary)).await;
    });
    reply
}

/// Streams every user of `subject` in the import format.
fn export(generation: Arc<Generation>, subject: &str) -> AdminReply {
    let (mut tx, reply) = ndjson_stream();
    let subject = subject.to_string();
    tokio::spawn(async move {
        let mut after = None;
        let mut count = 0u64;
        loop {
            let page = match generation
                .services
                .store
                .users_page(&subject, after, 500)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "AD0501 export stopped: the store failed");
                    let _ = tx
                        .send_data(line(&json!({ "error": { "code": "unavailable", "message": "the export stopped: the store failed" } })))
                        .await;
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for user in &page {
                count += 1;
                if tx
                    .send_data(line(&admin::export_line(&generation, &subject, user)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        tracing::info!(target: "authd::admin", action = "export", %subject, users = count, "AD0107 users exported by an operator");
    });
    reply
}

/// Everything an operator needs to see of the daemon.
async fn status(shared: &Shared, generation: &Generation) -> super::error::Reply {
    let store = match shared.store.health().await {
        Ok(()) => json!({ "backend": shared.store.backend(), "status": "ok" }),
        Err(e) => {
            json!({ "backend": shared.store.backend(), "status": "unavailable", "error": e.to_string() })
        }
    };
    let outbox = shared.store.outbox_stats(shared.clock.now_ms()).await.ok();
    let status = shared.with_status(|s| s.clone());
    json_response(
        StatusCode::OK,
        &json!({
            "config": {
                "generation": generation.number,
                "file_hash": generation.file_hash,
                "loaded_at": generation.loaded_at,
            },
            "store": store,
            "last_reload_error": status.last_reload_error,
            "stale_hashes": status.stale_hashes,
            "unique_collisions": status.unique_collisions,
            "outbox": outbox,
            "signing": generation.tokens.status(),
            "hash_pool": {
                "workers": generation.pool.workers(),
                "queue_capacity": generation.pool.depth(),
                "pending": generation.pool.pending(),
                "completed": generation.pool.completed(),
            },
        }),
    )
}
