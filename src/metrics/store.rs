//! The store, timed: a wrapper implementing every store trait that measures each call into
//! `authd_store_operation_seconds{op}` and forwards it unchanged. Installed only with
//! `[metrics]`, so the daemon without it runs on the bare backend.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use authd_strategy_api::store::{
    Claimed, Job, JobKey, NewJob, OutboxFull, OutboxStats, PurgeCounts,
};
use authd_strategy_api::store::{ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleRecord};
use authd_strategy_api::{
    Backup, Collision, InsertError, Maintenance, MetaStore, NewUser, OutboxStore, Store,
    StoreError, ThrottleStore, TokenStore, UniqueKey, UpdateOutcome, UserRecord, UserStore,
    UserUpdate,
};
use uuid::Uuid;

use super::{AtomicHistogram, Metrics};

type R<T> = Result<T, StoreError>;

/// The label of each [`Op`], in its order.
const OPS: [&str; 18] = [
    "get",
    "find_by_unique",
    "insert",
    "update",
    "delete",
    "users_page",
    "session_user",
    "unique_of",
    "is_dead",
    "kill",
    "consume",
    "throttle_get",
    "throttle_apply",
    "meta_get",
    "meta_write",
    "outbox_enqueue",
    "outbox_claim",
    "outbox_settle",
];

/// The operations timed; each one's label is its name in [`OPS`].
#[derive(Clone, Copy)]
enum Op {
    Get,
    FindByUnique,
    Insert,
    Update,
    Delete,
    UsersPage,
    SessionUser,
    UniqueOf,
    IsDead,
    Kill,
    Consume,
    ThrottleGet,
    ThrottleApply,
    MetaGet,
    MetaWrite,
    OutboxEnqueue,
    OutboxClaim,
    OutboxSettle,
}

/// One histogram per operation, resolved when the store is wrapped.
struct Timers([AtomicHistogram; OPS.len()]);

impl Timers {
    fn of(&self, op: Op) -> &AtomicHistogram {
        &self.0[op as usize]
    }
}

/// A [`Store`] whose calls are timed.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    timers: Timers,
}

impl TimedStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: &Metrics) -> Arc<dyn Store> {
        Arc::new(TimedStore {
            inner,
            timers: Timers(OPS.map(|op| metrics.store_op(op))),
        })
    }
}

macro_rules! timed {
    ($self:ident, $op:expr, $call:expr) => {{
        let started = Instant::now();
        let out = $call.await;
        $self
            .timers
            .of($op)
            .observe(started.elapsed().as_secs_f64());
        out
    }};
}

#[async_trait]
impl UserStore for TimedStore {
    async fn get(&self, s: &str, id: Uuid) -> R<Option<UserRecord>> {
        timed!(self, Op::Get, self.inner.get(s, id))
    }
    async fn find_by_unique(&self, s: &str, k: &UniqueKey) -> R<Option<UserRecord>> {
        timed!(self, Op::FindByUnique, self.inner.find_by_unique(s, k))
    }
    async fn insert(&self, s: &str, u: NewUser) -> R<Result<UserRecord, InsertError>> {
        timed!(self, Op::Insert, self.inner.insert(s, u))
    }
    async fn insert_batch(
        &self,
        s: &str,
        users: Vec<NewUser>,
    ) -> R<Vec<Result<UserRecord, InsertError>>> {
        timed!(self, Op::Insert, self.inner.insert_batch(s, users))
    }
    async fn update(&self, s: &str, id: Uuid, u: UserUpdate) -> R<UpdateOutcome> {
        timed!(self, Op::Update, self.inner.update(s, id, u))
    }
    async fn delete(&self, s: &str, id: Uuid) -> R<Option<UserRecord>> {
        timed!(self, Op::Delete, self.inner.delete(s, id))
    }
    async fn users_page(&self, s: &str, a: Option<Uuid>, l: usize) -> R<Vec<UserRecord>> {
        timed!(self, Op::UsersPage, self.inner.users_page(s, a, l))
    }
    async fn session_user(&self, s: &str, id: Uuid, jti: &str) -> R<Option<UserRecord>> {
        timed!(self, Op::SessionUser, self.inner.session_user(s, id, jti))
    }
    async fn unique_of(&self, s: &str, id: Uuid) -> R<Vec<UniqueKey>> {
        timed!(self, Op::UniqueOf, self.inner.unique_of(s, id))
    }
    async fn rebuild_unique(&self, s: &str, e: Vec<(UniqueKey, Uuid)>) -> R<Vec<Collision>> {
        self.inner.rebuild_unique(s, e).await
    }
    async fn subjects(&self) -> R<Vec<String>> {
        self.inner.subjects().await
    }
}

