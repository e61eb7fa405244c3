//! The composition of the store: the backend the config names, opened. The only module of
//! the daemon that names a backend crate.

use std::sync::Arc;

use authd_strategy_api::Store;

use crate::config::StoreConfig;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Redb(#[from] authd_store_redb::OpenError),
}

/// Opens the store of `config`. Returns it and warnings for the operator.
///
/// # Errors
/// When the backend cannot be opened.
pub async fn open(config: &StoreConfig) -> Result<(Arc<dyn Store>, Vec<String>), OpenError> {
    match config {
        StoreConfig::Redb { path } => {
            let path = path.clone();
            let opened = tokio::task::spawn_blocking(move || authd_store_redb::open(&path))
                .await
                .map_err(|e| authd_store_redb::OpenError::Open {
                    path: config_path(config),
                    reason: e.to_string(),
                })??;
            let (store, warnings) = opened;
            Ok((Arc::new(store), warnings))
        }
    }
}

fn config_path(config: &StoreConfig) -> std::path::PathBuf {
    match config {
        StoreConfig::Redb { path } => path.clone(),
    }
}

/// Runs the engine's integrity check (`authd store check`); the daemon must not be running.
///
/// # Errors
/// When the store cannot be checked; the text says what was found otherwise.
pub fn check(config: &StoreConfig) -> Result<String, OpenError> {
    match config {
        StoreConfig::Redb { path } => match authd_store_redb::check(path)? {
            authd_store_redb::CheckReport::Intact => {
                Ok(format!("{}: redb integrity check passed", path.display()))
            }
            authd_store_redb::CheckReport::Repaired => Ok(format!(
                "{}: redb found damage from an interrupted commit and repaired it",
                path.display()
            )),
        },
    }
}
