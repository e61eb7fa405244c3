//! What operators do to users (the admin API and `authd users ...`): list, find, show, create,
//! edit, delete, revoke sessions, unlock, send a reset, and import or export users with the
//! password hashes of the systems they come from. Domain rules only: the admin listener and
//! the command line call these.
//!
//! An import line is one JSON object:
//! `{"attributes": {...}, "hashed_password": "..." | {"format": "...", "value": "..."},
//! "password": "...", "strategy": "...", "id": "<uuid>", "confirmed_at": <unix seconds>,
//! "credentials": {"<strategy>": "<hash>"}}`. Every line is checked on its own: a bad line
//! never stops the others or half-writes a user. Exports write the same format.

use std::collections::{BTreeMap, HashSet};

use authd_strategy_api::{
    CredentialInput, Error, Event, FieldErrors, META_CONFIRMED_AT, NewUser, Params, Rejection,
    UniqueKey, UpdateOutcome, UserRecord, UserUpdate, event_names,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::state::Generation;

/// Users written per store transaction during an import.
pub const IMPORT_BATCH: usize = 500;
/// The most users one list page holds.
pub const MAX_PAGE: usize = 1000;

/// Why a line or a request was refused: an answer with the error envelope's parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub fields: Option<FieldErrors>,
}

impl Refusal {
    fn invalid(fields: FieldErrors) -> Refusal {
        Refusal {
            code: "invalid",
            message: "Some fields are invalid".into(),
            fields: Some(fields),
        }
    }

    fn field(field: &str, message: impl Into<String>) -> Refusal {
        Refusal::invalid(FieldErrors::one(field, message))
    }

    fn malformed(message: impl Into<String>) -> Refusal {
        Refusal {
            code: "malformed",
            message: message.into(),
            fields: None,
        }
    }

    /// The JSON of the error envelope.
    pub fn to_json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.fields {
            e["fields"] = json!(f);
        }
        e
    }

    /// As a rejection, for the HTTP error table.
    pub fn into_rejection(self) -> Rejection {
        match self.fields {
            Some(f) => Rejection::Invalid(f),
            None => Rejection::Invalid(FieldErrors::one("body", self.message)),
        }
    }
}

/// A hash given with its format.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HashInput {
    Text(String),
    Tagged { format: String, value: String },
}

/// One user to create, as the admin API and import lines take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    #[serde(default)]
    attributes: Params,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    hashed_password: Option<HashInput>,
    /// Hashes by strategy, for users with several (what exports write).
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default)]
    confirmed_at: Option<u64>,
    #[serde(default)]
    created_at: Option<u64>,
}

/// Reads one import line.
///
/// # Errors
/// A refusal naming what is wrong with the line (never echoing a hash).
pub fn parse_line(line: &str) -> Result<NewUserInput, Refusal> {
    serde_json::from_str(line).map_err(|e| {
        let text = e.to_string();
        // serde's message may quote a value: keep its position and kind only.
        let kind = if e.is_syntax() || e.is_eof() {
            "the line is not valid JSON"
        } else {
            "the line does not have the import format"
        };
        let hint = text
            .split(" at line ")
            .next()
            .filter(|t| t.starts_with("unknown field") || t.starts_with("missing field"))
            .map(|t| format!(": {t}"))
            .unwrap_or_default();
        Refusal::malformed(format!("{kind}{hint}"))
    })
}

