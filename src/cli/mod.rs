//! The command line: `authd serve`, `authd check`, `authd migrate`, `authd store check`,
//! `authd store copy`, `authd bench-hash`, `authd openapi`, `authd config-schema`.
//! The binary's edge: the only place that uses `anyhow` and prints for people.

pub mod bench;
mod check;
mod copy;
mod migrate;
mod serve;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

pub use check::{check, describe, load};
pub use serve::serve;

#[derive(Debug, Parser)]
#[command(
    name = "authd",
    version,
    about = "An authentication daemon configured by a TOML file"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// `text` or `json` (one JSON object per line, one `request` event per request);
        /// overrides `[log] format`.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Validate a configuration file and list its resources, strategies and routes.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The file in force: list, change by change, what a reload from it to --config would
        /// do and whether each change applies live or needs a restart (a dry run of the reload).
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of a config's routes (what `GET /openapi.json` serves).
    Openapi {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the configuration file (for editors: taplo, Even Better TOML).
    ConfigSchema,
    /// Bring the store's schema up to date without serving (safe while daemons run).
    Migrate {
        /// The TOML configuration file naming the store.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Work on the store of a config, with no daemon running on it.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Operate on users: import, export, list, show, delete, unlock.
    Users(users::UsersArgs),
    /// Time each password hash setting (or calibrate one to a target) on this machine.
    BenchHash(bench::BenchHashArgs),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Run the storage engine's integrity check and say what it found.
    Check {
        /// The TOML configuration file naming the store.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Copy every record of one config's store into another config's empty store (users
    /// with their hashes, token state, throttles, the signing key, queued messages). Stop
    /// the daemons of both first.
    Copy {
        /// The config naming the store to copy from.
        #[arg(long)]
        from: PathBuf,
        /// The config naming the store to copy into (it must be empty).
        #[arg(long)]
        to: PathBuf,
    },
}

/// The log on standard error, as `format` says. `RUST_LOG` sets the levels; without it,
/// `info`, and the per-request events (target `authd::request`) only in JSON.
fn init_log(format: crate::config::LogFormat) {
    let default = match format {
        crate::config::LogFormat::Json => "info",
        crate::config::LogFormat::Text => "info,authd::request=off",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        crate::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        crate::config::LogFormat::Text => builder.init(),
    }
}

/// A runtime for the commands that use the store.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, against } => check(&config, against.as_deref()),
        Command::BenchHash(args) => bench::bench_hash_main(&args),
        Command::Migrate { config } => migrate::migrate(&config),
        Command::Openapi { config } => openapi(&config),
        Command::ConfigSchema => {
            println!("{}", crate::config::schema::to_string());
            ExitCode::SUCCESS
        }
        Command::Store(StoreCommand::Check { config }) => store_check(&config),
        Command::Users(args) => users::main(args),
        Command::Store(StoreCommand::Copy { from, to }) => copy::copy(&from, &to),
        Command::Serve { config, log_format } => {
            // The file names the log format: read it before anything is logged (a file that
            // does not load is reported below, once the log is set up).
            let loaded = load(&config);
            let format = log_format
                .as_deref()
                .and_then(crate::config::LogFormat::parse)
                .or_else(|| loaded.as_ref().ok().map(|(c, _)| c.log.format))
                .unwrap_or_default();
            init_log(format);
            let (parsed, text) = match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("authd: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let outcome = runtime.block_on(serve(&config, parsed, &text));
            // A read of the config stuck on a dead file system holds a blocking thread: do
            // not wait for it forever.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("authd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `authd openapi`: the document of a valid config, on standard output.
fn openapi(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok((config, _)) => {
            let doc = crate::openapi::document(&config);
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `authd store check`.
fn store_check(path: &std::path::Path) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    match crate::store::check(&config.store) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
