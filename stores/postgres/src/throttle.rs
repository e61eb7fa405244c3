//! Throttle records, changed only through `authd_store_api::throttle::apply`, inside one
//! transaction that holds a lock per key: counts made on several daemons add up, and no more
//! than `limit` reservations of one window pass, whatever the concurrency.
//!
//! The locks are transaction-scoped advisory locks on the key (its first 32 bits: two keys
//! that share them only take turns), taken in ascending order so that two calls on the same
//! keys cannot deadlock. A lock (rather than `SELECT ... FOR UPDATE`) also covers a key that
//! has no record yet. Two round trips: the locks and the read, then the writes and the commit.
//! Only a commit that locks a key waits for the WAL flush (`synchronous_commit` is off for the
//! others): lockouts are durable, counts need only be shared.

use std::collections::BTreeMap;

use async_trait::async_trait;
use authd_store_api::throttle::apply;
use authd_store_api::{
    StoreError, ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleRecord, ThrottleStore,
};
use futures_util::future::{try_join, try_join3};
use tokio_postgres::Row;

use crate::{Conn, Failure, Outcome, PgStore, db_u64, from_db};

/// The first key of the throttle locks ("th").
const LOCK_CLASS: i32 = 0x7468;

pub(crate) const COLUMNS: &str = "key, count, window_start, locked_until, lockouts, forget_after";

pub(crate) fn decode(row: &Row) -> Result<(ThrottleKey, ThrottleRecord), Failure> {
    let key: Vec<u8> = row.try_get(0)?;
    let key = <[u8; 32]>::try_from(key.as_slice())
        .map_err(|_| crate::corrupt("throttle key", "not 32 bytes"))?;
    Ok((
        ThrottleKey(key),
        ThrottleRecord {
            count: from_db(row.try_get(1)?),
            window_start: from_db(row.try_get(2)?),
            locked_until: from_db(row.try_get(3)?),
            lockouts: from_db(row.try_get(4)?),
            forget_after: from_db(row.try_get(5)?),
        },
    ))
}

/// Upserts records given as column arrays.
pub(crate) const UPSERT: &str = "INSERT INTO authd_throttle \
     (key, count, window_start, locked_until, lockouts, forget_after) \
     SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
     ON CONFLICT (key) DO UPDATE SET count = EXCLUDED.count, window_start = EXCLUDED.window_start, \
     locked_until = EXCLUDED.locked_until, lockouts = EXCLUDED.lockouts, \
     forget_after = EXCLUDED.forget_after";

/// Column arrays of records, for [`UPSERT`].
#[derive(Default)]
pub(crate) struct Columns {
    pub keys: Vec<Vec<u8>>,
    count: Vec<i64>,
    window_start: Vec<i64>,
    locked_until: Vec<i64>,
    lockouts: Vec<i64>,
    forget_after: Vec<i64>,
}

impl Columns {
    pub(crate) fn push(&mut self, key: &ThrottleKey, r: &ThrottleRecord) {
        self.keys.push(key.0.to_vec());
        self.count.push(db_u64(r.count));
        self.window_start.push(db_u64(r.window_start));
        self.locked_until.push(db_u64(r.locked_until));
        self.lockouts.push(db_u64(r.lockouts));
        self.forget_after.push(db_u64(r.forget_after));
    }

    /// Runs [`UPSERT`] prepared as `stmt` (prepared before, so that this call sends its
    /// request at its first poll and can be pipelined).
    pub(crate) async fn upsert(
        &self,
        c: &deadpool_postgres::ClientWrapper,
        stmt: &tokio_postgres::Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.keys.is_empty() {
            return Ok(0);
        }
        c.execute(
            stmt,
            &[
                &self.keys,
                &self.count,
                &self.window_start,
                &self.locked_until,
                &self.lockouts,
                &self.forget_after,
            ],
        )
        .await
    }
}

async fn apply_ops(
    conn: Conn,
    ops: Vec<(ThrottleKey, ThrottleOp)>,
    now: u64,
) -> Outcome<Vec<ThrottleOutcome>> {
    let c = conn.client();
    let mut keys: Vec<ThrottleKey> = ops.iter().map(|(k, _)| *k).collect();
    keys.sort();
    keys.dedup();
    let mut locks: Vec<i32> = keys
        .iter()
        .map(|k| i32::from_be_bytes([k.0[0], k.0[1], k.0[2], k.0[3]]))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    // Numbers of our own making: written into the text, so that the transaction and its
    // locks are one message.
    let mut begin = String::from("BEGIN;");
    for lock in &locks {
        begin.push_str(&format!(
            " SELECT pg_advisory_xact_lock({LOCK_CLASS}, {lock});"
        ));
    }
    let read = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM authd_throttle WHERE key = ANY($1)"
        ))
        .await?;
    let key_bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
    // The read runs after the locks are held (statements run in order), with a snapshot of
    // its own: it sees what the previous holder committed.
    let ((), rows) = try_join(c.batch_execute(&begin), c.query(&read, &[&key_bytes])).await?;
    let mut records: BTreeMap<ThrottleKey, Option<ThrottleRecord>> =
        keys.iter().map(|k| (*k, None)).collect();
    for row in &rows {
        let (key, record) = decode(row)?;
        records.insert(key, Some(record));
    }
    let mut outcomes = Vec::with_capacity(ops.len());
    for (key, op) in ops {
        let old = records.get(&key).copied().flatten();
        let (new, outcome) = apply(op, old, now);
        records.insert(key, new);
        outcomes.push(outcome);
    }
    let mut upserts = Columns::default();
    let mut deletes: Vec<Vec<u8>> = Vec::new();
    for (key, record) in &records {
        match record {
            Some(r) => upserts.push(key, r),
            None => deletes.push(key.0.to_vec()),
        }
    }
    let delete = c
        .prepare_cached("DELETE FROM authd_throttle WHERE key = ANY($1)")
        .await?;
    let upsert = c.prepare_cached(UPSERT).await?;
    let deleted = async {
        if deletes.is_empty() {
            return Ok(0);
        }
        c.execute(&delete, &[&deletes]).await
    };
    // The writes and the commit: one round trip. A failed write aborts the transaction, and
    // the COMMIT then only rolls it back. A commit that locks a key waits for the WAL to be
    // flushed, so that a lockout survives a crash of the database; the others (counts,
    // refunds, clears) need not: other daemons see them at once all the same, and a crash of
    // the server can lose only its last fraction of a second of counts, never a lockout.
    let locks_a_key = outcomes
        .iter()
        .any(|o| matches!(o, ThrottleOutcome::LockedNow));
    let commit = if locks_a_key {
        "COMMIT"
    } else {
        "SET LOCAL synchronous_commit TO OFF; COMMIT"
    };
    try_join3(upserts.upsert(c, &upsert), deleted, c.batch_execute(commit)).await?;
    Ok((outcomes, conn))
}

#[async_trait]
impl ThrottleStore for PgStore {
    async fn throttle_get(&self, key: &ThrottleKey) -> Result<Option<ThrottleRecord>, StoreError> {
        let key = key.0.to_vec();
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM authd_throttle WHERE key = $1"
                ))
                .await?;
            let row = c.query_opt(&stmt, &[&key]).await?;
            let record = row.as_ref().map(decode).transpose()?.map(|(_, r)| r);
            Ok((record, conn))
        })
        .await
    }

    async fn throttle_apply(
        &self,
        ops: Vec<(ThrottleKey, ThrottleOp)>,
        now: u64,
    ) -> Result<Vec<ThrottleOutcome>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.with_tx(|conn| apply_ops(conn, ops, now)).await
    }
}
