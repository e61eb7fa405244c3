//! The schema, as numbered migrations applied in order, each in its own transaction, under a
//! session advisory lock: of N daemons starting at once one migrates, the others wait and
//! then find nothing to do. A database migrated by a newer authd (a version this one does not
//! know) is refused rather than used.
//!
//! A migration is never edited once released: a change is a new one. Tables are created in
//! the first schema of the connection's `search_path`.
//!
//! Unsigned numbers of the contract are `bigint` (see `db_u64`); ids are `uuid`; user
//! attributes, secrets and meta are `jsonb`; token and throttle keys are the 32-byte SHA-256
//! the contract gives.

use authd_store_api::StoreError;

use crate::{Failure, PgStore};

/// The advisory lock key of migrations ("authd-mg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6175_7468_642d_6d67;

/// (version, what it does, SQL).
pub(crate) const MIGRATIONS: &[(u32, &str, &str)] = &[(
    1,
    "users, unique values, dead tokens, throttles, meta, outbox",
    r#"
CREATE TABLE authd_users (
    subject       text   NOT NULL,
    id            uuid   NOT NULL,
    attributes    jsonb  NOT NULL,
    secrets       jsonb  NOT NULL,
    meta          jsonb  NOT NULL,
    session_epoch bigint NOT NULL,
    created_at    bigint NOT NULL,
    PRIMARY KEY (subject, id)
);
CREATE TABLE authd_unique (
    subject text NOT NULL,
    field   text NOT NULL,
    value   text NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (subject, field, value),
    FOREIGN KEY (subject, user_id) REFERENCES authd_users (subject, id) ON DELETE CASCADE
);
CREATE INDEX authd_unique_by_user ON authd_unique (subject, user_id);
CREATE TABLE authd_dead_tokens (
    key        bytea  PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX authd_dead_tokens_expiry ON authd_dead_tokens (expires_at);
CREATE TABLE authd_throttle (
    key          bytea  PRIMARY KEY,
    count        bigint NOT NULL,
    window_start bigint NOT NULL,
    locked_until bigint NOT NULL,
    lockouts     bigint NOT NULL,
    forget_after bigint NOT NULL
);
CREATE INDEX authd_throttle_forget ON authd_throttle (forget_after);
CREATE TABLE authd_meta (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE authd_outbox (
    created_ms      bigint  NOT NULL,
    id              uuid    NOT NULL,
    kind            text    NOT NULL,
    channel         jsonb   NOT NULL,
    payload         jsonb   NOT NULL,
    attempts        integer NOT NULL,
    next_attempt_ms bigint  NOT NULL,
    deadline_ms     bigint  NOT NULL,
    retry_base_ms   bigint  NOT NULL,
    lease_ms        bigint  NOT NULL,
    last_error      text,
    PRIMARY KEY (created_ms, id)
);
CREATE INDEX authd_outbox_due ON authd_outbox (next_attempt_ms, created_ms, id);
"#,
)];

/// The newest schema version this authd knows.
pub const CURRENT: u32 = 1;

pub(crate) enum Error {
    /// The database is not reachable (retry).
    Store(StoreError),
    /// The schema cannot be migrated (do not retry).
    Schema(String),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Store(f.0)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::from(Failure::from(e))
    }
}

/// Brings the schema up to date; returns the versions applied.
pub(crate) async fn migrate(store: &PgStore) -> Result<Vec<u32>, Error> {
    let object = store
        .pool
        .get()
        .await
        .map_err(|e| Error::Store(crate::pool_error(e)))?;
    // The lock is the session's: taken on this connection, released below or when the
    // connection closes (a daemon that dies while migrating does not block the others).
    let conn = crate::Conn(Some(object));
    let c = conn.client();
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply_missing(c).await;
    c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = outcome?;
    conn.release();
    Ok(applied)
}

async fn apply_missing(c: &tokio_postgres::Client) -> Result<Vec<u32>, Error> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS authd_schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let row = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM authd_schema_migrations",
            &[],
        )
        .await?;
    let at: i32 = row.get(0);
    let at = u32::try_from(at).unwrap_or(0);
    if at > CURRENT {
        return Err(Error::Schema(format!(
            "the database is at schema version {at}, written by a newer authd; this one knows \
             versions up to {CURRENT}: upgrade authd"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > at) {
        let run = async {
            // A long migration is not cut by the statement timeout of normal calls.
            c.batch_execute("BEGIN; SET LOCAL statement_timeout = 0")
                .await?;
            c.batch_execute(sql).await?;
            c.execute(
                "INSERT INTO authd_schema_migrations (version, name) VALUES ($1, $2)",
                &[&i32::try_from(*version).unwrap_or(i32::MAX), name],
            )
            .await?;
            c.batch_execute("COMMIT").await
        };
        if let Err(e) = run.await {
            let _ = c.batch_execute("ROLLBACK").await;
            let failure = Failure::from(e).0;
            return Err(match failure {
                StoreError::Unavailable(_) => Error::Store(failure),
                other => Error::Schema(format!("migration {version} ({name}) failed: {other}")),
            });
        }
        applied.push(*version);
    }
    Ok(applied)
}
