//! `--versus FILE`, `--versus-authd PATH` and `--metrics-cost`: `/me` of two daemons compared
//! in alternated rounds.
//!
//! Both daemons run at once (an idle one costs nothing), each on its own port and database,
//! with the same users registered. Then `/me` is loaded on one, then the other, in the order
//! A B, B A, A B ... for `--rounds` pairs of `--duration` each, so that a drift of the shared
//! machine falls on both sides alike. Reported per daemon: the requests per second of each
//! round and the daemon's CPU time per request (which other processes on the machine disturb
//! much less than throughput); and the ratio B / A of each pair, with their median.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use authd_strategy_api::toml;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde::Serialize;

use crate::Cli;
use crate::http::{Http, closed_loop, rotating_gets};
use crate::load::{register_users, ticking, wait_ready};
use crate::output::{Progress, fmt_rate};
use crate::process::{DaemonChild, TempDir, free_port};
use crate::setup::{Launched, config_text, driver_of, launch};
use crate::system::{self, CpuMark, Machine};

/// One daemon of the comparison, ready for `/me`.
struct Instance {
    daemon: DaemonChild,
    me_uri: hyper::Uri,
    tokens: Arc<Vec<HeaderValue>>,
    _dir: TempDir,
}

/// One daemon's figures over all rounds.
#[derive(Debug, Serialize)]
struct Side {
    config: String,
    /// `/me` answers per second, one per round.
    per_second: Vec<f64>,
    /// The daemon's CPU microseconds per `/me` answer, one per round.
    cpu_us_per_request: Vec<f64>,
}

