//! The admin listener (`[admin] listen`): routes for operators, each behind the admin token
//! (`Authorization: Bearer <token>`, compared in constant time). Without a valid token every
//! route answers `401`. What `/healthz` must not tell (reload problems, the stale-hash census,
//! the outbox, the hashing pool) is here.

use std::net::SocketAddr;

use hyper::body::Body;
use hyper::{Request, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::BoxError;
use super::error::{Failure, Reply, json_response};
use super::handlers::bearer;
use super::router::allow;
use crate::state::{Generation, Shared};

/// Answers one request of the admin listener.
pub async fn handle<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match route(shared, peer, req).await {
        Ok(reply) => reply,
        Err(failure) => failure.response(),
    }
}

/// Whether the request carries the admin token.
fn authorized<B>(generation: &Generation, req: &Request<B>) -> bool {
    match (&generation.admin_token, bearer(req)) {
        (Some(expected), Some(given)) => bool::from(expected.as_slice().ct_eq(given.as_bytes())),
        _ => false,
    }
}

async fn route<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let generation = shared.current.load_full();
    if !authorized(&generation, &req) {
        tracing::warn!(%peer, path = %req.uri().path(), "AD0401 admin request without a valid token");
        return Err(Failure::Unauthorized);
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        ["admin", "status"] => {
            allow(&["GET"], req.method())?;
            Ok(status(shared, &generation).await)
        }
        _ => Err(Failure::NotFound),
    }
}

/// Everything an operator needs to see of the daemon.
async fn status(shared: &Shared, generation: &Generation) -> Reply {
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
            "hash_pool": {
                "workers": generation.pool.workers(),
                "queue_capacity": generation.pool.depth(),
                "pending": generation.pool.pending(),
                "completed": generation.pool.completed(),
            },
        }),
    )
}
