//! Building a [`Generation`] from a validated config: the token service, the hashing pool,
//! the services lent to strategies, the registry. Nothing is swapped in here.

use std::sync::Arc;

use authd_strategy_api::{HashPool, Problem, Problems, Services};
use sha2::{Digest, Sha256};

use authd_strategy_api::{Clock, Events, Senders, Store};

use crate::events::{DaemonEvents, EventQueue};
use crate::metrics::Metrics;

use crate::config::{Config, SecretSource};
use crate::delivery::DaemonSenders;
use crate::registry::Registry;
use crate::state::Generation;
use crate::tokens::{self, TokenService};

/// Why a generation could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Secret(#[from] tokens::Error),
    #[error("cannot start the hashing threads: {0}")]
    Pool(std::io::Error),
}

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
    let secret = tokens::load_secret(&config.tokens, core.store.as_ref()).await?;
    let tokens = Arc::new(TokenService::new(
        &config.tokens,
        &secret,
        core.clock.clone(),
        Arc::clone(&events),
    ));
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
    let services = Services {
        store: Arc::clone(core.store),
        tokens: tokens.clone(),
        pool: pool.clone(),
        senders: core.senders.clone(),
        clock: core.clock.clone(),
        events,
        sealer: Arc::new(authd_strategy_api::ClearSealer),
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
        routes: crate::metrics::RouteTable::new(config, core.metrics),
        metrics: core.metrics.map(|m| m.for_config(config)),
    })
}
