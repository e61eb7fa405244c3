//! `authd bench-hash`, run from the command line on the operator's own machine: times each hash
//! backend (or the settings of a config file) and can calibrate the strongest setting that
//! stays under a time target ([`hash`]).
//!
//! Like the rest of the CLI, this is the binary's edge: it uses `anyhow` and prints for people
//! (or JSON with `--json`). It must not load the daemon over HTTP: the load benchmark is a
//! separate tool (`tools/authd-bench`). See BENCHMARKS.md for how to read the figures.

mod hash;
mod plot;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use authd_password::{HashParams, PasswordConfig};
use serde::Serialize;

/// A hash algorithm, as named in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Argon2id,
    Scrypt,
    Bcrypt,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Argon2id, Algorithm::Scrypt, Algorithm::Bcrypt];

    /// OWASP's recommended parameters: [`HashParams::OWASP`].
    pub fn owasp(self) -> HashParams {
        // `ALL` and `HashParams::OWASP` list the algorithms in the same order.
        HashParams::OWASP[self as usize]
    }

    pub fn of(params: &HashParams) -> Algorithm {
        match params {
            HashParams::Argon2id { .. } => Algorithm::Argon2id,
            HashParams::Scrypt { .. } => Algorithm::Scrypt,
            HashParams::Bcrypt { .. } => Algorithm::Bcrypt,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Argon2id => "argon2id",
            Algorithm::Scrypt => "scrypt",
            Algorithm::Bcrypt => "bcrypt",
        }
    }
}

/// `authd bench-hash`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchHashArgs {
    /// Benchmark the hash settings of this config file's password strategies (default: each
    /// algorithm at OWASP's recommended parameters).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Only these algorithms (repeat the flag, or separate them with commas).
    #[arg(long = "algorithm", value_enum, value_delimiter = ',')]
    pub algorithms: Vec<Algorithm>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The longest median time one hash may take: with --calibrate, the goal of the search
    /// (default 250ms); without it, a column tells which settings stay under it.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub target: Option<Duration>,
    /// Search each algorithm's parameters for the strongest setting whose median hash time
    /// stays under --target, and print it as TOML ready to paste into the config.
    #[arg(long)]
    pub calibrate: bool,
    /// Timed runs of each operation (default: 10 per operation, fewer for settings slower
    /// than 0.4 s, 5 per setting tried when calibrating).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub samples: Option<u32>,
    /// Also draw the time of one hash against its cost for each algorithm, with the target, the
    /// calibrated settings and the sign-ins per second of each point on all cores, as an SVG
    /// file (implies --calibrate, and also times cheaper settings and one step above each
    /// calibrated one: argon2id memory doubling from 8 MiB, scrypt log_n from 12, bcrypt cost
    /// from 8).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

impl BenchHashArgs {
    /// Whether this run calibrates: `--calibrate`, or `--plot`, which draws the calibration.
    pub fn calibrating(&self) -> bool {
        self.calibrate || self.plot.is_some()
    }
}

/// Runs `authd bench-hash`, printing any error.
pub fn bench_hash_main(args: &BenchHashArgs) -> ExitCode {
    report_exit(hash::run(args))
}

fn report_exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub cores: usize,
    pub cpu: String,
    /// A debug build hashes and serves many times slower: its figures mean little.
    pub debug_build: bool,
}

impl Machine {
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: cores(),
            cpu,
            debug_build: cfg!(debug_assertions),
        }
    }

    pub fn warn_if_debug(&self) {
        if self.debug_build {
            eprintln!(
                "warning: this is a debug build; build with --release for meaningful figures"
            );
        }
    }
}

/// Cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A status line on stderr: rewritten in place (`\r`) on a terminal, one line per step
/// otherwise.
pub(crate) struct Progress {
    tty: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A new step: always shown.
    pub fn step(&self, message: &str) {
        if self.tty {
            self.update(message);
        } else {
            eprintln!("{message}");
        }
    }

    /// A refresh of the current step: shown on a terminal only.
    pub fn update(&self, message: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{message}\x1b[K");
            let _ = err.flush();
        }
    }

