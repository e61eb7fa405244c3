//! The storage contract of authd: what every backend (redb, PostgreSQL) stores and how.
//!
//! The daemon, its HTTP layer, the delivery worker and every strategy name only these traits;
//! a backend crate implements them and nothing else. Backends store records; the policies
//! that decide what a record becomes (lockout windows and back-off in [`throttle`], which
//! tokens may be purged) are written once here and applied by every backend inside its own
//! transaction, so that a second backend cannot drift from the first.
//!
//! What this crate must not do: know HTTP, strategies, a storage engine, or read the clock
//! (every time is passed in, so that policies are exact in tests).
//!
//! A new backend is done when [`conformance::run_all`] passes on it (feature `conformance`).

mod error;
pub mod outbox;
mod records;
pub mod throttle;
mod traits;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::StoreError;
pub use outbox::{Claimed, Job, JobKey, NewJob, OutboxFull, OutboxStats};
pub use records::{
    Collision, InsertError, NewUser, UniqueKey, UpdateOutcome, UserRecord, UserUpdate,
};
pub use throttle::{ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleRecord};
pub use traits::{
    Backup, Maintenance, MetaStore, OutboxStore, PurgeCounts, Store, ThrottleStore, TokenStore,
    UserStore, token_key,
};
