//! The contract between the authd daemon and its strategy plugins.
//!
//! A strategy (the password strategy first) is built from one table of the TOML file by a
//! [`StrategyFactory`], validated without touching any file or socket ([`ValidatedStrategy`]),
//! then instantiated over the daemon's [`Services`] into a live [`Strategy`] that answers the
//! phases it declares.
//!
//! This crate must stay free of HTTP and of any storage engine: the daemon maps verdicts to
//! HTTP responses, and the redb store (or a later PostgreSQL one) implements [`UserStore`] and
//! [`TokenStore`]. A wrong password is a [`Rejection`], never an [`Error`]: errors mean the
//! machinery failed.

pub use toml;

mod config;
mod pool;
pub mod precis;
mod sender;
mod store;
mod strategy;
mod tokens;

pub use config::{Problem, Problems, TableReader, parse_duration, parse_lifetime};
pub use pool::{Busy, HashPool};
pub use sender::{
    Delivery, ResetMessage, Sender, SenderSpec, Senders, SmtpSpec, SmtpTls, WebhookSpec,
    placeholders, render_template,
};
pub use store::{
    InsertError, NewUser, SecretChange, ThrottleStore, UniqueKey, UserRecord, UserStore,
};
pub use strategy::{
    AttributeSpec, AttributeType, Error, FieldErrors, Method, Outcome, Params, PhaseRequest,
    PhaseSpec, Rejection, ResourceSpec, Services, Strategy, StrategyFactory, ValidatedStrategy,
    Verdict,
};
pub use tokens::{
    Claims, IssuedToken, Purpose, TokenError, TokenSpec, TokenStore, Tokens, now_secs,
};
