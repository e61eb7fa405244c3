//! What every request reads: the [`Generation`] in force (one loaded config and everything
//! built from it) and what persists across generations ([`Shared`]: the store, the clock, the
//! status an operator sees).
//!
//! The daemon builds and swaps generations; the HTTP layer reads them. Neither of those
//! modules defines these types, so that neither imports the other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use authd_strategy_api::{Clock, Collision, HashPool, Services, Store};
use serde::Serialize;

use crate::config::ServerConfig;
use crate::metrics::{GenerationMetrics, Metrics, RouteTable};
use crate::registry::Registry;
use crate::tokens::TokenService;

/// One loaded configuration: what a request snapshot holds from start to end.
pub struct Generation {
    pub registry: Registry,
    /// The `[server]` settings that apply live (body limit, proxies).
    pub server: ServerConfig,
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
    /// What the strategies were given.
    pub services: Services,
    /// The admin token, read when this generation was built; `None` without `[admin]`.
    pub admin_token: Option<Vec<u8>>,
    /// `[introspection.clients]`: `(name, secret)`, read when this generation was built.
    pub introspection_clients: Vec<(String, Vec<u8>)>,
    /// The OpenAPI document of this config, serialized (`GET /openapi.json`).
    pub openapi: bytes::Bytes,
    /// The hosted pages, with `[pages]`.
    pub pages: Option<PagesState>,
    /// The CORS layer of the JSON API, with `server.cors_allowed_origins`.
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// The route patterns (labels and logs), counted with `[metrics]`.
    pub routes: RouteTable,
    /// With `[metrics]`: this generation's sign-in counters, resolved.
    pub metrics: Option<GenerationMetrics>,
}

/// What the hosted pages of a generation need: their settings, their compiled templates (the
/// built-in ones or `templates_dir`'s, loaded with the config) and the key of their CSRF
/// tokens (kept in the store, so that every daemon of a deployment agrees).
pub struct PagesState {
    pub config: crate::config::PagesConfig,
    pub templates: crate::pages::Templates,
    pub csrf_key: Vec<u8>,
}

/// What every request shares, across generations.
pub struct Shared {
    pub current: ArcSwap<Generation>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// What operators see beyond the generation in force (`GET /admin/status`).
    pub status: Mutex<Status>,
    /// Every series, with `[metrics]` (a restart-only table).
    pub metrics: Option<Arc<Metrics>>,
}

impl Shared {
    /// Runs `f` on the status (a poisoned lock is recovered: status is only reporting).
    pub fn with_status<T>(&self, f: impl FnOnce(&mut Status) -> T) -> T {
        let mut guard = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// The last reload failure, the stale-hash census and the unique-index migration, for
/// operators.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Status {
    /// Set when the latest file was rejected; cleared by the next applied reload.
    pub last_reload_error: Option<ReloadFailure>,
    /// Users whose stored hash was made with other parameters than the current ones.
    pub stale_hashes: Option<StaleCensus>,
    /// Users left out of the unique index when it was rebuilt (values that now prepare the
    /// same): an operator must rename one of each pair.
    pub unique_collisions: Vec<Collision>,
}

/// A rejected reload. The problems name keys and say what is wrong, never a value.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadFailure {
    /// Unix seconds.
    pub at: u64,
    pub file_hash: Option<String>,
    /// Every problem, each with its TOML path.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaleCensus {
    /// Unix seconds.
    pub computed_at: u64,
    /// `"<subject>/<strategy>"` -> counts.
    pub strategies: BTreeMap<String, StaleCount>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StaleCount {
    /// Users holding a credential of this strategy.
    pub users: u64,
    /// Of those, how many hashes will be upgraded at their next sign-in.
    pub stale: u64,
}
