//! The contract between the authd daemon and its strategy plugins.
//!
//! A strategy (password, magic link, API keys, TOTP) is built from one table of the TOML file
//! by a [`StrategyFactory`], validated without touching any file or socket
//! ([`ValidatedStrategy`]), then instantiated over the daemon's [`Services`] into a live
//! [`Strategy`] that answers the phases it declares.
//!
//! This crate must stay free of HTTP and of any storage engine: the daemon maps verdicts to
//! HTTP responses, and a store backend implements the traits of `authd-store-api` (re-exported
//! here). A wrong password is a [`Rejection`], never an [`Error`]: errors mean the machinery
//! failed.
//!
//! # Adding a strategy type
//! A crate that depends only on this one implements [`StrategyFactory`] (its table),
//! [`ValidatedStrategy`] (its phases) and [`Strategy`] (their answers), declares the token
//! [`Purpose`]s and message kinds it uses, and is listed in the daemon's registry.

pub use authd_store_api::{
    self as store, Backup, Collision, InsertError, Maintenance, MetaStore, NewUser, OutboxStore,
    Store, StoreError, ThrottleStore, TokenStore, UniqueKey, UpdateOutcome, UserRecord, UserStore,
    UserUpdate,
};
pub use toml;

mod clock;
mod config;
mod docs;
mod events;
mod message;
mod pool;
pub mod precis;
mod sealer;
mod strategy;
pub mod throttle;
mod tokens;

pub use clock::Clock;
pub use config::{Problem, Problems, TableReader, join_path, parse_duration, parse_lifetime};
pub use docs::{Answer, FieldDoc, PhaseDoc, table_schema};
pub use events::{Event, Events, NoEvents, names as event_names};
pub use message::{
    Delivery, DurationText, Message, Sender, SenderSpec, Senders, SmtpSpec, SmtpTls, Templates,
    WebhookSpec, kinds, placeholders, render_template,
};
pub use pool::{Busy, HashPool};
pub use sealer::{ClearSealer, Sealer};
pub use strategy::{
    Access, AttributeSpec, AttributeType, BearerUser, Claim, ConfirmationSpec, Credential,
    CredentialInput, Error, FieldErrors, Grant, META_CONFIRMED_AT, META_RESETS, Method, Outcome,
    Params, PhaseRequest, PhaseSpec, Rejection, ResourceSpec, SecondFactor, Services, Session,
    Strategy, StrategyFactory, ValidatedStrategy, Verdict,
};
pub use throttle::{
    Counted, Limit, RequestLimit, RequestLimitSetting, RequestLimitTable, Reservation, Throttle,
    rate_key,
};
pub use tokens::{Claims, Expect, IssuedToken, Purpose, TokenError, TokenSpec, Tokens, check};