#[async_trait]
impl TokenStore for TimedStore {
    async fn is_dead(&self, jti: &str) -> R<bool> {
        timed!(self, Op::IsDead, self.inner.is_dead(jti))
    }
    async fn kill(&self, jti: &str, e: u64) -> R<()> {
        timed!(self, Op::Kill, self.inner.kill(jti, e))
    }
    async fn consume(&self, jti: &str, e: u64) -> R<bool> {
        timed!(self, Op::Consume, self.inner.consume(jti, e))
    }
}

#[async_trait]
impl ThrottleStore for TimedStore {
    async fn throttle_get(&self, k: &ThrottleKey) -> R<Option<ThrottleRecord>> {
        timed!(self, Op::ThrottleGet, self.inner.throttle_get(k))
    }
    async fn throttle_apply(
        &self,
        ops: Vec<(ThrottleKey, ThrottleOp)>,
        now: u64,
    ) -> R<Vec<ThrottleOutcome>> {
        timed!(self, Op::ThrottleApply, self.inner.throttle_apply(ops, now))
    }
}

#[async_trait]
impl MetaStore for TimedStore {
    async fn meta_get(&self, k: &str) -> R<Option<Vec<u8>>> {
        timed!(self, Op::MetaGet, self.inner.meta_get(k))
    }
    async fn meta_put_if_absent(&self, k: &str, v: Vec<u8>) -> R<Vec<u8>> {
        timed!(self, Op::MetaWrite, self.inner.meta_put_if_absent(k, v))
    }
    async fn meta_swap(&self, k: &str, e: Option<Vec<u8>>, n: Option<Vec<u8>>) -> R<bool> {
        timed!(self, Op::MetaWrite, self.inner.meta_swap(k, e, n))
    }
}

#[async_trait]
impl OutboxStore for TimedStore {
    async fn outbox_enqueue(&self, j: NewJob, max: u64, now: u64) -> R<Result<JobKey, OutboxFull>> {
        timed!(
            self,
            Op::OutboxEnqueue,
            self.inner.outbox_enqueue(j, max, now)
        )
    }
    async fn outbox_claim(&self, now: u64, limit: usize) -> R<Claimed> {
        timed!(self, Op::OutboxClaim, self.inner.outbox_claim(now, limit))
    }
    async fn outbox_complete(&self, key: JobKey) -> R<()> {
        timed!(self, Op::OutboxSettle, self.inner.outbox_complete(key))
    }
    async fn outbox_retry(&self, key: JobKey, next: u64, attempts: u32, error: String) -> R<()> {
        timed!(
            self,
            Op::OutboxSettle,
            self.inner.outbox_retry(key, next, attempts, error)
        )
    }
    async fn outbox_stats(&self, now: u64) -> R<OutboxStats> {
        self.inner.outbox_stats(now).await
    }
}

#[async_trait]
impl Maintenance for TimedStore {
    async fn purge(&self, now: u64) -> R<PurgeCounts> {
        self.inner.purge(now).await
    }
    async fn health(&self) -> R<()> {
        self.inner.health().await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[async_trait]
impl Backup for TimedStore {
    async fn dead_tokens_page(&self, a: Option<[u8; 32]>, l: usize) -> R<Vec<([u8; 32], u64)>> {
        self.inner.dead_tokens_page(a, l).await
    }
    async fn put_dead_token(&self, k: [u8; 32], e: u64) -> R<()> {
        self.inner.put_dead_token(k, e).await
    }
    async fn throttles_page(
        &self,
        a: Option<ThrottleKey>,
        l: usize,
    ) -> R<Vec<(ThrottleKey, ThrottleRecord)>> {
        self.inner.throttles_page(a, l).await
    }
    async fn put_throttle(&self, k: ThrottleKey, r: ThrottleRecord) -> R<()> {
        self.inner.put_throttle(k, r).await
    }
    async fn meta_all(&self) -> R<Vec<(String, Vec<u8>)>> {
        self.inner.meta_all().await
    }
    async fn outbox_page(&self, a: Option<JobKey>, l: usize) -> R<Vec<Job>> {
        self.inner.outbox_page(a, l).await
    }
    async fn put_job(&self, job: Job) -> R<()> {
        self.inner.put_job(job).await
    }
    async fn is_empty(&self) -> R<bool> {
        self.inner.is_empty().await
    }
}
