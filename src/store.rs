//! The composition of the store: the backend the config names, opened. The only module of
//! the daemon that names a backend crate.

use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::Store;

use crate::config::{DatabaseUrl, StoreConfig};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Redb(#[from] authd_store_redb::OpenError),
    #[error(transparent)]
    Postgres(#[from] authd_store_postgres::OpenError),
    #[error(
        "store.url_env: the environment variable {0} is not set (it must hold the database URL)"
    )]
    UrlEnv(String),
    #[error("store.url_env: the URL in {var} {reason}")]
    BadUrlEnv { var: String, reason: String },
}

pub use crate::store_url::{check_url, mask_url};

/// The URL of a `postgres` store, read from its source.
fn database_url(url: &DatabaseUrl) -> Result<String, OpenError> {
    match url {
        DatabaseUrl::Inline(url) => Ok(url.clone()),
        DatabaseUrl::Env(var) => {
            let url = std::env::var(var).map_err(|_| OpenError::UrlEnv(var.clone()))?;
            check_url(&url).map_err(|reason| OpenError::BadUrlEnv {
                var: var.clone(),
                reason,
            })?;
            Ok(url)
        }
    }
}

fn postgres_settings(pool_size: usize) -> authd_store_postgres::Settings {
    authd_store_postgres::Settings {
        pool_size,
        ..authd_store_postgres::Settings::default()
    }
}

/// Opens the store of `config`. Returns it and warnings for the operator. A PostgreSQL store
/// is waited for up to its `connect_timeout`, and its schema brought up to date.
///
/// # Errors
/// When the backend cannot be opened.
pub async fn open(config: &StoreConfig) -> Result<(Arc<dyn Store>, Vec<String>), OpenError> {
    match config {
        StoreConfig::Redb { path, cache_mib } => {
            let path = path.clone();
            let cache_bytes = usize::try_from(cache_mib.saturating_mul(1024 * 1024))
                .unwrap_or(authd_store_redb::DEFAULT_CACHE_BYTES);
            let opened = tokio::task::spawn_blocking(move || {
                authd_store_redb::open_with_cache(&path, cache_bytes)
            })
            .await
            .map_err(|e| authd_store_redb::OpenError::Open {
                path: config_path(config),
                reason: e.to_string(),
            })??;
            let (store, warnings) = opened;
            Ok((Arc::new(store), warnings))
        }
        StoreConfig::Postgres {
            url,
            pool_size,
            connect_timeout,
        } => {
            let url = database_url(url)?;
            let (store, _applied) =
                authd_store_postgres::open(&url, postgres_settings(*pool_size), *connect_timeout)
                    .await?;
            Ok((Arc::new(store), Vec::new()))
        }
    }
}

/// `authd migrate`: brings the store's schema up to date without serving. Returns what was
/// done, for people.
///
/// # Errors
/// When the store cannot be opened or migrated.
pub async fn migrate(config: &StoreConfig) -> Result<String, OpenError> {
    match config {
        StoreConfig::Redb { path, .. } => {
            open(config).await?;
            Ok(format!(
                "{}: redb creates and migrates its tables when it opens the file; it is up to date",
                path.display()
            ))
        }
        StoreConfig::Postgres {
            url,
            connect_timeout,
            ..
        } => {
            let url = database_url(url)?;
            let target = authd_store_postgres::ConnectionUrl::parse(&url)
                .map(|u| u.target())
                .unwrap_or_default();
            let (_, applied) =
                authd_store_postgres::open(&url, postgres_settings(1), *connect_timeout).await?;
            Ok(if applied.is_empty() {
                format!(
                    "PostgreSQL {target}: schema already at version {}",
                    authd_store_postgres::SCHEMA_VERSION
                )
            } else {
                let list: Vec<String> = applied.iter().map(u32::to_string).collect();
                format!(
                    "PostgreSQL {target}: applied migration{} {}; schema now at version {}",
                    if applied.len() == 1 { "" } else { "s" },
                    list.join(", "),
                    authd_store_postgres::SCHEMA_VERSION
                )
            })
        }
    }
}

fn config_path(config: &StoreConfig) -> std::path::PathBuf {
    match config {
        StoreConfig::Redb { path, .. } => path.clone(),
        StoreConfig::Postgres { .. } => std::path::PathBuf::new(),
    }
}

/// Runs the engine's integrity check (`authd store check`); the daemon must not be running.
///
/// # Errors
/// When the store cannot be checked; the text says what was found otherwise.
pub fn check(config: &StoreConfig) -> Result<String, OpenError> {
    match config {
        StoreConfig::Redb { path, .. } => match authd_store_redb::check(path)? {
            authd_store_redb::CheckReport::Intact => {
                Ok(format!("{}: redb integrity check passed", path.display()))
            }
            authd_store_redb::CheckReport::Repaired => Ok(format!(
                "{}: redb found damage from an interrupted commit and repaired it",
                path.display()
            )),
        },
        StoreConfig::Postgres { .. } => Ok(
            "PostgreSQL checks its own pages; `authd migrate --config FILE` tells whether the \
             database is reachable and its schema up to date"
                .into(),
        ),
    }
}

/// How long `authd store copy` waits for a PostgreSQL store to answer.
pub const COPY_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
