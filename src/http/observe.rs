//! What each request of the public listener leaves behind: its `x-request-id` (the client's,
//! when it is a short run of visible ASCII, else a new UUID v4), returned in the response;
//! one `request` log event (target `authd::request`: route pattern, method, status,
//! duration_ms, request_id); and, with `[metrics]`, its count and duration by route pattern.
//!
//! Never the raw path (a magic link's token is in it), a query, a header value other than the
//! request id, or a body.

use std::time::Instant;

use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};

use crate::metrics::RouteId;
use crate::state::Generation;

/// The request id header, read and written.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest client request id kept; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// The request's own id when it is acceptable (1 to 128 visible ASCII characters), else a new
/// UUID v4.
pub fn request_id<B>(req: &Request<B>) -> HeaderValue {
    if let Some(given) = req.headers().get(&X_REQUEST_ID) {
        let bytes = given.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID
            && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return given.clone();
        }
    }
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Whether request events are written at all (the filter decides; cheap when they are not).
fn logging() -> bool {
    tracing::enabled!(target: "authd::request", tracing::Level::INFO)
}

/// What is kept of a request while it is answered: its route by place in the generation's
/// table (no reference count touched), and only when something will use it.
pub struct Observed {
    started: Instant,
    id: HeaderValue,
    method: hyper::Method,
    route: Option<RouteId>,
}

impl Observed {
    /// Before the request is answered by `generation`.
    pub fn start<B>(generation: &Generation, req: &Request<B>) -> Observed {
        let route = generation.routes.find(req.uri().path());
        let wanted = generation.routes.get(route).is_measured() || logging();
        Observed {
            started: Instant::now(),
            id: request_id(req),
            method: req.method().clone(),
            route: wanted.then_some(route),
        }
    }

    /// After, with the same `generation`: counts, logs, and returns the request id in
    /// `response`.
    pub fn finish<B>(self, generation: &Generation, response: &mut hyper::Response<B>) {
        let status = response.status().as_u16();
        if let Some(route) = self.route {
            let route = generation.routes.get(route);
            let elapsed = self.started.elapsed();
            route.request(status, elapsed.as_secs_f64());
            tracing::info!(
                target: "authd::request",
                route = &*route.pattern,
                method = self.method.as_str(),
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                request_id = self.id.to_str().unwrap_or("invalid"),
                "HT0100 request"
            );
        }
        response.headers_mut().insert(X_REQUEST_ID.clone(), self.id);
    }
}
