//! The command line: `authd serve` and `authd check`. The binary's edge: the only place
//! that uses `anyhow` and prints for people.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::registry;

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
    },
    /// Validate a configuration file and list its resources, strategies and routes.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Reads and validates a config file; on failure, the error lists every problem.
///
/// # Errors
/// When the file cannot be read or has problems.
pub fn load(path: &Path) -> anyhow::Result<(Config, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match registry::parse_config(&text) {
        Ok(config) => Ok((config, text)),
        Err(problems) => {
            let mut message = format!(
                "{}: {} problem{}",
                path.display(),
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            );
            for p in &problems.0 {
                let _ = write!(message, "\n  {p}");
            }
            Err(anyhow::anyhow!(message))
        }
    }
}

/// What `authd check` prints for a valid config.
pub fn describe(path: &Path, config: &Config) -> String {
    let mut out = format!("{}: OK\n", path.display());
    let _ = writeln!(
        out,
        "listen {}  store {}",
        config.server.listen,
        config.store.path.display()
    );
    for resource in &config.resources {
        let attrs: Vec<String> = resource
            .spec
            .attributes
            .iter()
            .map(|a| {
                let mut s = format!("{} {}", a.name, a.ty.as_str());
                if a.unique {
                    s.push_str(" unique");
                }
                if a.required {
                    s.push_str(" required");
                }
                if let Some(m) = a.max_length {
                    let _ = write!(s, " max_length={m}");
                }
                s
            })
            .collect();
        let _ = writeln!(
            out,
            "resource {} ({})",
            resource.spec.name,
            attrs.join(", ")
        );
        for s in &resource.strategies {
            let _ = writeln!(out, "  strategy {}: {}", s.name, s.validated.describe());
        }
    }
    let _ = writeln!(out, "routes:");
    for route in registry::routes(config) {
        let _ = writeln!(out, "  {:<9} {}", route.methods.join(","), route.path);
    }
    out
}

/// `authd check`.
pub fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok((config, _)) => {
            print!("{}", describe(path, &config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `authd serve`: runs until SIGINT or SIGTERM.
///
/// # Errors
/// When the config is invalid or the daemon cannot start.
pub async fn serve(path: &Path) -> anyhow::Result<()> {
    let (config, text) = load(path)?;
    let daemon = crate::Daemon::start(config, &text).await?;
    wait_for_stop_signal().await;
    tracing::info!("stopping");
    daemon.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
