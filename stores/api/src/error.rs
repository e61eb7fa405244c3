//! The one error type of the storage contract.

/// The store failed: the machinery, never the answer to a question (a taken value, a used
/// token or a missing user are answers, see [`crate::UpdateOutcome`]).
///
/// The HTTP layer answers [`StoreError::Unavailable`] with `503` and `Retry-After` (the
/// cause goes away: a database comes back, disk space returns), and [`StoreError::Corrupt`]
/// with `500`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot serve now: the database is unreachable, the disk is full, a
    /// transaction could not commit. Retrying later may succeed; the backend recovers by
    /// itself when the cause goes.
    #[error("ST0001 store unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be read (a damaged page, a record of an unknown format).
    #[error("ST0002 stored data is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
