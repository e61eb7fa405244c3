//! Users and the unique index (forward: value -> user; by user: the values a user holds).

use async_trait::async_trait;
use authd_store_api::{
    Collision, InsertError, NewUser, StoreError, UniqueKey, UpdateOutcome, UserRecord, UserStore,
    UserUpdate, token_key,
};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use crate::tables::*;
use crate::{Outcome, RedbStore};

fn read_user(
    table: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
    subject: &str,
    id: u128,
) -> Outcome<Option<UserRecord>> {
    let found = table.get((subject, id))?;
    Ok(found
        .map(|g| StoredUserV1::decode(id, g.value()))
        .transpose()?)
}

/// Adds `key` for `id`: `Ok(false)` if another user holds it.
fn add_unique(tx: &WriteTransaction, subject: &str, id: u128, key: &UniqueKey) -> Outcome<bool> {
    let mut unique = tx.open_table(UNIQUE)?;
    let k = (subject, key.field.as_str(), key.value.as_str());
    if let Some(owner) = unique.get(k)?.map(|g| g.value()) {
        return Ok(owner == id);
    }
    unique.insert(k, id)?;
    tx.open_table(UNIQUE_BY_USER)?
        .insert((subject, id, key.field.as_str(), key.value.as_str()), ())?;
    Ok(true)
}

fn remove_unique(tx: &WriteTransaction, subject: &str, id: u128, key: &UniqueKey) -> Outcome<()> {
    let mut unique = tx.open_table(UNIQUE)?;
    let k = (subject, key.field.as_str(), key.value.as_str());
    if unique.get(k)?.map(|g| g.value()) == Some(id) {
        unique.remove(k)?;
        tx.open_table(UNIQUE_BY_USER)?.remove((
            subject,
            id,
            key.field.as_str(),
            key.value.as_str(),
        ))?;
    }
    Ok(())
}

