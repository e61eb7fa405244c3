//! Prometheus metrics: the series, the per-generation handles the request path uses, and the
//! text of a scrape (OpenMetrics through `prometheus-client`; `http::metrics_listener` serves
//! it).
//!
//! Cheap on the hot path: a request looks its route up in a table built once per generation
//! (the config's route patterns, never the raw path: anything else is `unmatched`), and the
//! counters and histograms it touches are handles resolved in advance (atomics, no
//! allocation). Labels come from the config (resources, strategies, routes) or from the code
//! (algorithms, purposes, outcomes), never from a request: no identity, user id, address or
//! token can become a label, and the number of series is bounded by the config.
//!
//! Must not know HTTP or the daemon's state (a scrape is handed the values its gauges show),
//! nor decide anything: it only counts.

pub mod histogram;
pub mod store;

pub use histogram::{AtomicHistogram, ShardedCounter};
pub use store::TimedStore;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;

/// Seconds a password hash or verification takes: from a cheap test setting to a slow one.
const HASH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Seconds a request takes, from a token check to a queued hash.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds a store call takes, from an embedded read to a slow database.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Most values a label filled from the code (algorithms, purposes) may take; past it, the
/// value is counted as `other` (a bug would otherwise grow the series without bound).
const MAX_CODE_LABEL_VALUES: usize = 32;
/// The label of a request that matched no route of the config.
pub const UNMATCHED: &str = "unmatched";

type Constructor = fn() -> AtomicHistogram;

