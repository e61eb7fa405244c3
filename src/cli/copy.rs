//! `authd store copy --from OLD.toml --to NEW.toml`: every record of the store of one config
//! into the (empty) store of another, with both daemons stopped; counts printed at the end,
//! a progress bar on stderr meanwhile (when it is a terminal).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::check::load;
use crate::store_copy::{self, Counts, Progress};

/// The progress of a copy on stderr: one spinner per kind of record, with its count and rate.
struct Bar {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn finish(&self) {
        if let Some(bar) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            bar.finish();
        }
    }
}

impl Progress for Bar {
    fn stage(&self, what: &'static str) {
        self.finish();
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg:<13} {pos:>9} [{elapsed_precise}, {per_sec}]",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(n);
        }
    }
}

fn report(counts: &Counts) -> String {
    format!(
        "  users          {:>9}  (unique values {})\n  dead tokens    {:>9}\n  throttles      {:>9}\n  \
         meta entries   {:>9}  (the generated signing key among them, if any)\n  outbox jobs    {:>9}",
        counts.users,
        counts.unique_values,
        counts.dead_tokens,
        counts.throttles,
        counts.meta,
        counts.jobs
    )
}

/// Runs `authd store copy`.
pub fn copy(from: &Path, to: &Path) -> ExitCode {
    let loaded = load(from).and_then(|(f, _)| load(to).map(|(t, _)| (f, t)));
    let (from_config, to_config) = match loaded {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    if from_config.store == to_config.store {
        eprintln!("authd store copy: --from and --to name the same store");
        return ExitCode::FAILURE;
    }
    let (from_name, to_name) = (from_config.store.describe(), to_config.store.describe());
    let outcome = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let (source, _) = crate::store::open(&from_config.store)
                .await
                .map_err(|e| anyhow::anyhow!("the source store: {e}"))?;
            let (target, _) = crate::store::open(&to_config.store)
                .await
                .map_err(|e| anyhow::anyhow!("the target store: {e}"))?;
            let bar = Bar {
                bar: std::sync::Mutex::new(None),
            };
            let counts = store_copy::copy(source.as_ref(), target.as_ref(), &bar).await;
            bar.finish();
            Ok::<_, anyhow::Error>(counts?)
        })
    });
    match outcome {
        Ok(counts) => {
            println!("copied {from_name} -> {to_name}:\n{}", report(&counts));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authd store copy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
