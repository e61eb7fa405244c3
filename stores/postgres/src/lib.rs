//! authd's shared store: the whole storage contract of `authd-store-api` on PostgreSQL, so that
//! several stateless daemons can serve from one database.
//!
//! Everything that must hold across daemons is the database's job: a unique value is a
//! UNIQUE key (of racing registrations exactly one insert wins), a single-use token is a row
//! inserted once, throttle records are changed under a transaction lock per key (counts made
//! on several daemons add up), the signing key is put-if-absent, and outbox jobs are claimed
//! with `FOR UPDATE SKIP LOCKED` and a lease. Schema migrations are versioned and run at open
//! under an advisory lock, so N daemons may start at once.
//!
//! Every call is bounded: pool waits, connection attempts and recycling have timeouts, every
//! statement has a server-side `statement_timeout`, and the whole call has a deadline of its
//! own. While the database is unreachable every call returns [`StoreError::Unavailable`]
//! within those bounds; the pool makes new connections by itself when the database is back.
//! A connection whose call failed or was cut short is discarded, never reused in an unknown
//! state (an open transaction, an answer still on the wire).
//!
//! TLS goes through rustls (webpki roots, or the URL's `sslrootcert`) when the URL asks for
//! it with `sslmode=require`, `verify-ca` or `verify-full`; the server's certificate is always
//! verified. SQL is written at run time: building never needs a database.
//!
//! What this crate must not do: know HTTP, strategies or policies (it applies
//! `authd_store_api::throttle::apply`, it does not decide), or show a password of the URL in
//! an error or a log line.

mod backup;
mod meta;
mod outbox;
mod schema;
mod throttle;
mod tokens;
mod url;
mod users;

pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use authd_store_api::{Maintenance, PurgeCounts, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

pub use schema::CURRENT as SCHEMA_VERSION;
pub use url::{ConnectionUrl, UrlError, mask_url};

/// How the pool and its calls are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Connections this daemon keeps at most.
    pub pool_size: usize,
    /// The longest one statement may run on the server (`statement_timeout`), and how long a
    /// call waits for a free connection.
    pub statement_timeout: Duration,
    /// The longest one connection attempt may take.
    pub connect_attempt_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pool_size: 16,
            statement_timeout: Duration::from_secs(5),
            connect_attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// The deadline of a whole call: a wait for a connection, then its statements.
    fn call_deadline(&self) -> Duration {
        self.statement_timeout * 2 + Duration::from_secs(1)
    }
}

/// Why the store could not be opened. Messages never contain the URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot set up TLS for PostgreSQL: {0}")]
    Tls(String),
    #[error(
        "PostgreSQL at {target} did not answer within {waited:?}: {reason}. Is it running, and \
         does the URL name the right host, database and user?"
    )]
    Unreachable {
        target: String,
        waited: Duration,
        reason: String,
    },
    #[error("the schema of PostgreSQL at {target} cannot be brought up to date: {reason}")]
    Schema { target: String, reason: String },
}

/// The PostgreSQL store. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    settings: Settings,
    /// Transactions (inserts, updates, throttle changes) may hold at most this many of the
    /// pool's connections: they wait on row and key locks, and under a flood of sign-ins on
    /// one key they would otherwise take every connection and make single reads (`/me`)
    /// wait behind them.
    transactions: Arc<tokio::sync::Semaphore>,
}

/// Opens the store at `url`: waits up to `wait` for the database to answer, then brings its
/// schema up to date (under an advisory lock, so that daemons starting together are safe).
/// Returns the store and the schema versions this call applied.
///
/// # Errors
/// When the URL is not valid, TLS cannot be set up, the database did not answer within
/// `wait`, or a migration failed.
pub async fn open(
    url: &str,
    settings: Settings,
    wait: Duration,
) -> Result<(PgStore, Vec<u32>), OpenError> {
    let parsed = ConnectionUrl::parse(url)?;
    let target = parsed.target();
    let store = PgStore::connect_lazily(&parsed, settings)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last =
            match tokio::time::timeout(settings.call_deadline(), schema::migrate(&store)).await {
                Ok(Ok(applied)) => {
                    for version in &applied {
                        tracing::info!(version, "ST0040 PostgreSQL schema migrated");
                    }
                    return Ok((store, applied));
                }
                Ok(Err(schema::Error::Store(e))) => e.to_string(),
                Ok(Err(schema::Error::Schema(reason))) => {
                    return Err(OpenError::Schema { target, reason });
                }
                Err(_) => "timed out".to_string(),
            };
        if tokio::time::Instant::now() >= deadline {
            return Err(OpenError::Unreachable {
                target,
                waited: wait,
                reason: last,
            });
        }
        tracing::warn!(target = %target, error = %last, "ST0041 PostgreSQL not reachable yet; retrying");
        tokio::time::sleep(Duration::from_millis(500).min(wait)).await;
    }
}