/// Checks one user to create and builds it: attributes as a registration checks them, the
/// credentials through their strategies (hashed with their settings, or imported in a format
/// they accept, within bounds).
///
/// # Errors
/// When the machinery fails; a refused user is the inner `Err`.
pub async fn prepare(
    generation: &Generation,
    subject: &str,
    input: NewUserInput,
) -> Result<Result<NewUser, Refusal>, Error> {
    let Some(resource) = generation.registry.resource(subject) else {
        return Ok(Err(Refusal::malformed("no such resource")));
    };
    let (attributes, unique) = match resource.check_new(&input.attributes, &[]) {
        Ok(checked) => checked,
        Err(fields) => return Ok(Err(Refusal::invalid(fields))),
    };
    for name in input.attributes.keys() {
        if resource.attribute(name).is_none() {
            return Ok(Err(Refusal::field(name, "is not an attribute")));
        }
    }
    let mut wanted: Vec<(String, CredentialInput)> = Vec::new();
    let single = match (&input.password, input.hashed_password) {
        (Some(_), Some(_)) => {
            return Ok(Err(Refusal::field(
                "password",
                "give password or hashed_password, not both",
            )));
        }
        (Some(p), None) => Some(CredentialInput::Password(p.clone())),
        (None, Some(HashInput::Text(value))) => Some(CredentialInput::Hashed {
            format: None,
            value,
        }),
        (None, Some(HashInput::Tagged { format, value })) => Some(CredentialInput::Hashed {
            format: Some(format),
            value,
        }),
        (None, None) => None,
    };
    if let Some(credential) = single {
        let strategies: Vec<&str> = generation
            .registry
            .strategies_of(subject)
            .map(|(n, _)| n)
            .collect();
        let name = match (&input.strategy, strategies.as_slice()) {
            (Some(name), _) => name.clone(),
            (None, [only]) => (*only).to_string(),
            (None, _) => {
                return Ok(Err(Refusal::field(
                    "strategy",
                    "is required: the resource has several strategies",
                )));
            }
        };
        wanted.push((name, credential));
    }
    for (name, hash) in input.credentials {
        wanted.push((
            name,
            CredentialInput::Hashed {
                format: None,
                value: hash,
            },
        ));
    }
    let mut secrets = BTreeMap::new();
    for (name, credential) in wanted {
        let Some(strategy) = generation.registry.strategy(subject, &name) else {
            return Ok(Err(Refusal::field(
                "strategy",
                "is not a strategy of this resource",
            )));
        };
        match strategy.credential_secrets(&credential).await? {
            Ok(s) => secrets.extend(s),
            Err(message) => {
                let field = match credential {
                    CredentialInput::Password(_) => "password",
                    CredentialInput::Hashed { .. } => "hashed_password",
                };
                return Ok(Err(Refusal::field(field, message)));
            }
        }
    }
    let mut meta = Map::new();
    if let Some(at) = input.confirmed_at {
        meta.insert(META_CONFIRMED_AT.into(), json!(at));
    }
    Ok(Ok(NewUser {
        id: input.id,
        attributes,
        secrets,
        meta,
        unique,
        created_at: input
            .created_at
            .unwrap_or_else(|| generation.services.clock.now_secs()),
        session_epoch: 0,
    }))
}

fn refusal_of_insert(e: &authd_strategy_api::InsertError) -> Refusal {
    match e {
        authd_strategy_api::InsertError::Taken(field) => {
            Refusal::field(field, "has already been taken")
        }
        authd_strategy_api::InsertError::IdTaken => Refusal::field("id", "has already been taken"),
    }
}

/// `POST /admin/<subject>/users`.
///
/// # Errors
/// When the machinery fails.
pub async fn create(
    generation: &Generation,
    subject: &str,
    input: NewUserInput,
) -> Result<Result<UserRecord, Refusal>, Error> {
    let user = match prepare(generation, subject, input).await? {
        Ok(u) => u,
        Err(r) => return Ok(Err(r)),
    };
    Ok(
        match generation.services.store.insert(subject, user).await? {
            Ok(user) => {
                tracing::info!(target: "authd::admin", action = "create", %subject, user = %user.id, "AD0100 user created by an operator");
                generation.services.events.emit(Event::Account {
                    name: event_names::USER_REGISTERED,
                    subject,
                    strategy: None,
                    user: Some(&user),
                });
                Ok(user)
            }
            Err(e) => Err(refusal_of_insert(&e)),
        },
    )
}

/// What one import line became.
#[derive(Debug, Clone, PartialEq)]
pub enum LineResult {
    Imported(Uuid),
    /// In a dry run: would be imported.
    Valid,
    Refused(Refusal),
}

impl LineResult {
    /// The answer line: `{"line": 7, "id": ...}` or `{"line": 7, "error": {...}}`.
    pub fn to_json(&self, line: u64) -> Value {
        match self {
            LineResult::Imported(id) => json!({ "line": line, "id": id }),
            LineResult::Valid => json!({ "line": line, "valid": true }),
            LineResult::Refused(r) => json!({ "line": line, "error": r.to_json() }),
        }
    }
}

/// An import in progress: lines are checked as they come and written in batches.
pub struct Import<'a> {
    generation: &'a Generation,
    subject: &'a str,
    dry_run: bool,
    batch: Vec<(u64, NewUser)>,
    /// Unique values and ids seen in a dry run (a real run leaves that to the store).
    seen: HashSet<UniqueKey>,
    seen_ids: HashSet<Uuid>,
    pub lines: u64,
    pub imported: u64,
    pub failed: u64,
}

