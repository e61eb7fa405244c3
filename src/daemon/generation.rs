//! Building a [`Generation`] from a validated config: the token service, the hashing pool,
//! the services lent to strategies, the registry. Nothing is swapped in here.

use std::sync::Arc;

use authd_strategy_api::{ClearSealer, HashPool, Problem, Problems, Sealer, Services};
use sha2::{Digest, Sha256};

use authd_strategy_api::{Clock, Events, Senders, Store};

use crate::events::{DaemonEvents, EventQueue};
use crate::metrics::Metrics;

use crate::config::{Config, SecretSource};
use crate::delivery::DaemonSenders;
use crate::registry::Registry;
use crate::state::Generation;
use crate::tokens::kek::{Kek, KekSealer};
use crate::tokens::{self, TokenService};

/// Why a generation could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Secret(#[from] tokens::Error),
    #[error("cannot start the hashing threads: {0}")]
    Pool(std::io::Error),
    /// A template of `pages.templates_dir` cannot be read or does not compile.
    #[error("{0}")]
    Pages(String),
    #[error("the store: {0}")]
    Store(#[from] authd_strategy_api::StoreError),
}

/// The store's meta key holding the key of the pages' CSRF tokens.
const PAGES_CSRF_KEY: &str = "pages_csrf_key";

impl From<BuildError> for Problems {
    fn from(e: BuildError) -> Self {
        Problems(vec![Problem::new("", e.to_string())])
    }
}

/// SHA-256 of the config file's text, first 16 hex characters: names a config in status.
pub fn file_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a generation is built over: what persists across generations.
pub(super) struct Parts<'a> {
    pub store: &'a Arc<dyn Store>,
    pub clock: &'a Clock,
    pub senders: &'a Arc<DaemonSenders>,
    /// With `[metrics]`.
    pub metrics: Option<&'a Arc<Metrics>>,
    /// Where account events go on their way to the outbox; `None` sends none (the command
    /// line, which runs no outbox task).
    pub event_queue: Option<&'a EventQueue>,
}

/// Builds a complete generation for `config`.
pub(super) async fn build(
    core: &Parts<'_>,
    config: &Config,
    text: &str,
    number: u64,
    previous_pool: Option<&HashPool>,
) -> Result<Generation, BuildError> {
    let hooks = match (&config.events, core.event_queue) {
        (Some(events), Some(queue)) => {
            Some((events, core.senders.build(&events.sender), queue.clone()))
        }
        _ => None,
    };
    let events: Arc<dyn Events> = Arc::new(DaemonEvents::new(
        core.metrics.cloned(),
        hooks,
        core.clock.clone(),
    ));
    // One key-encryption machinery for signing keys and strategy secrets (TOTP seeds).
    let sealer: Arc<dyn Sealer> = match &config.tokens.key_encryption_key_env {
        Some(var) => Arc::new(KekSealer(Kek::from_env(var).map_err(tokens::Error::from)?)),
        None => Arc::new(ClearSealer),
    };
    let tokens = Arc::new(
        TokenService::build(
            config,
            core.store.as_ref(),
            Arc::clone(&sealer),
            core.clock.clone(),
            Arc::clone(&events),
        )
        .await?,
    );
    let pool = match previous_pool {
        Some(pool)
            if pool.workers() == config.server.hash_workers
                && pool.depth() == config.server.hash_queue =>
        {
            pool.clone()
        }
        _ => HashPool::new(config.server.hash_workers, config.server.hash_queue)
            .map_err(BuildError::Pool)?,
    };
    let admin_token = match &config.admin {
        None => None,
        Some(admin) => {
            let key = match admin.token {
                SecretSource::File(_) => "admin.token_file",
                _ => "admin.token_env",
            };
            Some(tokens::read_secret(key, &admin.token)?)
        }
    };
    let mut introspection_clients = Vec::with_capacity(config.introspection.clients.len());
    for (name, source) in &config.introspection.clients {
        let key = match source {
            SecretSource::File(_) => format!("introspection.clients.{name}.secret_file"),
            _ => format!("introspection.clients.{name}.secret_env"),
        };
        introspection_clients.push((name.clone(), tokens::read_secret(&key, source)?));
    }
    let pages = match &config.pages {
        None => None,
        Some(p) => {
            let templates = crate::pages::Templates::load(p.templates_dir.as_deref())
                .map_err(BuildError::Pages)?;
            let mut key = vec![0u8; 32];
            rand::Rng::fill(&mut rand::rng(), key.as_mut_slice());
            let csrf_key = core.store.meta_put_if_absent(PAGES_CSRF_KEY, key).await?;
            Some(crate::state::PagesState {
                config: p.clone(),
                templates,
                csrf_key,
            })
        }
    };
    // With `pages.public_url`, messages whose sender sets no link link to the pages.
    let senders: Arc<dyn authd_strategy_api::Senders> = match &config.pages {
        Some(p) if p.public_url.is_some() => Arc::new(crate::delivery::PageLinks::new(
            core.senders.clone(),
            p.public_url.clone().unwrap_or_default(),
            p.base_path.clone(),
        )),
        _ => core.senders.clone(),
    };
    let services = Services {
        store: Arc::clone(core.store),
        tokens: tokens.clone(),
        pool: pool.clone(),
        senders,
        clock: core.clock.clone(),
        events,
        sealer,
    };
    Ok(Generation {
        registry: Registry::build(config, &services),
        server: config.server.clone(),
        number,
        file_hash: file_hash(text),
        loaded_at: core.clock.now_secs(),
        tokens,
        pool,
        services,
        admin_token,
        introspection_clients,
        openapi: crate::openapi::to_bytes(config),
        pages,
        cors: crate::http::cors_layer(&config.server.cors_allowed_origins),
        routes: crate::metrics::RouteTable::new(config, core.metrics),
        metrics: core.metrics.map(|m| m.for_config(config)),
    })
}
