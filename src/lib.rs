//! authd: an authentication daemon configured by a TOML file.
//!
//! `config` reads and validates the file, `registry` turns it into live strategy plugins,
//! `server` answers HTTP, `store` keeps users and tokens in redb, `tokens` signs JWTs,
//! `senders` hand reset messages to `outbox`, which delivers them durably, and `daemon` wires
//! them together. `cli` is the binary's front end. See ARCHITECTURE.md.

pub mod bench;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod config_file;
pub mod daemon;
pub mod diff;
pub mod outbox;
pub mod registry;
pub mod secret_strength;
pub mod senders;
pub mod server;
pub mod store;
pub mod tokens;

pub use daemon::Daemon;
pub use registry::parse_config;
