//! Building a [`Generation`] from a validated config: the token service, the hashing pool,
//! the services lent to strategies, the registry. Nothing is swapped in here.

use std::sync::Arc;

use authd_strategy_api::{HashPool, Problem, Problems, Services};
use sha2::{Digest, Sha256};

use authd_strategy_api::{Clock, Events, Store};

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
    pub events: &'a Arc<dyn Events>,
}

/// Builds a complete generation for `config`.
pub(super) async fn build(
    core: &Parts<'_>,
    config: &Config,
    text: &str,
    number: u64,
    previous_pool: Option<&HashPool>,
) -> Result<Generation, BuildError> {
    let secret = tokens::load_secret(&config.tokens, core.store.as_ref()).await?;
    let tokens = Arc::new(TokenService::new(
        &config.tokens,
        &secret,
        core.clock.clone(),
        Arc::clone(core.events),
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
    let pages = match &config.pages {
        None => None,
        Some(p) => {
            let templates = crate::http::pages::Templates::load(p.templates_dir.as_deref())
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
        events: Arc::clone(core.events),
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
        pages,
        cors: crate::http::cors_layer(&config.server.cors_allowed_origins),
    })
}
