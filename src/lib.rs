//! authd: an authentication daemon configured by a TOML file.
//!
//! `config` reads and validates the file, `registry` turns it into live strategy plugins,
//! `daemon` wires a generation of them with the store and reloads it, `http` answers requests
//! and `sessions` holds the rules of signed-in users, `tokens` signs JWTs, `delivery` sends
//! messages through the store's outbox, `store` opens the configured backend, `metrics` counts
//! (Prometheus) and `events` turns what happens into series and account webhooks. `state` is what
//! a request reads. `openapi` describes a config's routes. `pages` compiles and renders the hosted
//! pages' templates (`http::pages` serves them). `cli` is the binary's front end. See
//! ARCHITECTURE.md.

pub mod accounts;
pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod events;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod registry;
pub mod sessions;
pub mod state;
pub mod store;
pub mod store_copy;
pub mod store_url;
pub mod tokens;

pub use daemon::Daemon;
pub use registry::parse_config;
