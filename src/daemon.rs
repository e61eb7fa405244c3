//! The composition root: turns a validated config into a running daemon (store opened, key
//! loaded, hashing pool started, registry built, port bound), reloads it live, and stops it
//! cleanly.
//!
//! A reload builds a complete new [`Generation`] off to the side and swaps it in with one
//! atomic store; if any step fails, nothing changes and the failure is reported in
//! `/healthz`. Requests in flight keep the generation they started with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use authd_strategy_api::{HashPool, Problem, Problems, Services};
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::outbox::{self, Outbox};
use crate::registry::{self, Registry};
use crate::senders::DaemonSenders;
use crate::server::{self, Generation, ReloadFailure, Shared, StaleCensus, StaleCount, Status};
use crate::store::Store;
use crate::tokens::{self, TokenService};

/// How often records of dead tokens that have expired anyway are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the stale-hash census is refreshed (it is also refreshed after each reload).
const CENSUS_EVERY: Duration = Duration::from_secs(600);
/// Quiet time after a file event before reloading: editors and ConfigMap swaps make bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// The longest a burst of events can delay a reload.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Secret(#[from] tokens::Error),
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the hashing threads: {0}")]
    Pool(std::io::Error),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// The settings that only a restart can change, as they were at start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RestartOnly {
    listen: SocketAddr,
    store_path: PathBuf,
    max_connections: usize,
}

impl RestartOnly {
    fn of(config: &Config) -> Self {
        RestartOnly {
            listen: config.server.listen,
            store_path: config.store.path.clone(),
            max_connections: config.server.max_connections,
        }
    }
}

/// The problems a reload from `old` to `new` would be refused for: keys that need a restart.
pub fn restart_only_changes(old: &Config, new: &Config) -> Problems {
    changes_against(&RestartOnly::of(old), new)
}

fn changes_against(old: &RestartOnly, new: &Config) -> Problems {
    let new = RestartOnly::of(new);
    let mut problems = Problems::default();
    if old.listen != new.listen {
        problems.push(
            "server.listen",
            format!(
                "changed from {} to {}: needs a restart",
                old.listen, new.listen
            ),
        );
    }
    if old.store_path != new.store_path {
        problems.push(
            "store.path",
            format!(
                "changed from {} to {}: needs a restart",
                old.store_path.display(),
                new.store_path.display()
            ),
        );
    }
    if old.max_connections != new.max_connections {
        problems.push(
            "server.max_connections",
            format!(
                "changed from {} to {}: needs a restart",
                old.max_connections, new.max_connections
            ),
        );
    }
    problems
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in the config file's folder: skipped if the file's content is the one in force.
    FileEvent,
    /// SIGHUP or an explicit request: always reloads (a secret file may have changed).
    Forced,
}

/// What persists across generations, and serializes reloads.
struct Core {
    shared: Arc<Shared>,
    store: Store,
    senders: Arc<DaemonSenders>,
    restart_only: RestartOnly,
    reloading: Mutex<()>,
}

/// A running daemon.
pub struct Daemon {
    addr: SocketAddr,
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    triggers: Option<mpsc::Sender<Trigger>>,
    watcher: Option<notify::RecommendedWatcher>,
}

/// SHA-256 of the config file's text, first 16 hex characters: names a config in `/healthz`.
pub fn file_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds a complete generation for `config`; nothing is swapped in here.
fn build_generation(
    store: &Store,
    senders: &Arc<DaemonSenders>,
    config: &Config,
    text: &str,
    number: u64,
    previous_pool: Option<&HashPool>,
) -> Result<Generation, StartError> {
    let secret = tokens::load_secret(&config.tokens, store)?;
    let tokens = Arc::new(TokenService::new(&config.tokens, &secret));
    let pool = match previous_pool {
        Some(pool)
            if pool.workers() == config.server.hash_workers
                && pool.depth() == config.server.hash_queue =>
        {
            pool.clone()
        }
        _ => HashPool::new(config.server.hash_workers, config.server.hash_queue)
            .map_err(StartError::Pool)?,
    };
    let services = Services {
        users: Arc::new(store.clone()),
        token_store: Arc::new(store.clone()),
        throttle: Arc::new(store.clone()),
        tokens: tokens.clone(),
        pool: pool.clone(),
        senders: senders.clone(),
    };
    Ok(Generation {
        registry: Registry::build(config, &services),
        max_body_bytes: config.server.max_body_bytes,
        trusted_proxies: config.server.trusted_proxies.clone(),
        number,
        file_hash: file_hash(text),
        loaded_at: authd_strategy_api::now_secs(),
        tokens,
        pool,
    })
}

