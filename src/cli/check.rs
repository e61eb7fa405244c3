//! `authd check`: validates a file exactly as a reload would, lists what it serves, and with
//! `--against` what a reload from the file in force would change.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Config;
use crate::registry;

/// Reads and validates a config file; on failure, the error lists every problem.
///
/// # Errors
/// When the file cannot be read or has problems.
pub fn load(path: &Path) -> anyhow::Result<(Config, String)> {
    let text = crate::config::file::read(path).context("cannot load the config")?;
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
        "listen {}  store {}{}",
        config.server.listen,
        config.store.describe(),
        config
            .admin
            .as_ref()
            .map(|a| format!("  admin {}", a.listen))
            .unwrap_or_default()
    );
    let tokens = &config.tokens;
    let keys = if tokens.algorithm.is_hmac() {
        "one HMAC secret".to_string()
    } else if tokens.keys.is_empty() {
        match tokens.rotate_every {
            Some(d) => format!(
                "generated keys, rotated every {}",
                humantime::format_duration(d)
            ),
            None => "a generated key".to_string(),
        }
    } else {
        let listed: Vec<String> = tokens
            .keys
            .iter()
            .map(|k| format!("{} {}", k.label(), k.state.name()))
            .collect();
        format!("keys {}", listed.join(", "))
    };
    let _ = writeln!(
        out,
        "tokens {} with {keys}; issuer {}{}",
        tokens.algorithm.name(),
        tokens.issuer,
        if tokens.audience.is_empty() {
            String::new()
        } else {
            format!("; audience {}", tokens.audience.join(", "))
        }
    );
    if let Some(metrics) = &config.metrics {
        let _ = writeln!(out, "metrics {} (GET /metrics)", metrics.listen);
    }
    if let Some(events) = &config.events {
        let _ = writeln!(out, "events {} to a webhook", events.types.join(", "));
    }
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
    let changes = crate::config::changes(&current_table, &new_table, &current, &config);
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
    let now = authd_strategy_api::Clock::system().now_secs();
    let keys = crate::config::key_changes(&current, &config, now);
    if !keys.is_empty() {
        println!("signing keys, if reloaded now:");
        for line in &keys {
            println!("  {line}");
        }
    }
    let refused = crate::config::refused_changes(&current, &config);
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
