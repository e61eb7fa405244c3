//! What happens in authd, as strategies and the daemon report it: measurements for metrics
//! (hash times, tokens issued, lockouts) and account events for webhooks (`user.registered`,
//! `user.signed_in` ...). The daemon's [`Events`] turns them into Prometheus series and
//! signed, durable webhooks; strategies only report.
//!
//! Must not carry a password, a hash, a token or an address: events end up in labels and in
//! other systems.

use crate::UserRecord;

/// One thing that happened.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A password was hashed (`verify: false`) or verified (`verify: true`) on the pool.
    Hashed {
        algorithm: &'a str,
        verify: bool,
        seconds: f64,
    },
    /// A stored hash was replaced by one of the configured algorithm at sign-in.
    Rehashed { from: &'a str, to: &'a str },
    /// A token was issued, by purpose (`user`, `password_reset` ...).
    TokenIssued { purpose: &'a str },
    /// A key got locked out (`kind`: `identity` or `address`).
    LockedOut { kind: &'static str },
    /// An account event, for the `[events]` webhook: `name` is one of [`names`].
    Account {
        name: &'static str,
        subject: &'a str,
        strategy: Option<&'a str>,
        user: Option<&'a UserRecord>,
    },
}

/// The account event names.
pub mod names {
    pub const USER_REGISTERED: &str = "user.registered";
    pub const USER_SIGNED_IN: &str = "user.signed_in";
    pub const USER_SIGN_IN_FAILED: &str = "user.sign_in_failed";
    pub const USER_LOCKED_OUT: &str = "user.locked_out";
    pub const PASSWORD_RESET: &str = "password.reset";
    pub const PASSWORD_CHANGED: &str = "password.changed";
    pub const USER_DELETED: &str = "user.deleted";
    pub const ALL: &[&str] = &[
        USER_REGISTERED,
        USER_SIGNED_IN,
        USER_SIGN_IN_FAILED,
        USER_LOCKED_OUT,
        PASSWORD_RESET,
        PASSWORD_CHANGED,
        USER_DELETED,
    ];
}

/// Where events go. Must return at once (no I/O on the caller's path).
pub trait Events: Send + Sync {
    fn emit(&self, event: Event<'_>);
}

/// Drops every event (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn emit(&self, _: Event<'_>) {}
}
