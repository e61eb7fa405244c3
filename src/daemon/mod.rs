//! The composition root: turns a validated config into a running daemon (store opened and
//! migrated, key loaded, hashing pool started, registry built, ports bound), reloads it live,
//! and stops it cleanly.
//!
//! A reload builds a complete new generation off to the side and swaps it in with one atomic
//! store; if any step fails, nothing changes and the failure is reported to operators.
//! Requests in flight keep the generation they started with. Every task is tracked and
//! stopped by one cancellation token.

mod generation;
mod maintenance;
mod reload;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use authd_strategy_api::{Clock, Problems};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::delivery::{self, DaemonSenders};
use crate::events::EventQueue;
use crate::http::{self, ConnectionLimits, Surface};
use crate::metrics::{Metrics, TimedStore};
use crate::state::{Generation, Shared, Status};

pub use generation::{BuildError, file_hash};
pub use reload::{DEBOUNCE, Trigger};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::OpenError),
    #[error("the store failed while starting: {0}")]
    StoreFailed(#[from] authd_strategy_api::StoreError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: std::path::PathBuf,
        source: notify::Error,
    },
}

/// What persists across generations, and serializes reloads.
pub(crate) struct Core {
    shared: Arc<Shared>,
    senders: Arc<DaemonSenders>,
    event_queue: EventQueue,
    /// The config the daemon started with: restart-only keys are compared against it.
    start_config: Config,
    reloading: Mutex<()>,
}

/// A running daemon.
pub struct Daemon {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    core: Arc<Core>,
    stop: CancellationToken,
    tasks: TaskTracker,
    watcher: Option<notify::RecommendedWatcher>,
}

async fn bind(
    key: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let fail = |source| StartError::Bind { key, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    Ok((listener, local))
}

impl Core {
    fn parts(&self) -> generation::Parts<'_> {
        generation::Parts {
            store: &self.shared.store,
            clock: &self.shared.clock,
            senders: &self.senders,
            metrics: self.shared.metrics.as_ref(),
            event_queue: Some(&self.event_queue),
        }
    }
}

impl Daemon {
    /// Starts serving `config` (whose file text was `text`) on the system clock.
    ///
    /// # Errors
    /// When the store cannot be opened (or is in use), a secret cannot be loaded, or an
    /// address cannot be bound.
    pub async fn start(config: Config, text: &str) -> Result<Daemon, StartError> {
        Self::start_with_clock(config, text, Clock::system()).await
    }

    /// Starts with `clock` (tests move it forward).
    ///
    /// # Errors
    /// As [`Daemon::start`].
    pub async fn start_with_clock(
        config: Config,
        text: &str,
        clock: Clock,
    ) -> Result<Daemon, StartError> {
        let (store, warnings) = crate::store::open(&config.store).await?;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let metrics = config.metrics.as_ref().map(|_| Arc::new(Metrics::new()));
        let store = match &metrics {
            Some(m) => TimedStore::wrap(store, m),
            None => store,
        };
        let (listener, addr) = bind("server.listen", config.server.listen).await?;
        let admin = match &config.admin {
            Some(admin) => Some(bind("admin.listen", admin.listen).await?),
            None => None,
        };
        let metrics_listener = match &config.metrics {
            Some(m) => Some(bind("metrics.listen", m.listen).await?),
            None => None,
        };
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (event_queue, event_task) = EventQueue::new(stop.clone());
        tasks.spawn(event_task);
        let limits = delivery::Limits::default();
        let senders = Arc::new(DaemonSenders::new(store.clone(), limits, clock.clone()));
        let shared_status = Status {
            unique_collisions: maintenance::migrate_unique_index(&config, store.as_ref()).await?,
            ..Status::default()
        };
        let parts = generation::Parts {
            store: &store,
            clock: &clock,
            senders: &senders,
            metrics: metrics.as_ref(),
            event_queue: Some(&event_queue),
        };
        let first = generation::build(&parts, &config, text, 1, None).await?;
        let core = Arc::new(Core {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(first),
                store,
                clock: clock.clone(),
                status: std::sync::Mutex::new(shared_status),
                metrics,
            }),
            senders,
            event_queue,
            start_config: config,
            reloading: Mutex::new(()),
        });

        let server = &core.start_config.server;
        tasks.spawn(http::serve(
            listener,
            Arc::clone(&core.shared),
            Surface::Public,
            ConnectionLimits {
                max: server.max_connections,
                per_ip: server.max_connections_per_ip,
            },
            stop.clone(),
        ));
        let admin_addr = admin.map(|(listener, admin_addr)| {
            tasks.spawn(http::serve(
                listener,
                Arc::clone(&core.shared),
                Surface::Admin,
                ConnectionLimits {
                    max: 64,
                    per_ip: 64,
                },
                stop.clone(),
            ));
            admin_addr
        });
        let worker = delivery::worker::Worker {
            store: core.shared.store.clone(),
            senders: Arc::clone(&core.senders),
            wake: core.senders.wake(),
            limits,
            clock,
            metrics: core.shared.metrics.clone(),
        };
        tasks.spawn(worker.run(stop.clone()));
        let metrics_addr = match (metrics_listener, &core.shared.metrics) {
            (Some((listener, metrics_addr)), Some(metrics)) => {
                tasks.spawn(http::metrics_listener::serve(
                    listener,
                    Arc::clone(&core.shared),
                    Arc::clone(metrics),
                    stop.clone(),
                ));
                Some(metrics_addr)
            }
            _ => None,
        };
        tasks.spawn(maintenance::run(Arc::clone(&core), stop.clone()));
        tracing::info!(%addr, admin = ?admin_addr, metrics = ?metrics_addr, resources = core.start_config.resources.len(), store = %core.start_config.store.describe(), "authd listening");
        Ok(Daemon {
            addr,
            admin_addr,
            metrics_addr,
            core,
            stop,
            tasks,
            watcher: None,
        })
    }

    /// The config's store and generation without serving anything (the command line works on
    /// a store no daemon holds). Messages it sends wait in the outbox for a daemon.
    ///
    /// # Errors
    /// As [`Daemon::start`], except binding.
    pub async fn offline(config: &Config, text: &str) -> Result<Arc<Generation>, StartError> {
        let clock = Clock::system();
        let (store, warnings) = crate::store::open(&config.store).await?;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let senders = Arc::new(DaemonSenders::new(
            store.clone(),
            delivery::Limits::default(),
            clock.clone(),
        ));
        maintenance::migrate_unique_index(config, store.as_ref()).await?;
        let parts = generation::Parts {
            store: &store,
            clock: &clock,
            senders: &senders,
            metrics: None,
            event_queue: None,
        };
        Ok(Arc::new(
            generation::build(&parts, config, text, 1, None).await?,
        ))
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, with `[admin]`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metrics listener's address, with `[metrics]`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The clock the daemon reads (tests move it).
    pub fn clock(&self) -> Clock {
        self.core.shared.clock.clone()
    }

    /// Reloads from `text` now: validates it as a whole and swaps it in, or leaves the
    /// current config in force and reports why.
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
        let watcher = reload::watcher(path, tx.clone())?;
        self.tasks.spawn(reload::reload_loop(
            Arc::clone(&self.core),
            path.to_path_buf(),
            rx,
            self.stop.clone(),
        ));
        self.watcher = Some(watcher);
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
        http::handle(&self.core.shared, http::local_peer(), req).await
    }

    /// Stops accepting, lets in-flight requests finish, and releases the store.
    pub async fn shutdown(mut self) {
        self.watcher = None;
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
