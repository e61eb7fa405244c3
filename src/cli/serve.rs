//! `authd serve`: the daemon until SIGINT or SIGTERM; SIGHUP forces a reload.
//!
//! The signal handlers are installed before the daemon starts, so that once `/healthz`
//! answers, a signal is never lost nor met with its default action (which ends the process):
//! a SIGHUP that arrives while the daemon starts reloads it as soon as it runs, and a SIGTERM
//! or SIGINT stops it cleanly.

use std::path::Path;

use crate::config::Config;

/// `authd serve`: runs `config` (read from `path`, whose text was `text`) until SIGINT or
/// SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed or the daemon cannot start.
pub async fn serve(path: &Path, config: Config, text: &str) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let mut daemon = crate::Daemon::start(config, text).await?;
    let triggers = daemon.watch(path)?;
    signals.run(triggers).await;
    tracing::info!("stopping");
    daemon.shutdown().await;
    Ok(())
}

/// The signals `serve` answers, caught from the moment this is built.
#[cfg(unix)]
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Turns each SIGHUP into a forced reload until SIGTERM or SIGINT.
    async fn run(self, triggers: tokio::sync::mpsc::Sender<crate::daemon::Trigger>) {
        let Signals {
            mut hangup,
            mut terminate,
            mut interrupt,
        } = self;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = triggers.send(crate::daemon::Trigger::Forced).await;
            }
        });
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
}

/// Ctrl-C only, outside Unix.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn run(self, triggers: tokio::sync::mpsc::Sender<crate::daemon::Trigger>) {
        drop(triggers);
        let _ = tokio::signal::ctrl_c().await;
    }
}
