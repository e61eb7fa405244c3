//! `authd serve`: the daemon until SIGINT or SIGTERM; SIGHUP forces a reload.

use std::path::Path;

use crate::config::Config;

/// `authd serve`: runs `config` (read from `path`, whose text was `text`) until SIGINT or
/// SIGTERM.
///
/// # Errors
/// When the daemon cannot start.
pub async fn serve(path: &Path, config: Config, text: &str) -> anyhow::Result<()> {
    let mut daemon = crate::Daemon::start(config, text).await?;
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
