//! Live reload: a `notify` watcher on the config file's folder (saves by rename and Kubernetes
//! `..data` swaps are seen; other files, such as the database, are ignored), SIGHUP, a
//! debounce, and [`Core::reload`]: validate the whole file, refuse it if a restart-only key
//! changed, build a new generation beside the old one, swap.
//!
//! The file is read with bounds (size, regular files only, a time limit), so that no file at
//! the config path can exhaust memory or block the loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::Problems;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Core, StartError, generation};
use crate::config::file::ReadError;
use crate::state::ReloadFailure;

/// Quiet time after a file event before reloading: editors and ConfigMap swaps make bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// The longest a burst of events can delay a reload.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// The longest a read of the config file may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in the config file's folder: skipped if the file's content is the one in force.
    FileEvent,
    /// SIGHUP or an explicit request: always reloads (a secret file may have changed).
    Forced,
}

impl Core {
    /// Validates `text` as a reload would and, if it passes, swaps it in. Returns the new
    /// generation number.
    pub(super) async fn reload(&self, text: &str) -> Result<u64, Problems> {
        let _one_at_a_time = self.reloading.lock().await;
        let outcome = self.try_reload(text).await;
        match &outcome {
            Ok(number) => {
                if let Some(m) = &self.shared.metrics {
                    m.reloaded("applied");
                }
                tracing::info!(generation = number, file_hash = %generation::file_hash(text), "RL0100 config reloaded");
                self.shared.with_status(|s| s.last_reload_error = None);
            }
            Err(problems) => {
                if let Some(m) = &self.shared.metrics {
                    m.reloaded("rejected");
                }
                for p in &problems.0 {
                    tracing::error!(problem = %p, "RL0001 config reload rejected; the previous config stays in force");
                }
                let failure = ReloadFailure {
                    at: self.shared.clock.now_secs(),
                    file_hash: Some(generation::file_hash(text)),
                    problems: problems.0.iter().map(ToString::to_string).collect(),
                };
                self.shared
                    .with_status(|s| s.last_reload_error = Some(failure));
            }
        }
        outcome
    }

    async fn try_reload(&self, text: &str) -> Result<u64, Problems> {
        let config = crate::registry::parse_config(text)?;
        let refused = crate::config::refused_changes(&self.start_config, &config);
        if !refused.is_empty() {
            return Err(refused);
        }
        let current = self.shared.current.load_full();
        let number = current.number + 1;
        let next =
            generation::build(&self.parts(), &config, text, number, Some(&current.pool)).await?;
        self.shared.current.store(Arc::new(next));
        Ok(number)
    }

    fn record_read_failure(&self, e: &ReadError) {
        if let Some(m) = &self.shared.metrics {
            m.reloaded("rejected");
        }
        tracing::error!(error = %e, "RL0002 cannot read the config file; the previous config stays in force");
        let failure = ReloadFailure {
            at: self.shared.clock.now_secs(),
            file_hash: None,
            problems: vec![e.to_string()],
        };
        self.shared
            .with_status(|s| s.last_reload_error = Some(failure));
    }
}

/// A watcher on `path`'s folder that sends a [`Trigger::FileEvent`] for events concerning it.
pub(super) fn watcher(
    path: &Path,
    events: mpsc::Sender<Trigger>,
) -> Result<notify::RecommendedWatcher, StartError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(std::ffi::OsStr::to_os_string);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => {
                !matches!(e.kind, EventKind::Access(_))
                    && e.paths.iter().any(|p| concerns_config(p, name.as_deref()))
            }
            Err(_) => true, // a watcher error: re-read to be safe
        };
        if relevant {
            // A full channel already holds a pending trigger: nothing is lost.
            let _ = events.try_send(Trigger::FileEvent);
        }
    })
    .map_err(|source| StartError::Watch {
        path: folder.clone(),
        source,
    })?;
    watcher
        .watch(&folder, RecursiveMode::NonRecursive)
        .map_err(|source| StartError::Watch {
            path: folder.clone(),
            source,
        })?;
    Ok(watcher)
}

/// Whether an event on `path` in the config's folder may have changed the config: the file
/// itself (written in place, or renamed over), or a Kubernetes ConfigMap swap (`..data`,
/// `..2024_...`). Other files in the folder, such as the database, are ignored.
fn concerns_config(path: &Path, config_name: Option<&std::ffi::OsStr>) -> bool {
    match path.file_name() {
        None => true,
        Some(name) => Some(name) == config_name || name.to_string_lossy().starts_with(".."),
    }
}

/// Waits for triggers, lets bursts settle, then reloads from the file.
pub(super) async fn reload_loop(
    core: Arc<Core>,
    path: PathBuf,
    mut triggers: mpsc::Receiver<Trigger>,
    stop: CancellationToken,
) {
    loop {
        let mut trigger = tokio::select! {
            t = triggers.recv() => match t {
                Some(t) => t,
                None => return,
            },
            () = stop.cancelled() => return,
        };
        // Debounce: wait until no event came for DEBOUNCE, but never longer than
        // DEBOUNCE_MAX in all, so that a steady stream of events cannot starve reloads.
        let give_up = tokio::time::Instant::now() + DEBOUNCE_MAX;
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(DEBOUNCE, triggers.recv()).await {
                Ok(Some(Trigger::Forced)) => trigger = Trigger::Forced,
                Ok(Some(Trigger::FileEvent)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let text = match crate::config::file::read_async(&path, READ_TIMEOUT).await {
            Ok(text) => text,
            Err(e) => {
                core.record_read_failure(&e);
                continue;
            }
        };
        let unchanged = core.shared.current.load().file_hash == generation::file_hash(&text);
        let failing = core.shared.with_status(|s| s.last_reload_error.is_some());
        if trigger == Trigger::FileEvent && unchanged && !failing {
            continue;
        }
        if core.reload(&text).await.is_ok() {
            core.census().await;
        }
    }
}
