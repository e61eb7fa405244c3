//! Helpers for tests of authd against a real PostgreSQL (this crate's, the daemon's): a
//! schema of its own per test, so that tests run in parallel on one database, and a TCP proxy
//! in front of the database that a test can cut and restore to stage an outage.
//!
//! Tests read the database's URL from `AUTHD_TEST_DATABASE_URL`; without it they skip with
//! one line on standard error (written past the test harness's capture, so that a plain
//! `cargo test` shows it).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The variable naming the test database.
pub const DATABASE_URL_VAR: &str = "AUTHD_TEST_DATABASE_URL";

/// The test database's URL, or `None` after saying once per test binary that the
/// PostgreSQL tests are skipped.
pub fn database_url() -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL tests skipped: {DATABASE_URL_VAR} is not set"
                );
            });
            None
        }
    }
}

/// `url` with `search_path` set to `schema` for every connection (through the startup
/// `options`, so no statement is needed).
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A schema made for one test; [`TestSchema::drop_schema`] removes it.
pub struct TestSchema {
    pub name: String,
    /// The database's URL with `search_path` set to this schema.
    pub url: String,
    base: String,
}

impl TestSchema {
    /// Creates a schema with a unique name in the database at `url`.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn create(url: &str) -> Result<TestSchema, tokio_postgres::Error> {
        let name = format!("authd_test_{}", uuid::Uuid::new_v4().simple());
        run(url, &format!("CREATE SCHEMA {name}")).await?;
        Ok(TestSchema {
            url: with_search_path(url, &name),
            name,
            base: url.to_string(),
        })
    }

    /// Drops the schema and everything in it.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn drop_schema(self) -> Result<(), tokio_postgres::Error> {
        run(&self.base, &format!("DROP SCHEMA {} CASCADE", self.name)).await
    }
}

/// Runs one statement on a connection of its own.
///
/// # Errors
/// When the database cannot be reached or the statement fails.
pub async fn run(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let outcome = client.batch_execute(sql).await;
    drop(client);
    let _ = task.await;
    outcome
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`. [`Proxy::cut`] closes every connection
/// and refuses new ones at once (a database that went away); [`Proxy::restore`] forwards
/// again, on the same port.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Reads from the clients' side that carried data: with one request at a time, about one
    /// per round trip (statements sent together arrive together).
    pub client_sends: Arc<AtomicU64>,
    open: Arc<AtomicBool>,
    connections: Connections,
    task: tokio::task::JoinHandle<()>,
}

type Connections = Arc<Mutex<Vec<tokio::task::AbortHandle>>>;

impl Proxy {
    /// Starts forwarding to `upstream`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let connections = Connections::default();
        let client_sends = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(
            listener,
            upstream,
            Arc::clone(&open),
            Arc::clone(&connections),
            Arc::clone(&client_sends),
        ));
        Ok(Proxy {
            addr,
            client_sends,
            open,
            connections,
            task,
        })
    }

    /// Closes every forwarded connection; new ones are closed as soon as accepted.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for connection in connections.drain(..) {
            connection.abort();
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// `url` (a postgres:// URL naming 127.0.0.1:5432 or any host:port) pointed at the proxy.
    pub fn url_through(&self, url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string();
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}{tail}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Connections,
    client_sends: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !open.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let sends = Arc::clone(&client_sends);
        let task = tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let upward = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            sends.fetch_add(1, Ordering::Relaxed);
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = server_write.shutdown().await;
            };
            let downward = async {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                let _ = client_write.shutdown().await;
            };
            tokio::join!(upward, downward);
        });
        let mut held = connections.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|c| !c.is_finished());
        held.push(task.abort_handle());
        // Cut while this one was being set up: it goes too.
        if !open.load(Ordering::SeqCst) {
            task.abort();
        }
    }
}

/// The host:port of a postgres:// URL (for [`Proxy::start`]); 127.0.0.1:5432 by default.
pub fn upstream_of(url: &str) -> SocketAddr {
    let default = SocketAddr::from(([127, 0, 0, 1], 5432));
    let Some((_, rest)) = url.split_once("://") else {
        return default;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_port = rest[..end]
        .rsplit_once('@')
        .map_or(&rest[..end], |(_, h)| h);
    let with_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port.parse().unwrap_or(default)
}
