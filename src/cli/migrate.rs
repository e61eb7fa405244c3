//! `authd migrate --config FILE`: brings the store's schema up to date without serving (a
//! PostgreSQL database before the first daemon starts, or before a rolling upgrade). Safe
//! while daemons run: migrations take an advisory lock.

use std::path::Path;
use std::process::ExitCode;

use super::check::load;

/// Runs `authd migrate`.
pub fn migrate(path: &Path) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = super::runtime().and_then(|rt| {
        rt.block_on(crate::store::migrate(&config.store))
            .map_err(anyhow::Error::from)
    });
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authd migrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
