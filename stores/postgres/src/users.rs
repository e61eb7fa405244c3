//! Users and their unique values. A unique value is a row keyed by (subject, field, value):
//! of racing inserts of one value, on any number of daemons, the database lets one commit and
//! the others find it taken. A user's change runs under the lock of its row (`FOR UPDATE`),
//! so that expectations are checked against the latest committed state.
//!
//! Statements that do not depend on each other's answers are sent together (pipelined on
//! one connection): an insert is two round trips, an update three, a read one.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use authd_store_api::{
    Collision, InsertError, NewUser, StoreError, UniqueKey, UpdateOutcome, UserRecord, UserStore,
    UserUpdate, token_key,
};
use futures_util::future::{try_join, try_join3};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{Conn, Failure, Outcome, PgStore, corrupt, db_u64, from_db};

/// The columns [`decode`] reads, in order.
pub(crate) const COLUMNS: &str = "id, attributes, secrets, meta, session_epoch, created_at";

pub(crate) fn decode(row: &Row) -> Result<UserRecord, Failure> {
    let object = |v: Value, what: &str| match v {
        Value::Object(map) => Ok(map),
        _ => Err(corrupt(what, "not a JSON object")),
    };
    let secrets: BTreeMap<String, String> = serde_json::from_value(row.try_get::<_, Value>(2)?)
        .map_err(|e| corrupt("user secrets", e))?;
    Ok(UserRecord {
        id: row.try_get(0)?,
        attributes: object(row.try_get(1)?, "user attributes")?,
        secrets,
        meta: object(row.try_get(3)?, "user meta")?,
        session_epoch: from_db(row.try_get(4)?),
        created_at: from_db(row.try_get(5)?),
    })
}

