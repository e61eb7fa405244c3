//! The composition root: turns a validated config into a running daemon (store opened, key
//! loaded, hashing pool started, registry built, port bound) and stops it cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use authd_strategy_api::{HashPool, Services};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::registry::Registry;
use crate::senders::DaemonSenders;
use crate::server::{self, Generation, Shared};
use crate::store::Store;
use crate::tokens::{self, TokenService};

/// How often records of dead tokens that have expired anyway are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

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
}

/// A running daemon.
pub struct Daemon {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    purge: JoinHandle<()>,
}

/// SHA-256 of the config file's text, first 16 hex characters: names a config in `/healthz`.
pub fn file_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Daemon {
    /// Starts serving `config` (whose file text was `text`).
    ///
    /// # Errors
    /// When the store cannot be opened (or is in use), the signing secret cannot be loaded,
    /// or the address cannot be bound.
    pub async fn start(config: Config, text: &str) -> Result<Daemon, StartError> {
        let store = Store::open(&config.store.path)?;
        let secret = tokens::load_secret(&config.tokens, &store)?;
        let tokens = Arc::new(TokenService::new(&config.tokens, &secret));
        let pool = HashPool::new(config.server.hash_workers, config.server.hash_queue)
            .map_err(StartError::Pool)?;
        let services = Services {
            users: Arc::new(store.clone()),
            token_store: Arc::new(store.clone()),
            tokens: tokens.clone(),
            pool: pool.clone(),
            senders: Arc::new(DaemonSenders::new()),
        };
        let registry = Registry::build(&config, &services);
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

        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(Generation {
                registry,
                max_body_bytes: config.server.max_body_bytes,
                number: 1,
                file_hash: file_hash(text),
                loaded_at: server::now_secs(),
            }),
            tokens,
            store: store.clone(),
            pool,
        });
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(server::serve(
            listener,
            Arc::clone(&shared),
            config.server.max_connections,
            stopped.clone(),
        ));
        let purge = tokio::spawn(purge_loop(store, stopped));
        tracing::info!(%addr, resources = config.resources.len(), "authd listening");
        Ok(Daemon {
            addr,
            shared,
            stop,
            server,
            purge,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        server::handle(&self.shared, SocketAddr::from(([127, 0, 0, 1], 0)), req).await
    }

    /// Stops accepting, lets in-flight requests finish, and releases the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.purge.await;
    }
}

async fn purge_loop(store: Store, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            () = server::stopped(&mut stopped) => return,
        }
        match store.purge_expired_tokens().await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "expired token records purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "ST0010 purge of expired tokens failed"),
        }
    }
}