    /// Clears the status line before the results are printed.
    pub fn clear(&self) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// Order statistics of a set of timings, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    pub count: usize,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// `None` for an empty set.
    pub fn of(samples: &mut [Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Nearest rank.
        let rank = |q: f64| {
            let i = (q * samples.len() as f64).ceil() as usize;
            ms(samples[i.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Some(Summary {
            count: samples.len(),
            mean_ms: ms(total) / samples.len() as f64,
            median_ms: rank(0.5),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: ms(samples[samples.len() - 1]),
        })
    }
}

/// The `hash` line of a password strategy table selecting `params`.
pub(crate) fn params_toml(params: &HashParams) -> String {
    format!("hash = {}", params.toml_value())
}

/// The hash setting of a password strategy found in a config file.
pub(crate) struct PasswordSetup {
    pub subject: String,
    pub strategy: String,
    pub hash: HashParams,
}

/// Loads and validates `path`, and returns the hash setting of every password strategy in it.
pub(crate) fn password_strategies(path: &Path) -> anyhow::Result<Vec<PasswordSetup>> {
    let (config, text) = crate::cli::load(path)?;
    let doc: authd_strategy_api::toml::Table =
        authd_strategy_api::toml::from_str(&text).context("the config is not valid TOML")?;
    let mut found = Vec::new();
    for resource in &config.resources {
        for strategy in &resource.strategies {
            if strategy.type_name != "password" {
                continue;
            }
            let at = format!(
                "resources.{}.strategies.{}",
                resource.spec.name, strategy.name
            );
            let table = doc
                .get("resources")
                .and_then(|v| v.get(&resource.spec.name))
                .and_then(|v| v.get("strategies"))
                .and_then(|v| v.get(&strategy.name))
                .and_then(|v| v.as_table())
                .cloned()
                .with_context(|| format!("{at}: not found in the file"))?;
            let password = PasswordConfig::from_table(&at, &resource.spec, table)
                .map_err(|problems| anyhow::anyhow!("{at}: {problems}"))?;
            found.push(PasswordSetup {
                subject: resource.spec.name.clone(),
                strategy: strategy.name.clone(),
                hash: password.hash,
            });
        }
    }
    Ok(found)
}

/// `12.3 ms`, `0.41 ms`, `1.20 s`.
pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// `19.0 MiB`, `4.1 KiB`.
pub(crate) fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&mut samples).unwrap_or_else(|| panic!("empty"));
        assert_eq!(s.count, 100);
        assert!((s.median_ms - 50.0).abs() < 1e-9);
        assert!((s.p95_ms - 95.0).abs() < 1e-9);
        assert!((s.p99_ms - 99.0).abs() < 1e-9);
        assert!((s.max_ms - 100.0).abs() < 1e-9);
        assert!(Summary::of(&mut []).is_none());
        let mut one = [Duration::from_millis(7)];
        let s = Summary::of(&mut one).unwrap_or_else(|| panic!("empty"));
        assert!((s.p99_ms - 7.0).abs() < 1e-9 && (s.median_ms - 7.0).abs() < 1e-9);
    }

    #[test]
    fn printed_toml_is_a_valid_hash_setting() {
        for algorithm in Algorithm::ALL {
            let params = algorithm.owasp();
            let text = format!(
                "version = 1\n[resources.user]\nattributes.email = {{ type = \"ci_string\", unique = true }}\n\
                 [resources.user.strategies.password]\ntype = \"password\"\nidentity_field = \"email\"\n{}\n",
                params_toml(&params)
            );
            let dir = std::env::temp_dir().join(format!(
                "authd-bench-toml-{}-{}",
                std::process::id(),
                algorithm.name()
            ));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            let path = dir.join("authd.toml");
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            let found = password_strategies(&path).unwrap_or_else(|e| panic!("{e:#}"));
            let _ = std::fs::remove_dir_all(&dir);
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].hash, params, "{text}");
            assert_eq!(Algorithm::of(&params), algorithm);
        }
    }
}
