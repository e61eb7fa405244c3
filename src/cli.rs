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
        /// The file in force: list, change by change, what a reload from it to --config would
        /// do and whether each change applies live or needs a restart (a dry run of the reload).
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Time each password hash setting (or calibrate one to a target) on this machine.
    BenchHash(crate::bench::BenchHashArgs),
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

/// `authd check`: runs exactly the validation a reload runs; with `against`, also the
/// restart-only check, and lists the changes.
pub fn check(path: &Path, against: Option<&Path>) -> ExitCode {
    let (config, text) = match load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let Some(current_path) = against else {
        print!("{}", describe(path, &config));
        return ExitCode::SUCCESS;
    };
    let (current, current_text) = match load(current_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("the file in force does not load: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(current_table), Ok(new_table)) = (
        toml::from_str::<toml::Table>(&current_text),
        toml::from_str::<toml::Table>(&text),
    ) else {
        eprintln!("unreachable: both files parsed above");
        return ExitCode::FAILURE;
    };
    let changes = crate::diff::changes(&current_table, &new_table, &current, &config);
    if changes.is_empty() {
        println!(
            "{} -> {}: no changes",
            current_path.display(),
            path.display()
        );
    } else {
        println!("{} -> {}:", current_path.display(), path.display());
        for change in &changes {
            println!("  {change}");
        }
    }
    let refused = crate::daemon::restart_only_changes(&current, &config);
    if refused.is_empty() {
        println!("a reload would apply these changes live");
        ExitCode::SUCCESS
    } else {
        println!("a reload would be REFUSED as a whole; restart to apply:");
        for p in &refused.0 {
            println!("  {p}");
        }
        ExitCode::FAILURE
    }
}

/// `authd serve`: runs until SIGINT or SIGTERM.
///
/// # Errors
/// When the config is invalid or the daemon cannot start.
pub async fn serve(path: &Path) -> anyhow::Result<()> {
    let (config, text) = load(path)?;
    let mut daemon = crate::Daemon::start(config, &text).await?;
    let triggers = daemon.watch(path)?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = triggers.send(crate::daemon::Trigger::Forced).await;
            }
        });
    }
    #[cfg(not(unix))]
    drop(triggers);
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