fn secrets_json(secrets: &BTreeMap<String, String>) -> Value {
    Value::Object(
        secrets
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Fields and values as two arrays (for `unnest`), sorted and without repeats: every
/// transaction takes the locks of unique values in the same order.
fn unique_arrays(keys: &[UniqueKey]) -> (Vec<String>, Vec<String>) {
    let mut keys: Vec<&UniqueKey> = keys.iter().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| (k.field.clone(), k.value.clone()))
        .unzip()
}

/// The first of `wanted` (in the caller's order) that is not among `got`.
fn first_missing(wanted: &[UniqueKey], got: &[Row]) -> Result<Option<String>, Failure> {
    let mut have = std::collections::HashSet::new();
    for row in got {
        have.insert((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?));
    }
    Ok(wanted
        .iter()
        .find(|k| !have.contains(&(k.field.clone(), k.value.clone())))
        .map(|k| k.field.clone()))
}

/// Unique values the user now holds: inserted, or already the user's (returned either way);
/// a value held by another user is not returned (and is left as it is).
const ADD_UNIQUE: &str = "INSERT INTO authd_unique (subject, field, value, user_id) \
     SELECT $1, f, v, $2 FROM unnest($3::text[], $4::text[]) AS t(f, v) \
     ON CONFLICT (subject, field, value) DO UPDATE SET user_id = authd_unique.user_id \
     WHERE authd_unique.user_id = EXCLUDED.user_id \
     RETURNING field, value";

async fn rollback(conn: &Conn) -> Result<(), Failure> {
    conn.client().batch_execute("ROLLBACK").await?;
    Ok(())
}

fn apply_update(user: &mut UserRecord, update: &UserUpdate) {
    for (k, v) in &update.attributes {
        if v.is_null() {
            user.attributes.remove(k);
        } else {
            user.attributes.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &update.secrets {
        match v {
            Some(v) => {
                user.secrets.insert(k.clone(), v.clone());
            }
            None => {
                user.secrets.remove(k);
            }
        }
    }
    for (k, v) in &update.meta {
        if v.is_null() {
            user.meta.remove(k);
        } else {
            user.meta.insert(k.clone(), v.clone());
        }
    }
    if update.bump_sessions {
        user.session_epoch += 1;
    }
}

async fn insert(
    conn: Conn,
    subject: &str,
    user: NewUser,
) -> Outcome<Result<UserRecord, InsertError>> {
    let record = UserRecord {
        id: user.id.unwrap_or_else(Uuid::new_v4),
        attributes: user.attributes,
        secrets: user.secrets,
        meta: user.meta,
        session_epoch: user.session_epoch,
        created_at: user.created_at,
    };
    let c = conn.client();
    let insert_user = c
        .prepare_cached(
            "INSERT INTO authd_users (subject, id, attributes, secrets, meta, session_epoch, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .await?;
    let add = c.prepare_cached(ADD_UNIQUE).await?;
    let (fields, values) = unique_arrays(&user.unique);
    let attributes = Value::Object(record.attributes.clone());
    let secrets = secrets_json(&record.secrets);
    let meta = Value::Object(record.meta.clone());
    let epoch = db_u64(record.session_epoch);
    let created = db_u64(record.created_at);
    // One round trip: the transaction, the user, its values.
    let ((), inserted, added) = try_join3(
        c.batch_execute("BEGIN"),
        c.execute(
            &insert_user,
            &[
                &subject,
                &record.id,
                &attributes,
                &secrets,
                &meta,
                &epoch,
                &created,
            ],
        ),
        c.query(&add, &[&subject, &record.id, &fields, &values]),
    )
    .await?;
    if inserted == 0 {
        rollback(&conn).await?;
        return Ok((Err(InsertError::IdTaken), conn));
    }
    if let Some(field) = first_missing(&user.unique, &added)? {
        rollback(&conn).await?;
        return Ok((Err(InsertError::Taken(field)), conn));
    }
    c.batch_execute("COMMIT").await?;
    Ok((Ok(record), conn))
}

async fn update(conn: Conn, subject: &str, id: Uuid, update: UserUpdate) -> Outcome<UpdateOutcome> {
    let c = conn.client();
    let lock = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM authd_users WHERE subject = $1 AND id = $2 FOR UPDATE"
        ))
        .await?;
    let ((), row) = try_join(
        c.batch_execute("BEGIN"),
        c.query_opt(&lock, &[&subject, &id]),
    )
    .await?;
    let Some(row) = row else {
        rollback(&conn).await?;
        return Ok((UpdateOutcome::NotFound, conn));
    };
    let mut user = decode(&row)?;
    let expectations_hold = update
        .expect_secrets
        .iter()
        .all(|(field, expected)| user.secrets.get(field) == expected.as_ref())
        && update.expect_epoch.is_none_or(|e| e == user.session_epoch);
    if !expectations_hold {
        rollback(&conn).await?;
        return Ok((UpdateOutcome::Conflict, conn));
    }
    apply_update(&mut user, &update);

    let consume = c
        .prepare_cached(
            "INSERT INTO authd_dead_tokens (key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await?;
    let remove = c
        .prepare_cached(
            "DELETE FROM authd_unique WHERE subject = $1 AND user_id = $2 \
             AND (field, value) IN (SELECT * FROM unnest($3::text[], $4::text[]))",
        )
        .await?;
    let add = c.prepare_cached(ADD_UNIQUE).await?;
    let write = c
        .prepare_cached(
            "UPDATE authd_users SET attributes = $3, secrets = $4, meta = $5, session_epoch = $6 \
             WHERE subject = $1 AND id = $2",
        )
        .await?;
    let token = update
        .consume
        .as_ref()
        .map(|(jti, exp)| (token_key(jti).to_vec(), db_u64(*exp)));
    let (remove_fields, remove_values) = unique_arrays(&update.unique_remove);
    let (add_fields, add_values) = unique_arrays(&update.unique_add);
    let attributes = Value::Object(user.attributes.clone());
    let secrets = secrets_json(&user.secrets);
    let meta = Value::Object(user.meta.clone());
    let epoch = db_u64(user.session_epoch);
    // One round trip for every write; whether to keep them is decided after.
    let consumed = async {
        match &token {
            Some((key, exp)) => c.execute(&consume, &[key, exp]).await.map(|n| n == 1),
            None => Ok(true),
        }
    };
    let removed = async {
        if remove_fields.is_empty() {
            return Ok(0);
        }
        c.execute(&remove, &[&subject, &id, &remove_fields, &remove_values])
            .await
    };
    let added = async {
        if add_fields.is_empty() {
            return Ok(Vec::new());
        }
        c.query(&add, &[&subject, &id, &add_fields, &add_values])
            .await
    };
    let write_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&subject, &id, &attributes, &secrets, &meta, &epoch];
    let written = c.execute(&write, &write_params);
    let (consumed, _, added, _) =
        futures_util::future::try_join4(consumed, removed, added, written).await?;
    if !consumed {
        rollback(&conn).await?;
        return Ok((UpdateOutcome::TokenUsed, conn));
    }
    if let Some(field) = first_missing(&update.unique_add, &added)? {
        rollback(&conn).await?;
        return Ok((UpdateOutcome::Taken(field), conn));
    }
    c.batch_execute("COMMIT").await?;
    Ok((UpdateOutcome::Updated(user), conn))
}

async fn rebuild(
    conn: Conn,
    subject: &str,
    entries: Vec<(UniqueKey, Uuid)>,
) -> Outcome<Vec<Collision>> {
    // Who keeps each value is decided here, in the order given: the first holder.
    let mut owners: HashMap<(String, String), Uuid> = HashMap::new();
    let mut collisions = Vec::new();
    let (mut fields, mut values, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for (key, id) in entries {
        match owners.get(&(key.field.clone(), key.value.clone())) {
            Some(owner) if *owner == id => {}
            Some(owner) => collisions.push(Collision {
                key,
                kept: *owner,
                left_out: id,
            }),
            None => {
                owners.insert((key.field.clone(), key.value.clone()), id);
                fields.push(key.field);
                values.push(key.value);
                ids.push(id);
            }
        }
    }
    let c = conn.client();
    // Two daemons rebuilding the same subject at once take turns.
    let lock_key = i64::from_be_bytes(
        token_key(&format!("authd-rebuild-unique:{subject}"))[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    c.batch_execute("BEGIN").await?;
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])
        .await?;
    c.execute("DELETE FROM authd_unique WHERE subject = $1", &[&subject])
        .await?;
    c.execute(
        "INSERT INTO authd_unique (subject, field, value, user_id) \
         SELECT $1, f, v, u FROM unnest($2::text[], $3::text[], $4::uuid[]) AS t(f, v, u) \
         WHERE EXISTS (SELECT 1 FROM authd_users WHERE subject = $1 AND id = t.u)",
        &[&subject, &fields, &values, &ids],
    )
    .await?;
    c.batch_execute("COMMIT").await?;
    Ok((collisions, conn))
}

#[async_trait]
impl UserStore for PgStore {
    async fn get(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM authd_users WHERE subject = $1 AND id = $2"
                ))
                .await?;
            let row = c.query_opt(&stmt, &[&subject, &id]).await?;
            Ok((row.as_ref().map(decode).transpose()?, conn))
        })
        .await
    }

    async fn find_by_unique(
        &self,
        subject: &str,
        key: &UniqueKey,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(
                    "SELECT u.id, u.attributes, u.secrets, u.meta, u.session_epoch, u.created_at \
                     FROM authd_unique q JOIN authd_users u ON u.subject = q.subject AND u.id = q.user_id \
                     WHERE q.subject = $1 AND q.field = $2 AND q.value = $3",
                )
                .await?;
            let row = c
                .query_opt(&stmt, &[&subject, &key.field, &key.value])
                .await?;
            Ok((row.as_ref().map(decode).transpose()?, conn))
        })
        .await
    }

    async fn insert(
        &self,
        subject: &str,
        user: NewUser,
    ) -> Result<Result<UserRecord, InsertError>, StoreError> {
        self.with_tx(|conn| insert(conn, subject, user)).await
    }

    async fn update(
        &self,
        subject: &str,
        id: Uuid,
        change: UserUpdate,
    ) -> Result<UpdateOutcome, StoreError> {
        self.with_tx(|conn| update(conn, subject, id, change)).await
    }

    async fn delete(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            // Its unique values go with it (ON DELETE CASCADE), in the same statement.
            let stmt = c
                .prepare_cached(&format!(
                    "DELETE FROM authd_users WHERE subject = $1 AND id = $2 RETURNING {COLUMNS}"
                ))
                .await?;
            let row = c.query_opt(&stmt, &[&subject, &id]).await?;
            Ok((row.as_ref().map(decode).transpose()?, conn))
        })
        .await
    }

    async fn users_page(
        &self,
        subject: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM authd_users WHERE subject = $1 \
                     AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
                ))
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = c.query(&stmt, &[&subject, &after, &limit]).await?;
            let users = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
            Ok((users, conn))
        })
        .await
    }

    async fn session_user(
        &self,
        subject: &str,
        id: Uuid,
        jti: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let key = token_key(jti).to_vec();
        self.with(|conn| async move {
            let c = conn.client();
            // The hot path of `/me`: one statement.
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM authd_users WHERE subject = $1 AND id = $2 \
                     AND NOT EXISTS (SELECT 1 FROM authd_dead_tokens WHERE key = $3)"
                ))
                .await?;
            let row = c.query_opt(&stmt, &[&subject, &id, &key]).await?;
            Ok((row.as_ref().map(decode).transpose()?, conn))
        })
        .await
    }

    async fn unique_of(&self, subject: &str, id: Uuid) -> Result<Vec<UniqueKey>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(
                    "SELECT field, value FROM authd_unique WHERE subject = $1 AND user_id = $2 \
                     ORDER BY field, value",
                )
                .await?;
            let rows = c.query(&stmt, &[&subject, &id]).await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(UniqueKey::new(
                    row.try_get::<_, String>(0)?,
                    row.try_get::<_, String>(1)?,
                ));
            }
            Ok((keys, conn))
        })
        .await
    }

    async fn rebuild_unique(
        &self,
        subject: &str,
        entries: Vec<(UniqueKey, Uuid)>,
    ) -> Result<Vec<Collision>, StoreError> {
        self.with_tx(|conn| rebuild(conn, subject, entries)).await
    }

    async fn subjects(&self) -> Result<Vec<String>, StoreError> {
        self.with(|conn| async move {
            let rows = conn
                .client()
                .query(
                    "SELECT DISTINCT subject FROM authd_users ORDER BY subject",
                    &[],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(row.try_get::<_, String>(0)?);
            }
            Ok((out, conn))
        })
        .await
    }
}