fn held_by(
    table: &impl ReadableTable<(&'static str, u128, &'static str, &'static str), ()>,
    subject: &str,
    id: u128,
) -> Outcome<Vec<UniqueKey>> {
    let mut out = Vec::new();
    for entry in table.range((subject, id, "", "")..)? {
        let (key, _) = entry?;
        let (s, user, field, value) = key.value();
        if s != subject || user != id {
            break;
        }
        out.push(UniqueKey::new(field, value));
    }
    Ok(out)
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

#[async_trait]
impl UserStore for RedbStore {
    async fn get(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            read_user(&tx.open_table(USERS)?, subject, id.as_u128())
        })
    }

    async fn find_by_unique(
        &self,
        subject: &str,
        key: &UniqueKey,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let unique = tx.open_table(UNIQUE)?;
            let Some(id) = unique
                .get((subject, key.field.as_str(), key.value.as_str()))?
                .map(|g| g.value())
            else {
                return Ok(None);
            };
            read_user(&tx.open_table(USERS)?, subject, id)
        })
    }

    async fn insert(
        &self,
        subject: &str,
        user: NewUser,
    ) -> Result<Result<UserRecord, InsertError>, StoreError> {
        let subject = subject.to_string();
        self.write(move |db| {
            let record = UserRecord {
                id: user.id.unwrap_or_else(Uuid::new_v4),
                attributes: user.attributes,
                secrets: user.secrets,
                meta: user.meta,
                session_epoch: user.session_epoch,
                created_at: user.created_at,
            };
            let id = record.id.as_u128();
            let tx = db.begin_write()?;
            {
                let mut users = tx.open_table(USERS)?;
                if users.get((subject.as_str(), id))?.is_some() {
                    return Ok(Err(InsertError::IdTaken));
                }
                for key in &user.unique {
                    if !add_unique(&tx, &subject, id, key)? {
                        // Dropping the transaction aborts it.
                        return Ok(Err(InsertError::Taken(key.field.clone())));
                    }
                }
                users.insert(
                    (subject.as_str(), id),
                    StoredUserV1::encode(&record)?.as_slice(),
                )?;
            }
            tx.commit()?;
            Ok(Ok(record))
        })
        .await
    }

    async fn insert_batch(
        &self,
        subject: &str,
        users: Vec<NewUser>,
    ) -> Result<Vec<Result<UserRecord, InsertError>>, StoreError> {
        let subject = subject.to_string();
        self.write(move |db| {
            // One durable commit for the whole batch; a refused user is undone alone by
            // checking everything before writing it.
            let tx = db.begin_write()?;
            let mut out = Vec::with_capacity(users.len());
            {
                let mut table = tx.open_table(USERS)?;
                let mut unique = tx.open_table(UNIQUE)?;
                let mut by_user = tx.open_table(UNIQUE_BY_USER)?;
                for user in users {
                    let record = UserRecord {
                        id: user.id.unwrap_or_else(Uuid::new_v4),
                        attributes: user.attributes,
                        secrets: user.secrets,
                        meta: user.meta,
                        session_epoch: user.session_epoch,
                        created_at: user.created_at,
                    };
                    let id = record.id.as_u128();
                    if table.get((subject.as_str(), id))?.is_some() {
                        out.push(Err(InsertError::IdTaken));
                        continue;
                    }
                    let mut taken = None;
                    for key in &user.unique {
                        let k = (subject.as_str(), key.field.as_str(), key.value.as_str());
                        if unique.get(k)?.is_some_and(|g| g.value() != id) {
                            taken = Some(key.field.clone());
                            break;
                        }
                    }
                    if let Some(field) = taken {
                        out.push(Err(InsertError::Taken(field)));
                        continue;
                    }
                    for key in &user.unique {
                        unique.insert(
                            (subject.as_str(), key.field.as_str(), key.value.as_str()),
                            id,
                        )?;
                        by_user.insert(
                            (subject.as_str(), id, key.field.as_str(), key.value.as_str()),
                            (),
                        )?;
                    }
                    table.insert(
                        (subject.as_str(), id),
                        StoredUserV1::encode(&record)?.as_slice(),
                    )?;
                    out.push(Ok(record));
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn update(
        &self,
        subject: &str,
        id: Uuid,
        update: UserUpdate,
    ) -> Result<UpdateOutcome, StoreError> {
        let subject = subject.to_string();
        self.write(move |db| {
            let id = id.as_u128();
            let tx = db.begin_write()?;
            let user = {
                let Some(mut user) = read_user(&tx.open_table(USERS)?, &subject, id)? else {
                    return Ok(UpdateOutcome::NotFound);
                };
                for (field, expected) in &update.expect_secrets {
                    if user.secrets.get(field) != expected.as_ref() {
                        return Ok(UpdateOutcome::Conflict);
                    }
                }
                if update.expect_epoch.is_some_and(|e| e != user.session_epoch) {
                    return Ok(UpdateOutcome::Conflict);
                }
                if let Some((jti, exp)) = &update.consume {
                    let mut dead = tx.open_table(DEAD_TOKENS)?;
                    let key = token_key(jti);
                    if dead.get(key.as_slice())?.is_some() {
                        return Ok(UpdateOutcome::TokenUsed);
                    }
                    dead.insert(key.as_slice(), *exp)?;
                }
                for key in &update.unique_remove {
                    remove_unique(&tx, &subject, id, key)?;
                }
                for key in &update.unique_add {
                    if !add_unique(&tx, &subject, id, key)? {
                        return Ok(UpdateOutcome::Taken(key.field.clone()));
                    }
                }
                apply_update(&mut user, &update);
                tx.open_table(USERS)?.insert(
                    (subject.as_str(), id),
                    StoredUserV1::encode(&user)?.as_slice(),
                )?;
                user
            };
            tx.commit()?;
            Ok(UpdateOutcome::Updated(user))
        })
        .await
    }

    async fn delete(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let subject = subject.to_string();
        self.write(move |db| {
            let id = id.as_u128();
            let tx = db.begin_write()?;
            let user = {
                let mut users = tx.open_table(USERS)?;
                let Some(user) = read_user(&users, &subject, id)? else {
                    return Ok(None);
                };
                users.remove((subject.as_str(), id))?;
                let held = held_by(&tx.open_table(UNIQUE_BY_USER)?, &subject, id)?;
                for key in &held {
                    remove_unique(&tx, &subject, id, key)?;
                }
                user
            };
            tx.commit()?;
            Ok(Some(user))
        })
        .await
    }

    async fn users_page(
        &self,
        subject: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let subject = subject.to_string();
        self.write(move |db| {
            let tx = db.begin_read()?;
            let users = tx.open_table(USERS)?;
            let start = match after {
                None => 0,
                Some(id) => match id.as_u128().checked_add(1) {
                    Some(next) => next,
                    None => return Ok(Vec::new()),
                },
            };
            let mut out = Vec::with_capacity(limit.min(1024));
            for entry in users.range((subject.as_str(), start)..=(subject.as_str(), u128::MAX))? {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = entry?;
                out.push(StoredUserV1::decode(key.value().1, value.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn session_user(
        &self,
        subject: &str,
        id: Uuid,
        jti: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            if tx
                .open_table(DEAD_TOKENS)?
                .get(token_key(jti).as_slice())?
                .is_some()
            {
                return Ok(None);
            }
            read_user(&tx.open_table(USERS)?, subject, id.as_u128())
        })
    }

    async fn unique_of(&self, subject: &str, id: Uuid) -> Result<Vec<UniqueKey>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            held_by(&tx.open_table(UNIQUE_BY_USER)?, subject, id.as_u128())
        })
    }

    async fn rebuild_unique(
        &self,
        subject: &str,
        entries: Vec<(UniqueKey, Uuid)>,
    ) -> Result<Vec<Collision>, StoreError> {
        let subject = subject.to_string();
        self.write(move |db| {
            let tx = db.begin_write()?;
            let mut collisions = Vec::new();
            {
                let mut unique = tx.open_table(UNIQUE)?;
                let mut by_user = tx.open_table(UNIQUE_BY_USER)?;
                unique.retain(|(s, _, _), _| s != subject)?;
                by_user.retain(|(s, _, _, _), ()| s != subject)?;
                for (key, id) in entries {
                    let k = (subject.as_str(), key.field.as_str(), key.value.as_str());
                    let owner = unique.get(k)?.map(|g| g.value());
                    match owner {
                        Some(owner) if owner == id.as_u128() => {}
                        Some(owner) => collisions.push(Collision {
                            key: key.clone(),
                            kept: Uuid::from_u128(owner),
                            left_out: id,
                        }),
                        None => {
                            unique.insert(k, id.as_u128())?;
                            by_user.insert((subject.as_str(), id.as_u128(), k.1, k.2), ())?;
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(collisions)
        })
        .await
    }

    async fn subjects(&self) -> Result<Vec<String>, StoreError> {
        self.write(|db| {
            let tx = db.begin_read()?;
            let users = tx.open_table(USERS)?;
            let mut out: Vec<String> = Vec::new();
            let mut from = String::new();
            loop {
                let next = users
                    .range((from.as_str(), 0u128)..)?
                    .next()
                    .transpose()?
                    .map(|(k, _)| k.value().0.to_string());
                let Some(subject) = next else { break };
                // The smallest string greater than every `subject`-prefixed key is subject+"\0".
                from = format!("{subject}\0");
                out.push(subject);
            }
            Ok(out)
        })
        .await
    }
}

/// Whether the users table is empty (for `is_empty`).
pub(crate) fn users_len(db: &redb::Database) -> Outcome<u64> {
    let tx = db.begin_read()?;
    Ok(tx.open_table(USERS)?.len()? + tx.open_table(UNIQUE)?.len()?)
}