impl PgStore {
    /// Builds the pool without connecting (connections are made on first use).
    fn connect_lazily(url: &ConnectionUrl, settings: Settings) -> Result<PgStore, OpenError> {
        let mut config = url.config.clone();
        config.connect_timeout(settings.connect_attempt_timeout);
        // Dead peers are noticed on idle connections too, and writes to one fail in time.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(settings.connect_attempt_timeout * 2);
        if config.get_application_name().is_none() {
            config.application_name("authd");
        }
        // Set at connection start-up: no extra round trip. Appended to the URL's options.
        let timeout_ms = settings.statement_timeout.as_millis();
        let mut options = format!(
            "-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms} \
             -c idle_in_transaction_session_timeout={}",
            timeout_ms * 2
        );
        if let Some(given) = config.get_options() {
            options = format!("{given} {options}");
        }
        config.options(options);
        let manager_config = ManagerConfig {
            // A closed connection is noticed without a query; a broken one fails its call, is
            // discarded (see `Conn`), and the pool makes a new one.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match url.tls()? {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.statement_timeout))
            .create_timeout(Some(settings.connect_attempt_timeout))
            .recycle_timeout(Some(settings.connect_attempt_timeout))
            .build()
            .map_err(|e| OpenError::Tls(format!("cannot build the connection pool: {e}")))?;
        let size = settings.pool_size.max(1);
        Ok(PgStore {
            pool,
            settings,
            transactions: Arc::new(tokio::sync::Semaphore::new((size - size / 4).max(1))),
        })
    }

    /// The pool's numbers: (connections open, idle, callers waiting).
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.size, s.available, s.waiting)
    }

    /// [`PgStore::with`] for a transaction: waits (within the call's deadline) for one of the
    /// connections transactions may use, so that a quarter of the pool stays free for reads.
    pub(crate) async fn with_tx<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<(T, Conn), Failure>>,
    {
        let wait = self.settings.statement_timeout;
        let permit = tokio::time::timeout(wait, self.transactions.acquire())
            .await
            .map_err(|_| StoreError::Unavailable("every transaction slot stayed busy".into()))?
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        let outcome = self.with(work).await;
        drop(permit);
        outcome
    }

    /// Runs `work` on a pooled connection within the call's deadline. The connection goes
    /// back to the pool only if `work` succeeded; otherwise it is closed.
    pub(crate) async fn with<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<(T, Conn), Failure>>,
    {
        let call = async {
            let object = self.pool.get().await.map_err(pool_error)?;
            let (value, conn) = work(Conn(Some(object))).await.map_err(|f| f.0)?;
            conn.release();
            Ok(value)
        };
        match tokio::time::timeout(self.settings.call_deadline(), call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Unavailable(
                "PostgreSQL did not answer in time".into(),
            )),
        }
    }
}

/// A pooled connection lent to one call. Dropped without [`Conn::release`] (a failure, a
/// cancelled call), it is closed rather than returned: it may be inside a transaction or have
/// an answer on the wire.
pub(crate) struct Conn(Option<deadpool_postgres::Object>);

impl Conn {
    pub(crate) fn client(&self) -> &deadpool_postgres::ClientWrapper {
        // Only `release` and `drop` take the object out, and both consume the Conn.
        match &self.0 {
            Some(object) => object,
            None => unreachable_client(),
        }
    }

    fn release(mut self) {
        // Dropping the object returns it to the pool.
        drop(self.0.take());
    }
}

#[allow(clippy::panic)]
fn unreachable_client() -> ! {
    panic!("a released connection was used")
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// A failed call.
pub(crate) struct Failure(StoreError);

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure(classify(&e))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(e)
    }
}

pub(crate) type Outcome<T> = Result<(T, Conn), Failure>;

/// Classifies a PostgreSQL failure: is retrying later worth it?
fn classify(e: &tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        // The connection: refused, closed, timed out.
        let cause = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        return StoreError::Unavailable(format!("PostgreSQL: {e}{cause}"));
    };
    let code = db.code();
    let class = &code.code()[..2.min(code.code().len())];
    // 22 data exception, 23 integrity, 42 syntax or undefined object, XX internal: a stored
    // record or the schema is not what this authd expects. Anything else (connections, a
    // statement cancelled by its timeout, a serialization failure, resources, a shutdown)
    // goes away.
    let lasting = matches!(class, "22" | "23" | "42" | "XX") && *code != SqlState::QUERY_CANCELED;
    let message = format!("PostgreSQL {}: {}", code.code(), db.message());
    if lasting {
        StoreError::Corrupt(message)
    } else {
        StoreError::Unavailable(message)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => classify(&e),
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

/// A stored JSON value that does not have the expected shape.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure(StoreError::Corrupt(format!("{what}: {e}")))
}

/// Unsigned values are stored in `bigint`: the largest ones (a deadline of `u64::MAX`,
/// "never") are kept as `i64::MAX`, which is 292 million years of milliseconds.
pub(crate) fn db_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait::async_trait]
impl Maintenance for PgStore {
    async fn purge(&self, now: u64) -> Result<PurgeCounts, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let tokens = c
                .prepare_cached("DELETE FROM authd_dead_tokens WHERE expires_at < $1")
                .await?;
            let throttles = c
                .prepare_cached("DELETE FROM authd_throttle WHERE forget_after < $1")
                .await?;
            let now = db_u64(now);
            // Idempotent and row by row: several daemons may purge at once.
            let (dead_tokens, throttles) = futures_util::future::try_join(
                c.execute(&tokens, &[&now]),
                c.execute(&throttles, &[&now]),
            )
            .await?;
            Ok((
                PurgeCounts {
                    dead_tokens,
                    throttles,
                },
                conn,
            ))
        })
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.with(|conn| async move {
            conn.client().simple_query("SELECT 1").await?;
            Ok(((), conn))
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
