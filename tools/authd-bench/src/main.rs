//! `authd-bench`: authd's load benchmark. It starts the real `authd` binary as a child process
//! on a free loopback port with a temporary database, loads it with its own HTTP client, and
//! sets the figures next to the ceilings measured in the same run: the hash-only loop on every
//! core and a bare hyper server. See BENCHMARKS.md for how to read them.
//!
//! It must not link the daemon: it drives the binary the operator built, over its command line
//! and HTTP, as any client would. From authd it shares only the hash code (`authd-password`,
//! for the hash-only ceiling and to read a config's password strategy). It addresses nothing
//! but 127.0.0.1.

mod ab;
mod http;
mod load;
mod output;
mod pg;
mod process;
mod report;
mod setup;
mod soak;
mod system;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use authd_password::HashParams;
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "authd-bench",
    version,
    about = "Load a daemon started for the purpose over loopback, next to the hash-only and \
             bare-HTTP ceilings measured in the same run"
)]
pub(crate) struct Cli {
    /// The authd binary to start (default: `authd` next to this executable, as
    /// `cargo build --release` puts them both in target/release/).
    #[arg(long, value_name = "PATH")]
    pub(crate) authd: Option<PathBuf>,
    /// Load the daemon with this config file (its listen address and store path are replaced
    /// by a free loopback port and a temporary database; `authd check` validates it first).
    /// Default: one `user` resource with a password strategy hashing with --algorithm at
    /// OWASP's parameters.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// The hash of the default config: argon2id m=19456 t=2 p=1, scrypt log_n=17 r=8 p=1 or
    /// bcrypt cost=12.
    #[arg(
        long,
        value_enum,
        default_value = "argon2id",
        conflicts_with = "config"
    )]
    pub(crate) algorithm: Algorithm,
    /// Sign tokens with this `tokens.signing_algorithm` (EdDSA, ES256, RS256, HS256, HS384,
    /// HS512), in the default config or the one given: compares `/me` across algorithms.
    /// Default: the config's own.
    #[arg(long, value_name = "ALG")]
    pub(crate) signing_algorithm: Option<String>,
    /// Users registered before the measurements.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) users: u32,
    /// Requests in flight at once, per measured phase.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) concurrency: u32,
    /// How long each measured phase runs (100ms to 10m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// The store: `redb` alone, or `postgres`, measured next to redb in the same run (each
    /// with a daemon of its own).
    #[arg(long, value_enum, default_value = "redb")]
    pub(crate) store: StoreKind,
    /// With `--store postgres`: the database, e.g. `postgres://postgres@127.0.0.1:5432/test`.
    /// The run works in a schema of its own, dropped at the end.
    #[arg(long, value_name = "URL", required_if_eq("store", "postgres"))]
    pub(crate) database_url: Option<String>,
    /// Instead of the whole benchmark, compare `/me` of the config (A: --config or the default)
    /// with the one of FILE (B), in alternated rounds (A B, B A, ...) of --duration each, on
    /// redb: throughput and the daemons' CPU per request, and their B / A ratios.
    #[arg(long, value_name = "FILE", conflicts_with = "metrics_cost")]
    pub(crate) versus: Option<PathBuf>,
    /// As --versus, with B the same config run by another authd binary (before/after a
    /// change); with --versus or --metrics-cost, B's binary.
    #[arg(long, value_name = "PATH")]
    pub(crate) versus_authd: Option<PathBuf>,
    /// As --versus, with B the same config plus a `[metrics]` listener: what metrics cost.
    #[arg(long)]
    pub(crate) metrics_cost: bool,
    /// Instead of the whole benchmark: a steady mixed load (/me, sign-ins, registrations) for
    /// this long (10s to 1h), the daemon's memory read every tenth of it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with_all = ["versus", "metrics_cost"])]
    pub(crate) soak: Option<Duration>,
    /// Pairs of rounds of --versus / --metrics-cost.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) rounds: u32,
    /// Print JSON instead of text (an array of reports with `--store postgres`).
    #[arg(long)]
    pub(crate) json: bool,
    /// Internal: run only the bare hyper server, print its port, and serve until standard input
    /// closes (authd-bench starts itself this way, so that both servers it compares run as
    /// processes of their own).
    #[arg(long, hide = true)]
    pub(crate) serve_bare: bool,
}

/// The stores `--store` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    Redb,
    Postgres,
}

/// A hash algorithm, as named in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Algorithm {
    Argon2id,
    Scrypt,
    Bcrypt,
}

impl Algorithm {
    /// OWASP's recommended parameters: [`HashParams::OWASP`].
    pub(crate) fn owasp(self) -> HashParams {
        // Declared in the same order as `HashParams::OWASP`.
        HashParams::OWASP[self as usize]
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = if cli.serve_bare {
        process::serve_bare()
    } else {
        std::env::current_exe()
            .context("cannot find this executable")
            .and_then(|exe| process::locate_authd(cli.authd.as_deref(), &exe))
            .and_then(|authd| {
                if let Some(total) = cli.soak {
                    soak::run(&cli, &authd, total)
                } else if cli.versus.is_some() || cli.metrics_cost || cli.versus_authd.is_some() {
                    ab::run(&cli, &authd)
                } else {
                    load::run(&cli, &authd)
                }
            })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authd-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_starts_from_its_own_owasp_setting() {
        for (algorithm, name) in [
            (Algorithm::Argon2id, "argon2id"),
            (Algorithm::Scrypt, "scrypt"),
            (Algorithm::Bcrypt, "bcrypt"),
        ] {
            assert_eq!(algorithm.owasp().algorithm().name(), name);
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