impl<'a> Import<'a> {
    pub fn new(generation: &'a Generation, subject: &'a str, dry_run: bool) -> Import<'a> {
        Import {
            generation,
            subject,
            dry_run,
            batch: Vec::with_capacity(IMPORT_BATCH),
            seen: HashSet::new(),
            seen_ids: HashSet::new(),
            lines: 0,
            imported: 0,
            failed: 0,
        }
    }

    /// Takes one line (numbered from 1); returns the results that are final now.
    ///
    /// # Errors
    /// When the machinery fails.
    pub async fn line(&mut self, text: &str) -> Result<Vec<(u64, LineResult)>, Error> {
        self.lines += 1;
        let n = self.lines;
        if text.trim().is_empty() {
            self.lines -= 1;
            return Ok(Vec::new());
        }
        let prepared = match parse_line(text) {
            Ok(input) => prepare(self.generation, self.subject, input).await?,
            Err(r) => Err(r),
        };
        let user = match prepared {
            Ok(user) => user,
            Err(r) => {
                self.failed += 1;
                return Ok(vec![(n, LineResult::Refused(r))]);
            }
        };
        if self.dry_run {
            let result = self.check_dry(&user).await?;
            match &result {
                LineResult::Refused(_) => self.failed += 1,
                _ => self.imported += 1,
            }
            return Ok(vec![(n, result)]);
        }
        self.batch.push((n, user));
        if self.batch.len() >= IMPORT_BATCH {
            return self.flush().await;
        }
        Ok(Vec::new())
    }

    async fn check_dry(&mut self, user: &NewUser) -> Result<LineResult, Error> {
        let store = &self.generation.services.store;
        for key in &user.unique {
            if self.seen.contains(key) || store.find_by_unique(self.subject, key).await?.is_some() {
                return Ok(LineResult::Refused(Refusal::field(
                    &key.field,
                    "has already been taken",
                )));
            }
        }
        if let Some(id) = user.id
            && (self.seen_ids.contains(&id) || store.get(self.subject, id).await?.is_some())
        {
            return Ok(LineResult::Refused(Refusal::field(
                "id",
                "has already been taken",
            )));
        }
        self.seen.extend(user.unique.iter().cloned());
        self.seen_ids.extend(user.id);
        Ok(LineResult::Valid)
    }

    /// Writes the batch; returns its lines' results.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn flush(&mut self) -> Result<Vec<(u64, LineResult)>, Error> {
        if self.batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = std::mem::take(&mut self.batch);
        let (numbers, users): (Vec<u64>, Vec<NewUser>) = batch.into_iter().unzip();
        let results = self
            .generation
            .services
            .store
            .insert_batch(self.subject, users)
            .await?;
        let mut out = Vec::with_capacity(results.len());
        for (n, result) in numbers.into_iter().zip(results) {
            out.push((
                n,
                match result {
                    Ok(user) => {
                        self.imported += 1;
                        LineResult::Imported(user.id)
                    }
                    Err(e) => {
                        self.failed += 1;
                        LineResult::Refused(refusal_of_insert(&e))
                    }
                },
            ));
        }
        Ok(out)
    }

    /// The summary line.
    pub fn summary(&self) -> Value {
        // In a dry run, `imported` counts the lines that would be.
        json!({ "summary": {
            "lines": self.lines,
            "imported": self.imported,
            "failed": self.failed,
            "dry_run": self.dry_run,
        }})
    }

    /// Logs the import (who: the admin surface; what; counts).
    pub fn log(&self, via: &str) {
        tracing::info!(target: "authd::admin", action = "import", via, subject = %self.subject, lines = self.lines, imported = self.imported, failed = self.failed, dry_run = self.dry_run, "AD0101 users imported by an operator");
    }
}

/// One exported user: the import format.
pub fn export_line(generation: &Generation, subject: &str, user: &UserRecord) -> Value {
    let mut credentials = Map::new();
    for (name, strategy) in generation.registry.strategies_of(subject) {
        if let Some(hash) = strategy.export_credential(user) {
            credentials.insert(name.to_string(), Value::String(hash));
        }
    }
    let mut line = json!({
        "id": user.id,
        "attributes": user.attributes,
        "credentials": credentials,
        "created_at": user.created_at,
    });
    if let Some(at) = user.meta.get(META_CONFIRMED_AT) {
        line["confirmed_at"] = at.clone();
    }
    line
}

/// The operator's view of a user: the API's, plus when it was created and, per strategy, its
/// credential (never a secret) and lockout.
///
/// # Errors
/// When the store fails.
pub async fn detail(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
) -> Result<Value, Error> {
    let mut view = crate::sessions::view(generation, subject, user);
    view["created_at"] = json!(crate::sessions::rfc3339(user.created_at));
    let throttle = generation.services.throttle();
    let mut strategies = Map::new();
    for (name, strategy) in generation.registry.strategies_of(subject) {
        let Some(mut info) = strategy.credential_info(user) else {
            continue;
        };
        let locked_for = match strategy.identity_throttle_key(user) {
            Some(key) => throttle.locked_for(&key).await?,
            None => None,
        };
        info["locked_for"] = json!(locked_for);
        strategies.insert(name.to_string(), info);
    }
    view["strategies"] = Value::Object(strategies);
    Ok(view)
}