/// What `--versus` / `--metrics-cost` prints.
#[derive(Debug, Serialize)]
struct Comparison {
    machine: Machine,
    load_average_at_start: Option<String>,
    concurrency: usize,
    users: usize,
    round_duration_s: f64,
    a: Side,
    b: Side,
    /// B / A throughput of each pair of rounds.
    throughput_ratios: Vec<f64>,
    median_throughput_ratio: f64,
    /// B / A CPU per request of each pair of rounds.
    cpu_ratios: Vec<f64>,
    median_cpu_ratio: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `text` with a `[metrics]` listener on a free loopback port added (replacing any).
fn with_metrics(text: &str) -> anyhow::Result<String> {
    let mut doc: toml::Table = toml::from_str(text).context("the config is not valid TOML")?;
    let mut metrics = toml::Table::new();
    metrics.insert(
        "listen".into(),
        toml::Value::String(format!("127.0.0.1:{}", free_port()?)),
    );
    doc.insert("metrics".into(), toml::Value::Table(metrics));
    toml::to_string(&doc).context("cannot write the config with [metrics]")
}

/// Runs the comparison `args` asks for: B is `--versus FILE`, or A with `[metrics]`.
pub(crate) fn run(args: &Cli, authd: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.warn_if_debug();
    let load_average_at_start = system::load_average();
    let (a_text, a_name) = config_text(args.config.as_deref(), args.algorithm, authd)?;
    let authd_b = args.versus_authd.as_deref().unwrap_or(authd);
    let (b_text, mut b_name) = match &args.versus {
        Some(path) => {
            crate::process::check_config(authd_b, path)?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (text, path.display().to_string())
        }
        None if args.metrics_cost => (with_metrics(&a_text)?, format!("{a_name} + [metrics]")),
        None => (a_text.clone(), a_name.clone()),
    };
    if let Some(path) = &args.versus_authd {
        b_name = format!("{b_name}, by {}", path.display());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")?;
    let http = Http::new();
    let progress = Progress::new();
    let concurrency = args.concurrency as usize;
    let users = args.users as usize;
    let start = |authd: &Path, text: &str, label: &str| -> anyhow::Result<Instance> {
        let driver = Arc::new(driver_of(text)?);
        progress.step(&format!("starting daemon {label}"));
        let Launched {
            dir,
            mut daemon,
            base,
        } = launch(authd, text, None, args.signing_algorithm.as_deref())?;
        let health: hyper::Uri = format!("{base}/healthz").parse()?;
        runtime.block_on(wait_ready(&http, &health, &mut daemon))?;
        let register: hyper::Uri = format!(
            "{base}/auth/{}/{}/register",
            driver.subject, driver.strategy
        )
        .parse()?;
        progress.step(&format!("registering {users} users on {label}"));
        let (tokens, _) = runtime.block_on(register_users(
            &http,
            &register,
            &driver,
            users,
            concurrency.min(8),
            &progress,
        ))?;
        Ok(Instance {
            daemon,
            me_uri: format!("{base}/auth/{}/me", driver.subject).parse()?,
            tokens: Arc::new(tokens),
            _dir: dir,
        })
    };
    let mut a = start(authd, &a_text, "A")?;
    let mut b = start(authd_b, &b_text, "B")?;

    let mut sides = [
        Side {
            config: a_name,
            per_second: Vec::new(),
            cpu_us_per_request: Vec::new(),
        },
        Side {
            config: b_name,
            per_second: Vec::new(),
            cpu_us_per_request: Vec::new(),
        },
    ];
    for round in 0..args.rounds as usize {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let instance = if which == 0 { &mut a } else { &mut b };
            let uri = instance.me_uri.clone();
            let tokens = Arc::clone(&instance.tokens);
            let mark = CpuMark::now(instance.daemon.pid());
            let done = Arc::new(AtomicU64::new(0));
            let label = format!(
                "round {}/{}: /me on {}",
                round + 1,
                args.rounds,
                ["A", "B"][which]
            );
            let result = runtime.block_on(ticking(
                &progress,
                &label,
                Arc::clone(&done),
                closed_loop(
                    &http,
                    concurrency,
                    args.duration,
                    StatusCode::OK,
                    done,
                    rotating_gets(uri, tokens, concurrency),
                ),
            ));
            let cpu = mark.since();
            let ok = result.tally.ok.len() as f64;
            anyhow::ensure!(
                ok > 0.0,
                "{label}: no successful answer ({} errors{})",
                result.tally.errors,
                result
                    .tally
                    .first_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            if let Some(status) = instance.daemon.exited() {
                anyhow::bail!("daemon {} exited ({status})", ["A", "B"][which]);
            }
            let side = &mut sides[which];
            side.per_second
                .push(ok / result.elapsed.as_secs_f64().max(1e-9));
            side.cpu_us_per_request
                .push(cpu.server.map_or(f64::NAN, |s| s * 1e6 / ok));
        }
    }
    progress.clear();
    let [a_side, b_side] = sides;
    let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| b / a.max(1e-9)).collect()
    };
    let throughput_ratios = ratios(&a_side.per_second, &b_side.per_second);
    let cpu_ratios = ratios(&a_side.cpu_us_per_request, &b_side.cpu_us_per_request);
    let comparison = Comparison {
        machine,
        load_average_at_start,
        concurrency,
        users,
        round_duration_s: args.duration.as_secs_f64(),
        median_throughput_ratio: median(&throughput_ratios),
        median_cpu_ratio: median(&cpu_ratios),
        throughput_ratios,
        cpu_ratios,
        a: a_side,
        b: b_side,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print(&comparison);
    }
    Ok(())
}

fn print(c: &Comparison) {
    println!(
        "/me, A against B in alternated rounds ({} x {:.0} s each, {} clients, {} users)",
        c.a.per_second.len(),
        c.round_duration_s,
        c.concurrency,
        c.users
    );
    println!("  A: {}", c.a.config);
    println!("  B: {}", c.b.config);
    println!("  round       A /s       B /s   B/A   A cpu/req  B cpu/req   B/A");
    for i in 0..c.a.per_second.len() {
        println!(
            "  {:>5} {:>10} {:>10} {:>5.3} {:>9.1}us {:>9.1}us {:>5.3}",
            i + 1,
            fmt_rate(c.a.per_second[i]),
            fmt_rate(c.b.per_second[i]),
            c.throughput_ratios[i],
            c.a.cpu_us_per_request[i],
            c.b.cpu_us_per_request[i],
            c.cpu_ratios[i],
        );
    }
    println!(
        "  median B/A: throughput {:.3}, daemon CPU per request {:.3}",
        c.median_throughput_ratio, c.median_cpu_ratio
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn metrics_are_added_on_a_loopback_port() {
        let text = crate::setup::default_config(&authd_password::HashParams::default());
        let doc: toml::Table = toml::from_str(&with_metrics(&text).unwrap()).unwrap();
        let listen = doc["metrics"]["listen"].as_str().unwrap();
        assert!(listen.starts_with("127.0.0.1:"), "{listen}");
        assert_eq!(doc["tokens"]["issuer"].as_str(), Some("authd-bench"));
    }
}
