//! The HTTP layer (hyper 1 + hyper-util, tower-http layers): the only module that knows
//! inbound HTTP. It accepts connections within bounds (all at once, per client address, idle
//! time), extracts what a request carries (route, parameters, client address, bearer), asks
//! the domain (the strategies through the registry, [`crate::sessions`]), and maps every
//! answer and failure to a response ([`error`]: one table).
//!
//! Each request takes one snapshot of the current [`Generation`] and keeps it to the end, so a
//! reload never changes the rules under a request in flight.
//!
//! [`Generation`]: crate::state::Generation

pub mod admin;
pub mod client_ip;
pub mod error;
mod handlers;
mod introspect;
pub mod metrics_listener;
pub mod observe;
pub mod pages;
pub mod params;
mod router;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authd_strategy_api::rate_key;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::{Layer, ServiceExt};
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::state::Shared;

pub use params::{DecodeError, decode_params, decode_query};
pub use router::{handle, handle_in};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest request head (request line and headers) read; larger ones are refused by hyper.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Which set of routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/auth/...`, `/healthz`: the users' API.
    Public,
    /// `/admin/...`: operators, with the admin token.
    Admin,
}

/// The bounds on connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max: usize,
    pub per_ip: usize,
}

/// Connections held per client address (IPv6 by /64), for the per-address cap.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// A connection's place in [`PerAddress`]; freed when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    fn take(table: &Arc<PerAddress>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = rate_key(ip);
        let mut counts = table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Arc::clone(table),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A panic in a handler becomes the generic `500` of the error table, never a dropped
/// connection.
#[derive(Clone)]
struct PanicTo500;

impl ResponseForPanic for PanicTo500 {
    type ResponseBody = admin::AdminBody;

    fn response_for_panic(
        &mut self,
        _: Box<dyn std::any::Any + Send + 'static>,
    ) -> hyper::Response<Self::ResponseBody> {
        error::Failure::Internal("a request handler panicked".into())
            .response()
            .map(http_body_util::Either::Left)
    }
}

/// Serves `listener` until `stop` is cancelled, then lets in-flight requests finish for up to
/// [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    surface: Surface,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max));
    let per_address = Arc::new(PerAddress::default());
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
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
            () = stop.cancelled() => break,
        };
        // One client address may not hold every connection: past its share, the new
        // connection is closed at once.
        let Some(address_slot) = PerAddress::take(&per_address, peer.ip(), limits.per_ip) else {
            tracing::debug!(%peer, "HT0003 per-address connection limit reached; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (idle_timeout, body_timeout) = {
            let current = shared.current.load();
            (current.server.idle_timeout, current.server.body_timeout)
        };
        let conn_shared = Arc::clone(&shared);
        let service = ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(PanicTo500))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ))
            .layer(RequestBodyTimeoutLayer::new(body_timeout))
            .service_fn(move |req| {
                let shared = Arc::clone(&conn_shared);
                // Boxed once here: the handler's state machine is large, and each layer above
                // would otherwise move it by value (2% of the daemon's CPU on `/me` was memmove
                // from these layers, BENCHMARKS.md).
                Box::pin(async move {
                    let reply = match surface {
                        Surface::Public => {
                            // One snapshot of the generation for the whole request: its
                            // rules, its route table, its counters.
                            let generation = shared.current.load_full();
                            let observed = observe::Observed::start(&generation, &req);
                            let mut reply = match &generation.cors {
                                None => handle_in(&shared, &generation, peer, req).await,
                                Some(cors) => {
                                    let inner = tower::service_fn(|req| {
                                        let shared = Arc::clone(&shared);
                                        let generation = Arc::clone(&generation);
                                        async move {
                                            Ok::<_, Infallible>(
                                                handle_in(&shared, &generation, peer, req).await,
                                            )
                                        }
                                    });
                                    match cors.layer(inner).oneshot(req).await {
                                        Ok(reply) => reply,
                                        Err(never) => match never {},
                                    }
                                }
                            };
                            observed.finish(&generation, &mut reply);
                            reply.map(http_body_util::Either::Left)
                        }
                        Surface::Admin => admin::handle(&shared, peer, req).await,
                    };
                    Ok::<_, Infallible>(reply)
                })
            });
        // An idle keep-alive connection waits for its next request head within the same
        // timeout as a slow first one: past it, hyper closes it and its slots are freed.
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
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

/// The CORS layer of the public listener for `origins` (`server.cors_allowed_origins`);
/// `None` when there are none. Simple and preflighted requests from those origins may use
/// every method of the API with `Authorization` and `Content-Type`; credentials (cookies) are
/// never allowed cross-origin, so the pages' session cookie is not usable from another site.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let values: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([
                hyper::Method::GET,
                hyper::Method::POST,
                hyper::Method::PATCH,
                hyper::Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}

/// The peer of an in-process call (benchmarks, tests).
pub fn local_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
