//! authd's embedded store: the whole storage contract of `authd-store-api` on one redb file,
//! opened by one process.
//!
//! Writes are durable when they return and run on tokio's blocking pool; reads run inline
//! (microseconds, never waiting for a lock). No redb failure reaches a caller as a panic:
//! every call runs under `catch_unwind`, a damaged page becomes [`StoreError::Corrupt`], and
//! an I/O failure (a full disk) becomes [`StoreError::Unavailable`]. redb refuses every
//! transaction after a failed commit until the database is reopened, so after such a failure
//! the store reopens the file in the background, retrying each second, and serves again by
//! itself once the cause is gone.
//!
//! The file, and a folder created for it, are private to the daemon's user (0600 / 0700): the
//! file holds password hashes, token state and possibly the signing key.
//!
//! What this crate must not do: know HTTP, strategies or policies (it applies
//! `authd_store_api::throttle::apply`, it does not decide).

mod backup;
mod meta;
mod outbox;
mod tables;
mod throttle;
mod tokens;
mod users;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authd_store_api::{Maintenance, PurgeCounts, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use tables::*;

/// How long a reopen waits for calls in flight to let go of the old database.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// Between two reopen attempts.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Why the file could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("the database {0} is in use by another process (is another authd running on it?)")]
    Locked(PathBuf),
    #[error(
        "the database {path} is damaged: {reason}. Run `authd store check --config FILE` to see what \
         it found; restore the file from a backup, or move it aside to start with an empty store"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot open the database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
}

/// The redb store. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The most bytes redb's page cache holds.
    cache_bytes: usize,
    /// When the next throttle write must be durable.
    throttle_pace: Arc<throttle::ThrottlePace>,
    /// `None` while the database is being reopened.
    db: RwLock<Option<Arc<Database>>>,
    /// A reopen is under way (one at a time).
    reopening: AtomicBool,
}

/// What `authd store check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckReport {
    /// The file passed redb's integrity check.
    Intact,
    /// The check found damage and redb repaired it (a crash during a commit).
    Repaired,
}

/// Opens (or creates) the store at `path`. Returns warnings for the operator (a file readable
/// by others).
///
/// # Errors
/// When another process holds the file, the file is damaged, or it cannot be created.
pub fn open(path: &Path) -> Result<(RedbStore, Vec<String>), OpenError> {
    open_with_cache(path, DEFAULT_CACHE_BYTES)
}

/// The page cache of [`open`]: what a daemon holds of the file in memory at most, whatever
/// the file's size (redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// [`open`], with a page cache of at most `cache_bytes`.
///
/// # Errors
/// As [`open`].
pub fn open_with_cache(
    path: &Path,
    cache_bytes: usize,
) -> Result<(RedbStore, Vec<String>), OpenError> {
    let warnings = prepare_file(path)?;
    let db = open_database(path, true, cache_bytes)?;
    let store = RedbStore {
        inner: Arc::new(Inner {
            path: path.to_path_buf(),
            cache_bytes,
            throttle_pace: Arc::default(),
            db: RwLock::new(Some(Arc::new(db))),
            reopening: AtomicBool::new(false),
        }),
    };
    Ok((store, warnings))
}

/// Runs redb's integrity check on the file at `path` (no daemon may hold it).
///
/// # Errors
/// When the file cannot be opened or the check cannot run.
pub fn check(path: &Path) -> Result<CheckReport, OpenError> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut db = Database::builder().open(path)?;
        db.check_integrity()
    }));
    match outcome {
        Ok(Ok(true)) => Ok(CheckReport::Intact),
        Ok(Ok(false)) => Ok(CheckReport::Repaired),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(panic) => Err(OpenError::Damaged {
            path: path.to_path_buf(),
            reason: panic_message(&panic),
        }),
    }
}

/// Creates the file (0600) and its folder (0700) if missing; warns when an existing file is
/// readable by group or others.
fn prepare_file(path: &Path) -> Result<Vec<String>, OpenError> {
    let fail = |e: std::io::Error| OpenError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut warnings = Vec::new();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).map_err(fail)?.permissions().mode();
                if mode & 0o077 != 0 {
                    warnings.push(format!(
                        "ST0020 {} is readable or writable by other users (mode {:o}): it holds \
                         password hashes, token state and possibly the signing key; run \
                         `chmod 600 {}`",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    ));
                }
            }
        }
        Err(e) => return Err(fail(e)),
    }
    Ok(warnings)
}

