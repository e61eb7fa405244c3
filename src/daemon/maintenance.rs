//! Upkeep: the hourly purge of records that no longer change any answer, the stale-hash census
//! (every 10 minutes and after each reload), and, once at start, the rebuild of the unique index
//! under the current preparation of values (PRECIS).
//!
//! Everything here is correct with several daemons on one store: the purge is idempotent, the
//! census only reads, the rebuild runs under a version flag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::{Collision, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::config::Config;
use crate::state::{StaleCensus, StaleCount};

/// How often records of dead tokens and forgotten throttles are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the stale-hash census is refreshed (it is also refreshed after each reload).
const CENSUS_EVERY: Duration = Duration::from_secs(600);
/// Users read per page by the census and the index rebuild.
const PAGE: usize = 500;

/// The meta key naming how unique values are prepared in the index.
const UNIQUE_PREPARATION: &str = "unique_preparation";
/// Values prepared as RFC 8265 `UsernameCaseMapped` (+ case folding) / `CasePreserved`.
const PRECIS_1: &[u8] = b"precis-1";

/// Rebuilds the unique index of every configured resource from its users' attributes,
/// prepared as today's rules prepare them, unless that was done already. Users whose values
/// now prepare to the same value as an older user's are reported, never merged.
///
/// # Errors
/// When the store fails.
pub(super) async fn migrate_unique_index(
    config: &Config,
    store: &dyn Store,
) -> Result<Vec<Collision>, StoreError> {
    if store.meta_get(UNIQUE_PREPARATION).await?.as_deref() == Some(PRECIS_1) {
        return Ok(Vec::new());
    }
    let mut collisions = Vec::new();
    for resource in &config.resources {
        let spec = &resource.spec;
        let mut entries = Vec::new();
        let mut users = Vec::new();
        let mut after = None;
        loop {
            let page = store.users_page(&spec.name, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            users.extend(page);
        }
        // The oldest user keeps a shared value.
        users.sort_by_key(|u| (u.created_at, u.id));
        for user in &users {
            // Values other than attributes (strategy-owned) are kept as they are.
            for key in store.unique_of(&spec.name, user.id).await? {
                if spec.attribute(&key.field).is_none() {
                    entries.push((key, user.id));
                }
            }
            for key in spec.unique_keys_of(user) {
                entries.push((key, user.id));
            }
        }
        if users.is_empty() {
            continue;
        }
        let found = store.rebuild_unique(&spec.name, entries).await?;
        for c in &found {
            tracing::error!(subject = %spec.name, field = %c.key.field, kept = %c.kept, left_out = %c.left_out, "ST0030 two users hold values that are now the same; the newer one is left out of the index (rename one of them)");
        }
        tracing::info!(subject = %spec.name, users = users.len(), collisions = found.len(), "ST0031 unique index rebuilt with PRECIS-prepared values");
        collisions.extend(found);
    }
    store
        .meta_swap(
            UNIQUE_PREPARATION,
            store.meta_get(UNIQUE_PREPARATION).await?,
            Some(PRECIS_1.to_vec()),
        )
        .await?;
    Ok(collisions)
}

impl Core {
    /// Refreshes the signing keys of the generation in force (see `TokenService::refresh`).
    pub(super) async fn refresh_keys(&self) {
        let generation = self.shared.current.load_full();
        match generation.tokens.refresh(self.shared.store.as_ref()).await {
            Ok(true) => tracing::info!("TK0010 signing keys changed"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "TK0011 signing keys not refreshed; the keys in force stay")
            }
        }
    }

    /// Counts, per strategy, the users whose stored hash is not of the current parameters.
    pub(super) async fn census(&self) {
        let generation = self.shared.current.load_full();
        let mut strategies = BTreeMap::new();
        for ((subject, name), strategy) in generation.registry.strategies() {
            let mut count = StaleCount::default();
            let mut after = None;
            loop {
                let page = match self.shared.store.users_page(subject, after, PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "RL0003 stale-hash census failed");
                        return;
                    }
                };
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for user in &page {
                    if let Some(stale) = strategy.credential_is_stale(user) {
                        count.users += 1;
                        count.stale += u64::from(stale);
                    }
                }
            }
            strategies.insert(format!("{subject}/{name}"), count);
        }
        let census = StaleCensus {
            computed_at: self.shared.clock.now_secs(),
            strategies,
        };
        self.shared.with_status(|s| s.stale_hashes = Some(census));
    }
}

/// Periodic upkeep until `stop`.
pub(super) async fn run(core: Arc<Core>, stop: CancellationToken) {
    core.census().await;
    let mut census = tokio::time::interval(CENSUS_EVERY);
    let mut purge = tokio::time::interval(PURGE_EVERY);
    census.tick().await;
    loop {
        // Signing keys: a rotation that is due, or a key another daemon made (read anew each
        // turn, as a reload may change the interval).
        let keys_every = core.shared.current.load().tokens.refresh_every();
        tokio::select! {
            () = tokio::time::sleep(keys_every) => core.refresh_keys().await,
            _ = census.tick() => core.census().await,
            _ = purge.tick() => match core.shared.store.purge(core.shared.clock.now_secs()).await {
                Ok(n) if n.dead_tokens + n.throttles > 0 => {
                    tracing::info!(dead_tokens = n.dead_tokens, throttles = n.throttles, "expired records purged");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ST0010 purge failed"),
            },
            () = stop.cancelled() => return,
        }
    }
}
