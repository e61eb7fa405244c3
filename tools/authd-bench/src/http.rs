//! The load generator: a hyper-util client (HTTP/1.1, keep-alive) on one thread, closed and
//! open request loops bounded in count and time, and the bare hyper server that gives the HTTP
//! ceiling. It must never address anything but loopback, and must know nothing of authd's
//! routes: callers build the requests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

/// No request waits longer than this; a slower one counts as an error.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most requests one loop sends, whatever its duration.
const MAX_REQUESTS: u64 = 50_000_000;
/// Most open-loop requests in flight at once.
const MAX_IN_FLIGHT: usize = 512;
/// How long an open loop waits for its last answers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The fixed body of the bare server: the size of a `/me` answer.
const BARE_BODY: &[u8] =
    br#"{"user":{"id":"00000000-0000-0000-0000-000000000000","email":"bench0@example.com"}}"#;

pub(crate) type Body = Full<Bytes>;

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Body>,
}

/// What came back.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub retry_after: bool,
    pub body: Bytes,
}

impl Http {
    pub fn new() -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(usize::MAX)
            // Under the daemon's 10 s header-read timeout, which closes idle connections.
            .pool_idle_timeout(Duration::from_secs(5))
            .build(connector);
        Http { client }
    }

    /// Sends `req` and reads the whole answer, within [`REQUEST_TIMEOUT`].
    pub async fn call(&self, req: Request<Body>) -> anyhow::Result<Answer> {
        let exchange = async {
            let response = self.client.request(req).await?;
            let status = response.status();
            let retry_after = response.headers().contains_key(header::RETRY_AFTER);
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .context("no answer within 30 s")?
    }
}

/// A GET with an optional bearer token.
pub(crate) fn get(uri: &hyper::Uri, bearer: Option<&HeaderValue>) -> Request<Body> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    if let Some(b) = bearer {
        req.headers_mut().insert(header::AUTHORIZATION, b.clone());
    }
    req
}

/// The requests of a closed loop of `concurrency` tasks sending `GET uri` with the bearer
/// tokens in turn: task `t`'s `i`-th request uses token `(t + i * concurrency) % len`, so that
/// the tasks spread over every token. `tokens` must not be empty.
pub(crate) fn rotating_gets(
    uri: hyper::Uri,
    tokens: Arc<Vec<HeaderValue>>,
    concurrency: usize,
) -> impl Fn(usize, u64) -> Request<Body> + Send + Sync + 'static {
    move |task, i| {
        let n = (task as u64 + i * concurrency as u64) as usize % tokens.len().max(1);
        get(&uri, tokens.get(n))
    }
}

/// A POST of a JSON body.
pub(crate) fn post_json(uri: &hyper::Uri, body: &Bytes) -> Request<Body> {
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = hyper::Method::POST;
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    req
}

/// Timings and outcomes of a loop.
#[derive(Default)]
pub(crate) struct Tally {
    /// Latencies of the answers with the expected status.
    pub ok: Vec<Duration>,
    /// Latencies of 503 answers.
    pub busy: Vec<Duration>,
    /// 503 answers without `Retry-After`.
    pub busy_without_retry_after: u64,
    /// 503 answers with code `unavailable`: the store failed (a pool wait timed out, the
    /// database is down), as opposed to `busy` (the hashing queue is full).
    pub unavailable: u64,
    /// Other statuses, by code.
    pub other: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors, timeouts).
    pub errors: u64,
    pub first_error: Option<String>,
    /// When the last answer arrived.
    pub last_done: Option<Instant>,
}