fn open_database(
    path: &Path,
    check_integrity: bool,
    cache_bytes: usize,
) -> Result<Database, OpenError> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let db = Database::builder()
            .set_check_integrity_on_open(check_integrity)
            .set_cache_size(cache_bytes)
            .create(path)?;
        create_tables(&db)?;
        Ok::<_, redb::Error>(db)
    }));
    match outcome {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::Error::DatabaseAlreadyOpen)) => Err(OpenError::Locked(path.to_path_buf())),
        Ok(Err(redb::Error::Corrupted(reason))) => Err(OpenError::Damaged {
            path: path.to_path_buf(),
            reason,
        }),
        Ok(Err(e)) => Err(OpenError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(panic) => Err(OpenError::Damaged {
            path: path.to_path_buf(),
            reason: panic_message(&panic),
        }),
    }
}

fn open_error(path: &Path, e: redb::DatabaseError) -> OpenError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenError::Locked(path.to_path_buf()),
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => OpenError::Damaged {
            path: path.to_path_buf(),
            reason,
        },
        other => OpenError::Open {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Creates missing tables and migrates old ones (unique_v1 -> unique_v2 + unique_by_user_v2).
fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        tx.open_table(USERS)?;
        tx.open_table(DEAD_TOKENS)?;
        tx.open_table(META)?;
        tx.open_table(THROTTLE)?;
        tx.open_table(JOBS)?;
        tx.open_table(DUE)?;
        let mut unique = tx.open_table(UNIQUE)?;
        let mut by_user = tx.open_table(UNIQUE_BY_USER)?;
        let migrate = match tx.open_table(UNIQUE_V1) {
            Ok(old) => {
                let mut moved = 0u64;
                for entry in old.iter()? {
                    let (key, id) = entry?;
                    let (subject, field, value) = key.value();
                    let id = id.value();
                    unique.insert((subject, field, value), id)?;
                    by_user.insert((subject, id, field, value), ())?;
                    moved += 1;
                }
                Some(moved)
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(moved) = migrate
            && moved > 0
        {
            tracing::info!(entries = moved, "ST0021 unique index migrated to unique_v2");
        }
    }
    tx.delete_table(UNIQUE_V1)?;
    tx.commit()?;
    Ok(())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    format!("redb panicked: {text}")
}

/// A redb failure, classified: does the database need reopening?
pub(crate) struct Failure {
    error: StoreError,
    reopen: bool,
}

impl Failure {
    fn storage(e: redb::StorageError) -> Failure {
        match e {
            redb::StorageError::Corrupted(m) => Failure {
                error: StoreError::Corrupt(m),
                reopen: false,
            },
            redb::StorageError::ValueTooLarge(n) => Failure {
                error: StoreError::Corrupt(format!("a value of {n} bytes is too large")),
                reopen: false,
            },
            other => Failure {
                error: StoreError::Unavailable(other.to_string()),
                reopen: true,
            },
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure {
            error,
            reopen: false,
        }
    }
}

impl From<redb::StorageError> for Failure {
    fn from(e: redb::StorageError) -> Self {
        Failure::storage(e)
    }
}

impl From<redb::Error> for Failure {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Corrupted(m) => Failure {
                error: StoreError::Corrupt(m),
                reopen: false,
            },
            redb::Error::ValueTooLarge(n) => Failure {
                error: StoreError::Corrupt(format!("a value of {n} bytes is too large")),
                reopen: false,
            },
            other => Failure {
                error: StoreError::Unavailable(other.to_string()),
                reopen: true,
            },
        }
    }
}

macro_rules! failure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::from(redb::Error::from(e))
            }
        }
    )*};
}
failure_from!(redb::TransactionError, redb::TableError, redb::CommitError);

pub(crate) type Outcome<T> = Result<T, Failure>;