impl Core {
    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut status) = self.shared.status.lock() {
            f(&mut status);
        }
    }

    /// Validates `text` as a reload would and, if it passes, swaps it in. Returns the new
    /// generation number.
    async fn reload(&self, text: &str) -> Result<u64, Problems> {
        let _one_at_a_time = self.reloading.lock().await;
        let outcome = self.try_reload(text);
        match &outcome {
            Ok(number) => {
                tracing::info!(generation = number, file_hash = %file_hash(text), "config reloaded");
                self.set_status(|s| s.last_reload_error = None);
            }
            Err(problems) => {
                for p in &problems.0 {
                    tracing::error!(problem = %p, "RL0001 config reload rejected; the previous config stays in force");
                }
                let failure = ReloadFailure {
                    at: authd_strategy_api::now_secs(),
                    file_hash: Some(file_hash(text)),
                    problems: problems.0.iter().map(ToString::to_string).collect(),
                };
                self.set_status(|s| s.last_reload_error = Some(failure));
            }
        }
        outcome
    }

    fn try_reload(&self, text: &str) -> Result<u64, Problems> {
        let config = registry::parse_config(text)?;
        let refused = changes_against(&self.restart_only, &config);
        if !refused.is_empty() {
            return Err(refused);
        }
        let current = self.shared.current.load();
        let number = current.number + 1;
        let generation = build_generation(
            &self.store,
            &self.senders,
            &config,
            text,
            number,
            Some(&current.pool),
        )
        .map_err(|e| Problems(vec![Problem::new("", e.to_string())]))?;
        self.shared.current.store(Arc::new(generation));
        Ok(number)
    }

    fn record_read_failure(&self, path: &Path, e: &std::io::Error) {
        tracing::error!(path = %path.display(), error = %e, "RL0002 cannot read the config file; the previous config stays in force");
        let failure = ReloadFailure {
            at: authd_strategy_api::now_secs(),
            file_hash: None,
            problems: vec![format!("cannot read {}: {e}", path.display())],
        };
        self.set_status(|s| s.last_reload_error = Some(failure));
    }

    /// Counts, per strategy, the users whose stored hash is not of the current parameters.
    async fn census(&self) {
        let generation = self.shared.current.load_full();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut strategies = std::collections::BTreeMap::new();
            for ((subject, name), strategy) in generation.registry.strategies() {
                let mut count = StaleCount::default();
                store.for_each_user(subject, |user| {
                    if let Some(stale) = strategy.credential_is_stale(user) {
                        count.users += 1;
                        count.stale += u64::from(stale);
                    }
                })?;
                strategies.insert(format!("{subject}/{name}"), count);
            }
            Ok::<_, crate::store::Error>(StaleCensus {
                computed_at: authd_strategy_api::now_secs(),
                strategies,
            })
        })
        .await;
        match result {
            Ok(Ok(census)) => self.set_status(|s| s.stale_hashes = Some(census)),
            Ok(Err(e)) => tracing::warn!(error = %e, "RL0003 stale-hash census failed"),
            Err(e) => tracing::warn!(error = %e, "RL0003 stale-hash census failed"),
        }
    }
}

