//! The `[metrics]` listener: `GET /metrics` on a port of its own, a few connections at a time,
//! idle ones closed. It reads what the gauges show now (the hashing pool's queue, the
//! generation's number, the outbox's depth) from [`Shared`] and hands them to
//! [`Metrics::render`], so that `metrics` itself knows neither HTTP nor the daemon's state.
//!
//! Must not count anything itself, nor answer any other path.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::state::Shared;

/// Scrapes served at once.
const MAX_SCRAPERS: usize = 16;
/// How long a scrape waits for the store's outbox depth before showing the last one.
const OUTBOX_TIMEOUT: Duration = Duration::from_secs(2);

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until `stop`: a small listener of its own, a few
/// connections at a time, idle ones closed.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "MT0001 metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let shared = Arc::clone(&shared);
        let metrics = Arc::clone(&metrics);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&shared);
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(answer(&req, &shared, &metrics).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn answer<B>(req: &Request<B>, shared: &Shared, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (
            StatusCode::OK,
            OPENMETRICS,
            Bytes::from(scrape(shared, metrics).await),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"only GET /metrics\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found: GET /metrics\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The text of a scrape, with the gauges read now.
async fn scrape(shared: &Shared, metrics: &Metrics) -> String {
    let (hash_pending, generation) = {
        let generation = shared.current.load();
        (generation.pool.pending(), generation.number)
    };
    let outbox = tokio::time::timeout(
        OUTBOX_TIMEOUT,
        shared.store.outbox_stats(shared.clock.now_ms()),
    )
    .await;
    let outbox_depth = match outbox {
        Ok(Ok(stats)) => Some(stats.depth),
        _ => None,
    };
    metrics.render(hash_pending, generation, outbox_depth)
}