impl RedbStore {
    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        let guard = self
            .inner
            .db
            .read()
            .map_err(|_| StoreError::Unavailable("the store's lock is poisoned".into()))?;
        guard.clone().ok_or_else(|| {
            StoreError::Unavailable("the database is being reopened after a failure".into())
        })
    }

    /// Runs `f` inline (reads): a panic or a failure that needs a reopen starts one.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Database) -> Outcome<T>) -> Result<T, StoreError> {
        let db = self.database()?;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&db)));
        drop(db);
        self.settle(outcome)
    }

    /// Runs `f` on the blocking pool (writes, scans).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Outcome<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.database()?;
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| f(&db)));
            drop(db);
            outcome
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("blocking task failed: {e}")))?;
        self.settle(outcome)
    }

    fn settle<T>(
        &self,
        outcome: Result<Outcome<T>, Box<dyn std::any::Any + Send>>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => {
                if failure.reopen {
                    self.start_reopen(&failure.error);
                }
                Err(failure.error)
            }
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(error = %message, "ST0022 the store panicked; the call failed");
                // A panic may leave redb's state poisoned: start again from the file.
                self.start_reopen(&StoreError::Corrupt(message.clone()));
                Err(StoreError::Corrupt(message))
            }
        }
    }

    /// Closes the database and opens it again, in the background, until it works.
    fn start_reopen(&self, cause: &StoreError) {
        if self.inner.reopening.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(error = %cause, path = %self.inner.path.display(), "ST0023 reopening the database after a failure");
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("authd-redb-reopen".into())
            .spawn(move || reopen_loop(&inner));
        if spawned.is_err() {
            self.inner.reopening.store(false, Ordering::SeqCst);
        }
    }
}

fn reopen_loop(inner: &Inner) {
    let old = match inner.db.write() {
        Ok(mut guard) => guard.take(),
        Err(_) => None,
    };
    if let Some(mut old) = old {
        // Calls in flight hold clones for microseconds to a commit's length.
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        loop {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    let _ = catch_unwind(AssertUnwindSafe(|| db.close()));
                    break;
                }
                Err(still) if std::time::Instant::now() < deadline => {
                    old = still;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(still) => {
                    drop(still);
                    break;
                }
            }
        }
    }
    loop {
        match open_database(&inner.path, false, inner.cache_bytes) {
            Ok(db) => {
                if let Ok(mut guard) = inner.db.write() {
                    *guard = Some(Arc::new(db));
                }
                tracing::info!(path = %inner.path.display(), "ST0024 database reopened; the store serves again");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ST0025 the database cannot be reopened yet; retrying");
                std::thread::sleep(REOPEN_EVERY);
            }
        }
    }
    inner.reopening.store(false, Ordering::SeqCst);
}

#[async_trait::async_trait]
impl Maintenance for RedbStore {
    async fn purge(&self, now: u64) -> Result<PurgeCounts, StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            let counts = {
                let mut dead = tx.open_table(DEAD_TOKENS)?;
                let before = dead.len()?;
                dead.retain(|_, exp| exp >= now)?;
                let mut throttle = tx.open_table(THROTTLE)?;
                let before_throttle = throttle.len()?;
                throttle.retain(|_, t| {
                    !authd_store_api::throttle::forgettable(&throttle_from_tuple(t), now)
                })?;
                PurgeCounts {
                    dead_tokens: before - dead.len()?,
                    throttles: before_throttle - throttle.len()?,
                }
            };
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            tx.open_table(META)?.len()?;
            Ok(())
        })
    }

    fn backend(&self) -> &'static str {
        "redb"
    }
}

/// Test helpers (feature `testing`): write records as they are, to test how the daemon
/// answers damaged ones.
#[cfg(feature = "testing")]
pub mod testing {
    use std::path::Path;

    /// Writes `bytes` as the stored form of user `id` of `subject` (no daemon may hold the
    /// file).
    ///
    /// # Errors
    /// When the file cannot be opened or written.
    pub fn put_raw_user(
        path: &Path,
        subject: &str,
        id: uuid::Uuid,
        bytes: &[u8],
    ) -> Result<(), redb::Error> {
        let db = redb::Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(crate::tables::USERS)?
            .insert((subject, id.as_u128()), bytes)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