/// Finds users of `subject` whose unique value is `identity` (prepared as each attribute
/// prepares it).
///
/// # Errors
/// When the store fails.
pub async fn find(
    generation: &Generation,
    subject: &str,
    identity: &str,
) -> Result<Vec<UserRecord>, Error> {
    let Some(resource) = generation.registry.resource(subject) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<UserRecord> = Vec::new();
    for attr in resource.attributes.iter().filter(|a| a.unique) {
        let Ok(key) = attr.unique_key(&Value::String(identity.to_string())) else {
            continue;
        };
        if let Some(user) = generation
            .services
            .store
            .find_by_unique(subject, &key)
            .await?
            && !found.iter().any(|u| u.id == user.id)
        {
            found.push(user);
        }
    }
    Ok(found)
}

/// `POST .../revoke_sessions`: every token of the user dies.
///
/// # Errors
/// When the store fails.
pub async fn revoke_sessions(
    generation: &Generation,
    subject: &str,
    id: Uuid,
) -> Result<bool, Error> {
    let update = UserUpdate {
        bump_sessions: true,
        ..UserUpdate::default()
    };
    let done = matches!(
        generation
            .services
            .store
            .update(subject, id, update)
            .await?,
        UpdateOutcome::Updated(_)
    );
    if done {
        tracing::info!(target: "authd::admin", action = "revoke_sessions", %subject, user = %id, "AD0102 sessions revoked by an operator");
    }
    Ok(done)
}

/// `POST .../unlock`: clears the user's lockout in every strategy.
///
/// # Errors
/// When the store fails.
pub async fn unlock(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
) -> Result<(), Error> {
    let throttle = generation.services.throttle();
    for (_, strategy) in generation.registry.strategies_of(subject) {
        if let Some(key) = strategy.identity_throttle_key(user) {
            throttle.clear(key).await?;
        }
    }
    tracing::info!(target: "authd::admin", action = "unlock", %subject, user = %user.id, "AD0103 user unlocked by an operator");
    Ok(())
}

/// `POST .../send_reset`: asks every strategy of the resource that has a `reset_request`
/// phase to send the user a reset. `false` when none has.
///
/// # Errors
/// When the machinery fails.
pub async fn send_reset(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
) -> Result<bool, Error> {
    let mut sent = false;
    for (name, strategy) in generation.registry.strategies_of(subject) {
        if !strategy.phases().iter().any(|p| p.name == "reset_request") {
            continue;
        }
        let request = authd_strategy_api::PhaseRequest {
            method: authd_strategy_api::Method::Post,
            params: user.attributes.clone(),
            client_ip: None,
            param: None,
            session: None,
        };
        if matches!(
            strategy.handle("reset_request", request).await?,
            authd_strategy_api::Verdict::Accepted
        ) {
            sent = true;
            tracing::info!(target: "authd::admin", action = "send_reset", %subject, strategy = %name, user = %user.id, "AD0104 reset sent by an operator");
        }
    }
    Ok(sent)
}

/// `DELETE .../users/{id}/credentials/{strategy}`: removes the user's credential of a
/// strategy that allows it (turns a second factor off). `false` when there is none.
///
/// # Errors
/// When the store fails.
pub async fn remove_credential(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
    strategy: &str,
) -> Result<bool, Error> {
    let Some(update) = generation
        .registry
        .strategy(subject, strategy)
        .and_then(|s| s.remove_credential(user))
    else {
        return Ok(false);
    };
    let done = matches!(
        generation
            .services
            .store
            .update(subject, user.id, update)
            .await?,
        UpdateOutcome::Updated(_)
    );
    if done {
        tracing::info!(target: "authd::admin", action = "remove_credential", %subject, %strategy, user = %user.id, "AD0108 credential removed by an operator");
    }
    Ok(done)
}

/// `DELETE .../users/{id}`.
///
/// # Errors
/// When the store fails.
pub async fn delete(generation: &Generation, subject: &str, id: Uuid) -> Result<bool, Error> {
    match generation.services.store.delete(subject, id).await? {
        Some(gone) => {
            tracing::info!(target: "authd::admin", action = "delete", %subject, user = %id, "AD0105 user deleted by an operator");
            generation.services.events.emit(Event::Account {
                name: event_names::USER_DELETED,
                subject,
                strategy: None,
                user: Some(&gone),
            });
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `PATCH .../users/{id}`: attributes with the usual validation and uniqueness.
///
/// # Errors
/// When the machinery fails.
pub async fn update(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
    params: &Params,
) -> Result<Result<UserRecord, Rejection>, Error> {
    let out = crate::accounts::update_user(generation, subject, user, params, true).await?;
    if out.is_ok() {
        tracing::info!(target: "authd::admin", action = "update", %subject, user = %user.id, "AD0106 user changed by an operator");
    }
    Ok(out)
}