impl Tally {
    pub fn record(
        &mut self,
        expected: StatusCode,
        latency: Duration,
        answer: &anyhow::Result<Answer>,
    ) {
        match answer {
            Ok(a) if a.status == expected => self.ok.push(latency),
            Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => {
                self.busy.push(latency);
                if !a.retry_after {
                    self.busy_without_retry_after += 1;
                }
                let code = serde_json::from_slice::<serde_json::Value>(&a.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
                if code.as_deref() == Some("unavailable") {
                    self.unavailable += 1;
                }
            }
            Ok(a) => *self.other.entry(a.status.as_u16()).or_default() += 1,
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{e:#}"));
                }
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.busy.extend(other.busy);
        self.busy_without_retry_after += other.busy_without_retry_after;
        self.unavailable += other.unavailable;
        for (k, v) in other.other {
            *self.other.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A loop's result: its tally and how long it ran, first request to last answer.
pub(crate) struct LoopResult {
    pub tally: Tally,
    pub elapsed: Duration,
}

impl LoopResult {
    /// Two runs of the same loop as one.
    pub fn combine(mut self, other: LoopResult) -> LoopResult {
        self.tally.merge(other.tally);
        self.elapsed += other.elapsed;
        self
    }
}

/// `concurrency` tasks, each sending its next request when the previous one is answered,
/// until `duration` has passed (requests in flight then are awaited and counted).
/// `make(task, i)` builds the `i`-th request of a task; `done` counts answers as they come.
pub(crate) async fn closed_loop<F>(
    http: &Http,
    concurrency: usize,
    duration: Duration,
    expected: StatusCode,
    done: Arc<AtomicU64>,
    make: F,
) -> LoopResult
where
    F: Fn(usize, u64) -> Request<Body> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let per_task = MAX_REQUESTS / concurrency.max(1) as u64;
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for task in 0..concurrency {
        let http = http.clone();
        let make = Arc::clone(&make);
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0;
            while i < per_task && Instant::now() < deadline {
                let req = make(task, i);
                i += 1;
                let sent = Instant::now();
                let answer = http.call(req).await;
                tally.record(expected, sent.elapsed(), &answer);
                done.fetch_add(1, Ordering::Relaxed);
            }
            tally.last_done = Some(Instant::now());
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(t) => tally.merge(t),
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let elapsed = tally.last_done.unwrap_or_else(Instant::now) - start;
    LoopResult { tally, elapsed }
}

/// What an open loop did.
pub(crate) struct OpenLoopResult {
    pub result: LoopResult,
    pub sent: u64,
    /// Sends skipped because [`MAX_IN_FLIGHT`] requests were already waiting.
    pub skipped: u64,
    /// Answers still missing after the drain timeout.
    pub abandoned: u64,
}

/// Sends requests at `rate` per second for `duration`, whatever the answers (an open loop:
/// a slow server does not slow the sender down), then waits for the answers.
pub(crate) async fn open_loop<F>(
    http: &Http,
    rate: f64,
    duration: Duration,
    expected: StatusCode,
    done: Arc<AtomicU64>,
    make: F,
) -> OpenLoopResult
where
    F: Fn(u64) -> Request<Body>,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, anyhow::Result<Answer>)>();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let budget = ((rate * duration.as_secs_f64()).ceil() as u64 + 1).min(MAX_REQUESTS);
    let start = Instant::now();
    let deadline = start + duration;
    let (mut sent, mut skipped) = (0u64, 0u64);
    while sent + skipped < budget {
        ticker.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let req = make(sent);
        sent += 1;
        let http = http.clone();
        let tx = tx.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let answer = http.call(req).await;
            let _ = tx.send((t0.elapsed(), answer));
            done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(tx);
    let mut tally = Tally::default();
    let mut received = 0u64;
    let drain_until = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while let Ok(Some((latency, answer))) = tokio::time::timeout_at(drain_until, rx.recv()).await {
        tally.record(expected, latency, &answer);
        tally.last_done = Some(Instant::now());
        received += 1;
    }
    let elapsed = tally.last_done.unwrap_or_else(Instant::now) - start;
    OpenLoopResult {
        result: LoopResult { tally, elapsed },
        sent,
        skipped,
        abandoned: sent - received,
    }
}

/// A hyper server answering every request with a fixed small JSON body, on its own
/// multi-threaded runtime (as many workers as the daemon's), on a loopback port.
pub(crate) struct BareServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BareServer {
    pub fn start(workers: usize) -> anyhow::Result<BareServer> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("cannot bind a loopback port for the bare server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("bare-hyper")
            .enable_all()
            .build()
            .context("cannot start the bare server's runtime")?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bare-hyper-accept".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        let stream = tokio::select! {
                            r = listener.accept() => match r {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                            _ = &mut stopped => break,
                        };
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(async move {
                            let service =
                                service_fn(|_req: Request<hyper::body::Incoming>| async {
                                    let mut response =
                                        Response::new(Full::new(Bytes::from_static(BARE_BODY)));
                                    let headers = response.headers_mut();
                                    headers.insert(
                                        header::CONTENT_TYPE,
                                        HeaderValue::from_static("application/json"),
                                    );
                                    headers.insert(
                                        header::CACHE_CONTROL,
                                        HeaderValue::from_static("no-store"),
                                    );
                                    Ok::<_, Infallible>(response)
                                });
                            let _ = http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(Duration::from_secs(10))
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
                // Dropping the runtime here ends the connections still open.
            })
            .context("cannot start the bare server's thread")?;
        Ok(BareServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rotating_gets_spread_the_tasks_over_every_token() {
        let tokens: Vec<HeaderValue> = ["a", "b", "c"]
            .iter()
            .map(|t| HeaderValue::from_static(t))
            .collect();
        let make = rotating_gets(
            "http://127.0.0.1:1/me".parse().unwrap(),
            Arc::new(tokens),
            2,
        );
        let used = |task, i| {
            make(task, i)
                .headers()
                .get(header::AUTHORIZATION)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        // Task 0 takes tokens 0, 2, 1, ...; task 1 takes 1, 0, 2, ...
        assert_eq!([used(0, 0), used(0, 1), used(0, 2)], ["a", "c", "b"]);
        assert_eq!([used(1, 0), used(1, 1), used(1, 2)], ["b", "a", "c"]);
        assert_eq!(make(0, 0).uri().path(), "/me");
    }
}