fn hash_histogram() -> AtomicHistogram {
    AtomicHistogram::new(HASH_BUCKETS)
}
fn http_histogram() -> AtomicHistogram {
    AtomicHistogram::new(HTTP_BUCKETS)
}
fn store_histogram() -> AtomicHistogram {
    AtomicHistogram::new(STORE_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    resource: Arc<str>,
    strategy: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlgorithmLabels {
    algorithm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RehashLabels {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PurposeLabels {
    purpose: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    kind: String,
    channel: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// Every series of the daemon. Lives as long as the daemon (across generations).
pub struct Metrics {
    registry: Registry,
    sign_in: Family<SignInLabels, Counter>,
    hash: Family<AlgorithmLabels, AtomicHistogram, Constructor>,
    verify: Family<AlgorithmLabels, AtomicHistogram, Constructor>,
    rehash: Family<RehashLabels, Counter>,
    tokens: Family<PurposeLabels, Counter>,
    lockouts: Family<KindLabels, Counter>,
    hash_queue_depth: Gauge,
    busy: Counter,
    outbox_depth: Gauge,
    outbox_deliveries: Family<DeliveryLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_generation: Gauge,
    http_requests: Family<HttpLabels, ShardedCounter>,
    http_duration: Family<RouteLabels, AtomicHistogram, Constructor>,
    store_ops: Family<OpLabels, AtomicHistogram, Constructor>,
    events_dropped: Counter,
    created: Created,
}

/// Label sets created so far in the families whose values come from the code (upper bounds).
#[derive(Default)]
struct Created {
    hash: AtomicUsize,
    verify: AtomicUsize,
    rehash: AtomicUsize,
    tokens: AtomicUsize,
    deliveries: AtomicUsize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every series, registered and empty.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let sign_in = Family::default();
        registry.register(
            "authd_sign_in",
            "Sign-in attempts by resource, strategy and outcome (ok, failed, locked, unconfirmed, continue)",
            Family::clone(&sign_in),
        );
        let hash = Family::new_with_constructor(hash_histogram as Constructor);
        registry.register(
            "authd_password_hash_seconds",
            "Time to hash a new password on the hashing pool (queue wait included), by algorithm",
            Family::clone(&hash),
        );
        let verify = Family::new_with_constructor(hash_histogram as Constructor);
        registry.register(
            "authd_password_verify_seconds",
            "Time to verify a password on the hashing pool (queue wait included), by the stored hash's algorithm",
            Family::clone(&verify),
        );
        let rehash = Family::default();
        registry.register(
            "authd_rehash",
            "Stored hashes upgraded at sign-in, from one algorithm to another",
            Family::clone(&rehash),
        );
        let tokens = Family::default();
        registry.register(
            "authd_tokens_issued",
            "Tokens issued, by purpose",
            Family::clone(&tokens),
        );
        let lockouts = Family::default();
        registry.register(
            "authd_lockouts",
            "Keys locked out after too many attempts, by kind (identity or address)",
            Family::clone(&lockouts),
        );
        let hash_queue_depth = Gauge::default();
        registry.register(
            "authd_hash_queue_depth",
            "Hashing jobs waiting or running on the pool",
            hash_queue_depth.clone(),
        );
        let busy = Counter::default();
        registry.register(
            "authd_busy",
            "Requests answered 503 (hashing queue full, store unavailable)",
            busy.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "authd_outbox_depth",
            "Messages waiting in the outbox (read at scrape time)",
            outbox_depth.clone(),
        );
        let outbox_deliveries = Family::default();
        registry.register(
            "authd_outbox_deliveries",
            "Outbox delivery attempts by message kind, channel (webhook, smtp) and result (ok, retry, dropped, expired)",
            Family::clone(&outbox_deliveries),
        );
        let config_reloads = Family::default();
        registry.register(
            "authd_config_reloads",
            "Config reloads by result (applied, rejected)",
            Family::clone(&config_reloads),
        );
        let config_generation = Gauge::default();
        registry.register(
            "authd_config_generation",
            "The generation of the config in force (1 at start, +1 per applied reload)",
            config_generation.clone(),
        );
        let http_requests = Family::default();
        registry.register(
            "authd_http_requests",
            "Requests of the public listener by route pattern and status",
            Family::clone(&http_requests),
        );
        let http_duration = Family::new_with_constructor(http_histogram as Constructor);
        registry.register(
            "authd_http_request_duration_seconds",
            "Time to answer a request of the public listener, by route pattern",
            Family::clone(&http_duration),
        );
        let store_ops = Family::new_with_constructor(store_histogram as Constructor);
        registry.register(
            "authd_store_operation_seconds",
            "Time of each store call, by operation",
            Family::clone(&store_ops),
        );
        let events_dropped = Counter::default();
        registry.register(
            "authd_events_dropped",
            "Account events not queued for the webhook (the event queue was full)",
            events_dropped.clone(),
        );
        Metrics {
            registry,
            sign_in,
            hash,
            verify,
            rehash,
            tokens,
            lockouts,
            hash_queue_depth,
            busy,
            outbox_depth,
            outbox_deliveries,
            config_reloads,
            config_generation,
            http_requests,
            http_duration,
            store_ops,
            events_dropped,
            created: Created::default(),
        }
    }

    /// A value for a label filled from the code, bounded: past [`MAX_CODE_LABEL_VALUES`]
    /// distinct values in `family`, `other`.
    fn bounded<S, M, C>(
        (family, created): (&Family<S, M, C>, &AtomicUsize),
        value: &str,
        known: impl Fn(&str) -> S,
    ) -> S
    where
        S: Clone + std::hash::Hash + Eq,
        C: prometheus_client::metrics::family::MetricConstructor<M>,
    {
        let labels = known(value);
        if family.get(&labels).is_some()
            || created.fetch_add(1, Ordering::Relaxed) < MAX_CODE_LABEL_VALUES
        {
            labels
        } else {
            known("other")
        }
    }

    /// A password hashed (`verify: false`) or verified, in `seconds`.
    pub fn hashed(&self, algorithm: &str, verify: bool, seconds: f64) {
        let family = if verify { &self.verify } else { &self.hash };
        let created = if verify {
            &self.created.verify
        } else {
            &self.created.hash
        };
        let labels = Self::bounded((family, created), algorithm, |a| AlgorithmLabels {
            algorithm: a.to_string(),
        });
        family.get_or_create(&labels).observe(seconds);
    }

    pub fn rehashed(&self, from: &str, to: &str) {
        let labels = Self::bounded((&self.rehash, &self.created.rehash), from, |f| {
            RehashLabels {
                from: f.to_string(),
                to: to.to_string(),
            }
        });
        self.rehash.get_or_create(&labels).inc();
    }

    pub fn token_issued(&self, purpose: &str) {
        let labels = Self::bounded((&self.tokens, &self.created.tokens), purpose, |p| {
            PurposeLabels {
                purpose: p.to_string(),
            }
        });
        self.tokens.get_or_create(&labels).inc();
    }

    /// `kind`: `identity` or `address`.
    pub fn locked_out(&self, kind: &'static str) {
        self.lockouts.get_or_create(&KindLabels { kind }).inc();
    }

    /// One outbox attempt: `result` is `ok`, `retry`, `dropped` or `expired`.
    pub fn delivery(&self, kind: &str, channel: &'static str, result: &'static str) {
        let labels = Self::bounded(
            (&self.outbox_deliveries, &self.created.deliveries),
            kind,
            |k| DeliveryLabels {
                kind: k.to_string(),
                channel,
                result,
            },
        );
        self.outbox_deliveries.get_or_create(&labels).inc();
    }

    /// A reload: `applied` or `rejected`.
    pub fn reloaded(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// The histogram of store operation `op`, resolved once by the store wrapper.
    pub fn store_op(&self, op: &'static str) -> AtomicHistogram {
        self.store_ops.get_or_create_owned(&OpLabels { op })
    }

    /// The sign-in counters of one generation, resolved now.
    pub fn for_config(self: &Arc<Self>, config: &Config) -> GenerationMetrics {
        let mut sign_in: HashMap<Box<str>, HashMap<Box<str>, SignInCounters>> = HashMap::new();
        for resource in &config.resources {
            let subject: Arc<str> = Arc::from(resource.spec.name.as_str());
            let of_resource = sign_in
                .entry(resource.spec.name.clone().into())
                .or_default();
            for strategy in &resource.strategies {
                let name: Arc<str> = Arc::from(strategy.name.as_str());
                let counter = |outcome: &'static str| {
                    self.sign_in.get_or_create_owned(&SignInLabels {
                        resource: Arc::clone(&subject),
                        strategy: Arc::clone(&name),
                        outcome,
                    })
                };
                of_resource.insert(
                    strategy.name.clone().into(),
                    SignInCounters {
                        ok: counter("ok"),
                        failed: counter("failed"),
                        locked: counter("locked"),
                        unconfirmed: counter("unconfirmed"),
                        continued: counter("continue"),
                    },
                );
            }
        }
        GenerationMetrics {
            metrics: Arc::clone(self),
            sign_in,
        }
    }

    /// The text of a scrape: the gauges set to what the caller read now (the hashing pool's
    /// pending jobs, the generation's number, the outbox's depth when the store answered), then
    /// every series.
    pub fn render(
        &self,
        hash_pending: usize,
        generation: u64,
        outbox_depth: Option<u64>,
    ) -> String {
        self.hash_queue_depth
            .set(i64::try_from(hash_pending).unwrap_or(i64::MAX));
        self.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        if let Some(depth) = outbox_depth {
            self.outbox_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        let mut text = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::warn!("MT0002 the metrics could not be encoded");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The route patterns of one config, for labels and logs: a request's path is looked up
/// here, and only what is found here (or `unmatched`) is ever shown.
pub struct RouteTable {
    routes: Vec<Route>,
    /// Indices into `routes`, by exact path.
    exact: HashMap<Box<str>, usize>,
    /// Indices of the routes ending in a path parameter, by the path before it.
    param: HashMap<Box<str>, usize>,
}

/// A route of a [`RouteTable`], by its place in it: what a request keeps while it is
/// answered (with the generation it was found in), instead of a reference count to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteId(usize);

/// One route pattern, and its counters with `[metrics]`.
pub struct Route {
    pub pattern: Arc<str>,
    counters: Option<RouteCounters>,
}

/// A route's series, resolved in advance.
struct RouteCounters {
    metrics: Arc<Metrics>,
    duration: AtomicHistogram,
    /// The common statuses, resolved at first use; others go through the family.
    common: [OnceLock<ShardedCounter>; COMMON_STATUSES.len()],
}

const COMMON_STATUSES: [u16; 12] = [200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 429, 503];

impl Route {
    fn new(metrics: Option<&Arc<Metrics>>, pattern: &str) -> Route {
        let pattern: Arc<str> = Arc::from(pattern);
        Route {
            counters: metrics.map(|m| RouteCounters {
                metrics: Arc::clone(m),
                duration: m.http_duration.get_or_create_owned(&RouteLabels {
                    route: Arc::clone(&pattern),
                }),
                common: Default::default(),
            }),
            pattern,
        }
    }

    /// Whether requests of this route are counted (`[metrics]`).
    pub fn is_measured(&self) -> bool {
        self.counters.is_some()
    }

    /// One request of this route answered `status` after `seconds`.
    pub fn request(&self, status: u16, seconds: f64) {
        let Some(c) = &self.counters else {
            return;
        };
        c.duration.observe(seconds);
        let labels = || HttpLabels {
            route: Arc::clone(&self.pattern),
            status,
        };
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(i) => {
                c.common[i]
                    .get_or_init(|| c.metrics.http_requests.get_or_create_owned(&labels()))
                    .inc();
            }
            None => {
                c.metrics.http_requests.get_or_create(&labels()).inc();
            }
        }
        if status == 503 {
            c.metrics.busy.inc();
        }
    }
}

impl RouteTable {
    /// The routes of `config`, counted into `metrics` when given.
    pub fn new(config: &Config, metrics: Option<&Arc<Metrics>>) -> RouteTable {
        // `unmatched` is first: `RouteId(0)`.
        let mut routes = vec![Route::new(metrics, UNMATCHED)];
        let mut exact = HashMap::new();
        let mut param = HashMap::new();
        for route in crate::registry::routes(config) {
            let (table, key) = match route.path.rsplit_once("/{") {
                Some((prefix, _)) => (&mut param, prefix.to_string()),
                None => (&mut exact, route.path.clone()),
            };
            table.entry(key.into_boxed_str()).or_insert_with(|| {
                routes.push(Route::new(metrics, &route.path));
                routes.len() - 1
            });
        }
        RouteTable {
            routes,
            exact,
            param,
        }
    }

    /// The route pattern `path` was served by, or `unmatched`: never the path itself.
    pub fn find(&self, path: &str) -> RouteId {
        if let Some(i) = self.exact.get(path) {
            return RouteId(*i);
        }
        let i = path
            .rsplit_once('/')
            .and_then(|(prefix, _)| self.param.get(prefix))
            .copied()
            .unwrap_or(0);
        RouteId(i)
    }

    /// The route `id` names in this table (`unmatched` if it is not one of its own).
    pub fn get(&self, id: RouteId) -> &Route {
        self.routes.get(id.0).unwrap_or(&self.routes[0])
    }
}

/// A strategy's sign-in counters, one per outcome.
struct SignInCounters {
    ok: Counter,
    failed: Counter,
    locked: Counter,
    unconfirmed: Counter,
    continued: Counter,
}

/// How a sign-in attempt ended, for `authd_sign_in_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    Ok,
    Failed,
    Locked,
    Unconfirmed,
    Continue,
}

/// The sign-in counters one generation uses: built with it, dropped with it.
pub struct GenerationMetrics {
    metrics: Arc<Metrics>,
    sign_in: HashMap<Box<str>, HashMap<Box<str>, SignInCounters>>,
}

impl GenerationMetrics {
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A sign-in attempt of `strategy` of `resource` (both from the registry: unknown names
    /// count nothing).
    pub fn sign_in(&self, resource: &str, strategy: &str, outcome: SignInOutcome) {
        let Some(counters) = self.sign_in.get(resource).and_then(|s| s.get(strategy)) else {
            return;
        };
        match outcome {
            SignInOutcome::Ok => counters.ok.inc(),
            SignInOutcome::Failed => counters.failed.inc(),
            SignInOutcome::Locked => counters.locked.inc(),
            SignInOutcome::Unconfirmed => counters.unconfirmed.inc(),
            SignInOutcome::Continue => counters.continued.inc(),
        };
    }
}