impl Daemon {
    /// Starts serving `config` (whose file text was `text`).
    ///
    /// # Errors
    /// When the store cannot be opened (or is in use), the signing secret cannot be loaded,
    /// or the address cannot be bound.
    pub async fn start(config: Config, text: &str) -> Result<Daemon, StartError> {
        let store = Store::open(&config.store.path)?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
        // Reset messages go through the durable outbox; its worker starts below.
        let outbox = Outbox::open(&store, outbox::Limits::default())?;
        let senders = Arc::new(DaemonSenders::new(outbox.clone()));

        let first = build_generation(&store, &senders, &config, text, 1, None)?;
        let core = Arc::new(Core {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(first),
                store: store.clone(),
                status: std::sync::Mutex::new(Status::default()),
            }),
            store,
            senders,
            restart_only: RestartOnly::of(&config),
            reloading: Mutex::new(()),
        });

        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            Arc::clone(&core.shared),
            config.server.max_connections,
            stopped.clone(),
        ))];
        let deliverer: Arc<dyn outbox::Deliver> = core.senders.clone();
        tasks.push(tokio::spawn(outbox.run(deliverer, stopped.clone())));
        tasks.push(tokio::spawn(maintenance(Arc::clone(&core), stopped)));
        tracing::info!(%addr, resources = config.resources.len(), "authd listening");
        Ok(Daemon {
            addr,
            core,
            stop,
            tasks,
            triggers: None,
            watcher: None,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reloads from `text` now: validates it as a whole and swaps it in, or leaves the
    /// current config in force and reports why (also in `/healthz`).
    ///
    /// # Errors
    /// Every problem that made the reload be refused.
    pub async fn reload(&self, text: &str) -> Result<u64, Problems> {
        let outcome = self.core.reload(text).await;
        if outcome.is_ok() {
            self.core.census().await;
        }
        outcome
    }

    /// Watches `path` (through its folder, so that saves by rename and ConfigMap symlink swaps
    /// are seen) and reloads when it changes. Returns a sender for more triggers (SIGHUP).
    ///
    /// # Errors
    /// When the folder cannot be watched.
    pub fn watch(&mut self, path: &Path) -> Result<mpsc::Sender<Trigger>, StartError> {
        let (tx, rx) = mpsc::channel::<Trigger>(1);
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let events = tx.clone();
        let name = path.file_name().map(std::ffi::OsStr::to_os_string);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(e) => {
                        !matches!(e.kind, EventKind::Access(_))
                            && e.paths.iter().any(|p| concerns_config(p, name.as_deref()))
                    }
                    Err(_) => true, // a watcher error: re-read to be safe
                };
                if relevant {
                    // A full channel already holds a pending trigger: nothing is lost.
                    let _ = events.try_send(Trigger::FileEvent);
                }
            })
            .map_err(|source| StartError::Watch {
                path: folder.clone(),
                source,
            })?;
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .map_err(|source| StartError::Watch {
                path: folder.clone(),
                source,
            })?;
        self.tasks.push(tokio::spawn(reload_loop(
            Arc::clone(&self.core),
            path.to_path_buf(),
            rx,
            self.stop.subscribe(),
        )));
        self.watcher = Some(watcher);
        self.triggers = Some(tx.clone());
        Ok(tx)
    }

    /// Answers one request in-process, exactly as the server would, without a socket (for
    /// benchmarks of the request path).
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        server::handle(
            &self.core.shared,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            req,
        )
        .await
    }

    /// Stops accepting, lets in-flight requests finish, and releases the store.
    pub async fn shutdown(mut self) {
        self.watcher = None;
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Whether an event on `path` in the config's folder may have changed the config: the file
/// itself (written in place, or renamed over), or a Kubernetes ConfigMap swap (`..data`,
/// `..2024_...`). Other files in the folder, such as the database, are ignored.
fn concerns_config(path: &Path, config_name: Option<&std::ffi::OsStr>) -> bool {
    match path.file_name() {
        None => true,
        Some(name) => Some(name) == config_name || name.to_string_lossy().starts_with(".."),
    }
}

/// Waits for triggers, lets bursts settle, then reloads from the file.
async fn reload_loop(
    core: Arc<Core>,
    path: PathBuf,
    mut triggers: mpsc::Receiver<Trigger>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let mut trigger = tokio::select! {
            t = triggers.recv() => match t {
                Some(t) => t,
                None => return,
            },
            () = server::stopped(&mut stopped) => return,
        };
        // Debounce: wait until no event came for DEBOUNCE, but never longer than
        // DEBOUNCE_MAX in all, so that a steady stream of events cannot starve reloads.
        let give_up = tokio::time::Instant::now() + DEBOUNCE_MAX;
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(DEBOUNCE, triggers.recv()).await {
                Ok(Some(Trigger::Forced)) => trigger = Trigger::Forced,
                Ok(Some(Trigger::FileEvent)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) => {
                core.record_read_failure(&path, &e);
                continue;
            }
        };
        let unchanged = core.shared.current.load().file_hash == file_hash(&text);
        let failing = core
            .shared
            .status
            .lock()
            .map(|s| s.last_reload_error.is_some())
            .unwrap_or(false);
        if trigger == Trigger::FileEvent && unchanged && !failing {
            continue;
        }
        if core.reload(&text).await.is_ok() {
            core.census().await;
        }
    }
}

/// Periodic upkeep: the stale-hash census and the purge of expired token records.
async fn maintenance(core: Arc<Core>, mut stopped: watch::Receiver<bool>) {
    core.census().await;
    let mut census = tokio::time::interval(CENSUS_EVERY);
    let mut purge = tokio::time::interval(PURGE_EVERY);
    census.tick().await;
    loop {
        tokio::select! {
            _ = census.tick() => core.census().await,
            _ = purge.tick() => match core.store.purge_expired_tokens().await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired token records purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ST0010 purge of expired tokens failed"),
            },
            () = server::stopped(&mut stopped) => return,
        }
    }
}
