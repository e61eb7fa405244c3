//! `authd bench-hash`: the time of one hash and one verify for each hash setting, exactly as
//! the daemon's hashing workers run them ([`HashParams::hash`] and [`verify`], argon2id with
//! its reused memory block), and a calibration of the strongest setting under a time target.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authd_password::HashParams;
use authd_password::hash::verify;
use serde::Serialize;
use serde_json::Value;

use super::plot::{self, Chart, Panel, Point};
use super::{Algorithm, BenchHashArgs, Machine, Progress, Summary, fmt_bytes, fmt_ms, params_toml};

const PASSWORD: &[u8] = b"correct horse battery staple";
/// Timed runs per operation by default...
const DEFAULT_SAMPLES: u32 = 10;
/// ...unless they would take longer than this (at least [`MIN_SAMPLES`] are taken).
const SAMPLE_BUDGET: Duration = Duration::from_secs(4);
const MIN_SAMPLES: u32 = 3;
/// Timed hashes per setting tried while calibrating, by default.
const CALIBRATION_SAMPLES: u32 = 5;
/// The target used by --calibrate when none is given.
const DEFAULT_TARGET: Duration = Duration::from_millis(250);
/// Most settings tried per algorithm while calibrating.
const MAX_TRIALS: usize = 8;
/// Calibration never goes past these: 1 GiB per hash.
const MAX_ARGON2_KIB: u32 = 1024 * 1024;
const ARGON2_STEP_KIB: u32 = 1024;
const SCRYPT_LOG_N: std::ops::RangeInclusive<u8> = 10..=20;
const BCRYPT_COST: std::ops::RangeInclusive<u32> = 4..=20;

/// One setting to benchmark and where it came from.
struct Setting {
    params: HashParams,
    /// `OWASP`, or the config's `resource.strategy` names using it.
    sources: Vec<String>,
}

#[derive(Serialize)]
struct HashResult {
    setting: String,
    params: Value,
    sources: Vec<String>,
    samples: u32,
    hash: Summary,
    verify: Summary,
    memory_bytes: u64,
    /// 1 / median hash time.
    hashes_per_second_one_core: f64,
    /// cores / median verify time: the most sign-ins per second this machine can check.
    sign_in_ceiling_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    under_target: Option<bool>,
}

#[derive(Serialize)]
struct Trial {
    setting: String,
    #[serde(skip)]
    hash_params: HashParams,
    params: Value,
    hash: Summary,
    under_target: bool,
}

#[derive(Serialize)]
struct Calibration {
    algorithm: Algorithm,
    /// What stayed fixed and what was searched.
    searched: String,
    trials: Vec<Trial>,
    /// The strongest setting tried whose median stayed under the target.
    chosen: Option<Value>,
    toml: Option<String>,
    memory_bytes: Option<u64>,
    median_ms: Option<f64>,
    /// The search stopped at its upper bound while still under the target.
    capped: bool,
    /// With --plot: settings from a cheap one to past the chosen one, timed for the plot only
    /// ([`plot_sweep`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plot_points: Vec<Trial>,
}

#[derive(Serialize)]
struct HashOutput<'a> {
    machine: &'a Machine,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_ms: Option<f64>,
    results: &'a [HashResult],
}

#[derive(Serialize)]
struct CalibrationOutput<'a> {
    machine: &'a Machine,
    target_ms: f64,
    calibrations: &'a [Calibration],
    /// The SVG file written by --plot.
    #[serde(skip_serializing_if = "Option::is_none")]
    plot: Option<String>,
}

pub(super) fn run(args: &BenchHashArgs) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.warn_if_debug();
    let settings = settings(args)?;
    let progress = Progress::new();
    // Before anything is timed: a path that cannot be written fails now.
    let plot_output = args.plot.as_deref().map(plot::Output::open).transpose()?;
    if args.calibrating() {
        let target = args.target.unwrap_or(DEFAULT_TARGET);
        anyhow::ensure!(
            target >= Duration::from_millis(1) && target <= Duration::from_secs(60),
            "--target must be between 1ms and 60s"
        );
        let samples = args.samples.unwrap_or(CALIBRATION_SAMPLES);
        // One search per algorithm, from the first setting of that algorithm.
        let mut starts: BTreeMap<Algorithm, HashParams> = BTreeMap::new();
        for s in &settings {
            starts.entry(Algorithm::of(&s.params)).or_insert(s.params);
        }
        let mut results = Vec::new();
        for (&algorithm, &start) in &starts {
            let mut calibration = calibrate(algorithm, start, target, samples, &progress)?;
            if plot_output.is_some() {
                time_plot_points(&mut calibration, target, samples, &progress)?;
            }
            results.push(calibration);
        }
        progress.clear();
        let plot_path = plot_output.as_ref().map(|o| o.path().display().to_string());
        if let Some(output) = plot_output {
            output.write(&chart(&machine, target, &results))?;
        }
        if args.json {
            let out = CalibrationOutput {
                machine: &machine,
                target_ms: target.as_secs_f64() * 1000.0,
                calibrations: &results,
                plot: plot_path.clone(),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print_calibrations(&machine, target, &results);
        }
        if let Some(path) = plot_path {
            eprintln!("plot written to {path}");
        }
        return Ok(());
    }

    let mut results = Vec::new();
    for (i, setting) in settings.iter().enumerate() {
        let label = format!("[{}/{}] {}", i + 1, settings.len(), setting.params);
        results.push(measure(setting, &machine, args, &label, &progress)?);
    }
    progress.clear();
    if args.json {
        let out = HashOutput {
            machine: &machine,
            target_ms: args.target.map(|t| t.as_secs_f64() * 1000.0),
            results: &results,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&machine, args.target, &results);
    }
    Ok(())
}

/// The settings to measure: the config's (deduplicated), or OWASP's for each algorithm;
/// filtered by --algorithm. When calibrating from a config, an algorithm asked for that the
/// config does not use starts from OWASP's parameters.
fn settings(args: &BenchHashArgs) -> anyhow::Result<Vec<Setting>> {
    let mut asked = args.algorithms.clone();
    asked.sort();
    asked.dedup();
    let owasp = |algorithm: Algorithm| Setting {
        params: algorithm.owasp(),
        sources: vec!["OWASP".into()],
    };
    let Some(path) = &args.config else {
        let algorithms = if asked.is_empty() {
            Algorithm::ALL.to_vec()
        } else {
            asked
        };
        return Ok(algorithms.into_iter().map(owasp).collect());
    };
    let found = super::password_strategies(path)?;
    let mut out: Vec<Setting> = Vec::new();
    for setup in found {
        let params = setup.hash;
        let source = format!("{}.{}", setup.subject, setup.strategy);
        match out.iter_mut().find(|s| s.params == params) {
            Some(s) => s.sources.push(source),
            None => out.push(Setting {
                params,
                sources: vec![source],
            }),
        }
    }
    out.retain(|s| asked.is_empty() || asked.contains(&Algorithm::of(&s.params)));
    if args.calibrating() {
        for &algorithm in &asked {
            if !out.iter().any(|s| Algorithm::of(&s.params) == algorithm) {
                out.push(owasp(algorithm));
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{} has no password strategy{}",
        path.display(),
        if asked.is_empty() {
            ""
        } else {
            " hashing with the algorithms asked for"
        }
    );
    Ok(out)
}

/// Times `op` `n` times after one untimed warm-up run (which also sizes the reused argon2
/// memory block), reporting progress.
fn time_runs(
    n: u32,
    label: &str,
    what: &str,
    progress: &Progress,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        progress.update(&format!("{label}: {what} {}/{n}", i + 1));
        let start = Instant::now();
        op()?;
        out.push(start.elapsed());
    }
    Ok(out)
}

/// How many timed runs to take of an operation whose warm-up took `warm_up`.
fn sample_count(requested: Option<u32>, warm_up: Duration) -> u32 {
    requested.unwrap_or_else(|| {
        let fit = SAMPLE_BUDGET.as_secs_f64() / warm_up.as_secs_f64().max(1e-6);
        (fit as u32).clamp(MIN_SAMPLES, DEFAULT_SAMPLES)
    })
}

fn measure(
    setting: &Setting,
    machine: &Machine,
    args: &BenchHashArgs,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<HashResult> {
    let params = setting.params;
    progress.step(&format!("{label}: warm-up"));
    let warm_start = Instant::now();
    let mut stored = params
        .hash(PASSWORD)
        .with_context(|| format!("{params}: hashing failed"))?;
    let warm_up = warm_start.elapsed();
    anyhow::ensure!(
        verify(PASSWORD, &stored).with_context(|| format!("{params}: verify failed"))?,
        "{params}: a fresh hash does not verify"
    );
    let n = sample_count(args.samples, warm_up);
    let mut hashes = time_runs(n, label, "hash", progress, || {
        stored = params.hash(PASSWORD).context("hashing failed")?;
        Ok(())
    })?;
    let mut verifies = time_runs(n, label, "verify", progress, || {
        anyhow::ensure!(
            verify(PASSWORD, &stored).context("verify failed")?,
            "a fresh hash does not verify"
        );
        Ok(())
    })?;
    let hash = Summary::of(&mut hashes).context("no samples")?;
    let verify = Summary::of(&mut verifies).context("no samples")?;
    Ok(HashResult {
        setting: params.to_string(),
        params: params.to_json(),
        sources: setting.sources.clone(),
        samples: n,
        hash,
        verify,
        memory_bytes: params.memory_bytes(),
        hashes_per_second_one_core: 1000.0 / hash.median_ms,
        sign_in_ceiling_per_second: machine.cores as f64 * 1000.0 / verify.median_ms,
        under_target: args
            .target
            .map(|t| hash.median_ms <= t.as_secs_f64() * 1000.0),
    })
}

fn print_table(machine: &Machine, target: Option<Duration>, results: &[HashResult]) {
    println!(
        "authd bench-hash: {} cores ({}){}",
        machine.cores,
        machine.cpu,
        if machine.debug_build {
            ", DEBUG BUILD"
        } else {
            ""
        }
    );
    let ceiling = format!("sign-ins/s ({} cores)", machine.cores);
    let mut header = format!(
        "{:<28} {:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>13} {:>20}",
        "setting",
        "source",
        "hash p50",
        "hash p95",
        "verify p50",
        "verify p95",
        "memory",
        "hashes/s/core",
        ceiling
    );
    if let Some(t) = target {
        header.push_str(&format!(
            "  under {}",
            fmt_ms(t.as_secs_f64() * 1000.0).replace(' ', "")
        ));
    }
    println!("{header}");
    for r in results {
        let mut line = format!(
            "{:<28} {:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>13} {:>20}",
            r.setting,
            r.sources.join(","),
            fmt_ms(r.hash.median_ms),
            fmt_ms(r.hash.p95_ms),
            fmt_ms(r.verify.median_ms),
            fmt_ms(r.verify.p95_ms),
            fmt_bytes(r.memory_bytes),
            format!("{:.1}", r.hashes_per_second_one_core),
            format!("{:.1}", r.sign_in_ceiling_per_second),
        );
        if let Some(under) = r.under_target {
            line.push_str(if under { "  yes" } else { "  NO" });
        }
        println!("{line}");
    }
    if let Some(r) = results.first() {
        println!(
            "({} timed runs of each operation per setting; the sign-in ceiling assumes one \
             hashing worker per core, each reusing its memory, and nothing else running)",
            r.samples
        );
    }
}

/// The median of `samples` timed hashes of `params`, after one warm-up.
fn median_hash(
    params: HashParams,
    samples: u32,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    progress.update(&format!("{label}: warm-up"));
    let warm_start = Instant::now();
    params
        .hash(PASSWORD)
        .with_context(|| format!("{params}: hashing failed"))?;
    // A setting far slower than a second gets fewer runs.
    let n = if warm_start.elapsed() > Duration::from_secs(1) {
        samples.min(MIN_SAMPLES)
    } else {
        samples
    };
    let mut times = time_runs(n, label, "hash", progress, || {
        params.hash(PASSWORD).context("hashing failed")?;
        Ok(())
    })?;
    Summary::of(&mut times).context("no samples")
}

/// Searches the strongest setting of `algorithm` whose median hash time stays under `target`:
/// argon2id keeps its iterations and parallelism and raises memory; scrypt keeps r and p and
/// raises log_n; bcrypt raises its cost.
fn calibrate(
    algorithm: Algorithm,
    start: HashParams,
    target: Duration,
    samples: u32,
    progress: &Progress,
) -> anyhow::Result<Calibration> {
    let target_ms = target.as_secs_f64() * 1000.0;
    let mut trials: Vec<Trial> = Vec::new();
    let mut capped = false;
    let try_params = |params: HashParams, trials: &mut Vec<Trial>| -> anyhow::Result<f64> {
        let label = format!(
            "calibrating {} (target {}): {params}",
            algorithm.name(),
            fmt_ms(target_ms)
        );
        progress.step(&label);
        let hash = median_hash(params, samples, &label, progress)?;
        trials.push(Trial {
            setting: params.to_string(),
            hash_params: params,
            params: params.to_json(),
            hash,
            under_target: hash.median_ms <= target_ms,
        });
        Ok(hash.median_ms)
    };

    let searched = match start {
        HashParams::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            let make = |m: u32| HashParams::Argon2id {
                memory_kib: m,
                iterations,
                parallelism,
            };
            let floor = ARGON2_STEP_KIB.max(8 * parallelism);
            let round = |m: f64| {
                let m = (m / f64::from(ARGON2_STEP_KIB)).floor() as u32 * ARGON2_STEP_KIB;
                m.clamp(floor, MAX_ARGON2_KIB)
            };
            // Best under the target, smallest over it.
            let mut under: Option<(u32, f64)> = None;
            let mut over: Option<u32> = None;
            let mut m = memory_kib.clamp(floor, MAX_ARGON2_KIB);
            for _ in 0..MAX_TRIALS {
                let median = try_params(make(m), &mut trials)?;
                if median <= target_ms {
                    if under.is_none_or(|(u, _)| m > u) {
                        under = Some((m, median));
                    }
                } else if over.is_none_or(|o| m < o) {
                    over = Some(m);
                }
                // Time grows about linearly with memory: aim just under the target.
                let mut next = round(f64::from(m) * 0.97 * target_ms / median);
                let lo = under.map_or(floor, |(u, _)| u + ARGON2_STEP_KIB);
                let hi = over.map_or(MAX_ARGON2_KIB, |o| o.saturating_sub(ARGON2_STEP_KIB));
                if lo > hi {
                    break; // bracketed to one step
                }
                if under.is_some_and(|(_, med)| med >= 0.95 * target_ms) {
                    break; // close enough
                }
                if under.is_some_and(|(u, _)| u >= MAX_ARGON2_KIB) {
                    capped = true;
                    break;
                }
                next = next.clamp(lo, hi);
                if trials.iter().any(|t| t.setting == make(next).to_string()) {
                    break;
                }
                if over.is_none() && under.is_none() {
                    break;
                }
                m = next;
            }
            format!("t={iterations} p={parallelism} kept, memory searched")
        }
        HashParams::Scrypt { log_n, r, p } => {
            let make = |n: u8| HashParams::Scrypt { log_n: n, r, p };
            capped = step_search(
                log_n.clamp(*SCRYPT_LOG_N.start(), *SCRYPT_LOG_N.end()),
                *SCRYPT_LOG_N.start(),
                *SCRYPT_LOG_N.end(),
                target_ms,
                |n| try_params(make(n), &mut trials),
            )?;
            format!("r={r} p={p} kept, log_n searched")
        }
        HashParams::Bcrypt { cost } => {
            capped = step_search(
                cost.clamp(*BCRYPT_COST.start(), *BCRYPT_COST.end()),
                *BCRYPT_COST.start(),
                *BCRYPT_COST.end(),
                target_ms,
                |c| try_params(HashParams::Bcrypt { cost: c }, &mut trials),
            )?;
            "cost searched".to_string()
        }
    };

    let best = trials
        .iter()
        .filter(|t| t.under_target)
        .max_by(|a, b| {
            a.hash
                .median_ms
                .partial_cmp(&b.hash.median_ms)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|t| (t.params.clone(), t.hash.median_ms));
    let chosen_params = best.as_ref().and_then(|(v, _)| params_from_json(v));
    Ok(Calibration {
        algorithm,
        searched,
        chosen: best.as_ref().map(|(v, _)| v.clone()),
        toml: chosen_params.as_ref().map(params_toml),
        memory_bytes: chosen_params.as_ref().map(HashParams::memory_bytes),
        median_ms: best.map(|(_, m)| m),
        trials,
        capped,
        plot_points: Vec::new(),
    })
}

/// Where the plot's grids start: argon2id memory doubles from 8 MiB, scrypt steps `log_n` from
/// 12, bcrypt its cost from 8 (each step about doubles the time, so the steps below the chosen
/// setting add up to less than its own time).
const PLOT_ARGON2_FROM_KIB: u32 = 8 * 1024;
const PLOT_SCRYPT_FROM: u8 = 12;
const PLOT_BCRYPT_FROM: u32 = 8;

/// The settings timed for the plot besides the calibration's own trials, so that each panel
/// shows the curve from a cheap setting up to past the chosen one (`anchor`; the first setting
/// tried when none fits the target), at the anchor's other parameters: argon2id memory doubling
/// from 8 MiB (or a quarter of the anchor's, if less) up to below the anchor, and 5/4 of it when
/// no setting tried was over the target; scrypt `log_n` from 12 and bcrypt cost from 8 (or two
/// steps below the anchor, if less) up to one step above it. Settings already tried (for
/// argon2id, within 10% of the memory) or outside the calibration's range are left out.
fn plot_sweep(anchor: HashParams, tried: &[HashParams], any_over: bool) -> Vec<HashParams> {
    let mut out = Vec::new();
    match anchor {
        HashParams::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            let floor = ARGON2_STEP_KIB.max(8 * parallelism);
            let round = |m: u64| {
                let m = u32::try_from(m / u64::from(ARGON2_STEP_KIB)).unwrap_or(u32::MAX);
                m.saturating_mul(ARGON2_STEP_KIB)
                    .clamp(floor, MAX_ARGON2_KIB)
            };
            let m = u64::from(memory_kib);
            let mut wanted = Vec::new();
            let mut w = u64::from(PLOT_ARGON2_FROM_KIB).min(m / 4).max(1);
            while w < m * 9 / 10 {
                wanted.push(round(w));
                w *= 2;
            }
            if !any_over {
                wanted.push(round(m * 5 / 4));
            }
            for w in wanted {
                let near = |p: &HashParams| match *p {
                    HashParams::Argon2id { memory_kib: t, .. } => {
                        f64::from(t.abs_diff(w)) <= 0.1 * f64::from(w)
                    }
                    _ => false,
                };
                let params = HashParams::Argon2id {
                    memory_kib: w,
                    iterations,
                    parallelism,
                };
                if !tried.iter().any(near) && !out.contains(&params) {
                    out.push(params);
                }
            }
        }
        HashParams::Scrypt { log_n, r, p } => {
            for n in PLOT_SCRYPT_FROM.min(log_n.saturating_sub(2))..=log_n.saturating_add(1) {
                let params = HashParams::Scrypt { log_n: n, r, p };
                if SCRYPT_LOG_N.contains(&n) && !tried.contains(&params) {
                    out.push(params);
                }
            }
        }
        HashParams::Bcrypt { cost } => {
            for c in PLOT_BCRYPT_FROM.min(cost.saturating_sub(2))..=cost.saturating_add(1) {
                let params = HashParams::Bcrypt { cost: c };
                if BCRYPT_COST.contains(&c) && !tried.contains(&params) {
                    out.push(params);
                }
            }
        }
    }
    out
}

/// Times the [`plot_sweep`] settings of `calibration` as the calibration times its trials.
fn time_plot_points(
    calibration: &mut Calibration,
    target: Duration,
    samples: u32,
    progress: &Progress,
) -> anyhow::Result<()> {
    let target_ms = target.as_secs_f64() * 1000.0;
    let tried: Vec<HashParams> = calibration.trials.iter().map(|t| t.hash_params).collect();
    let Some(&first) = tried.first() else {
        return Ok(());
    };
    let anchor = calibration
        .chosen
        .as_ref()
        .and_then(params_from_json)
        .unwrap_or(first);
    let any_over = calibration.trials.iter().any(|t| !t.under_target);
    for params in plot_sweep(anchor, &tried, any_over) {
        let label = format!("timing for the plot: {params}");
        progress.step(&label);
        let hash = median_hash(params, samples, &label, progress)?;
        calibration.plot_points.push(Trial {
            setting: params.to_string(),
            hash_params: params,
            params: params.to_json(),
            hash,
            under_target: hash.median_ms <= target_ms,
        });
    }
    Ok(())
}

/// The plot of the calibrations: one panel per algorithm, every setting timed.
fn chart(machine: &Machine, target: Duration, results: &[Calibration]) -> Chart {
    let panels = results
        .iter()
        .map(|c| {
            let chosen = c.chosen.as_ref().and_then(params_from_json);
            let (knob, fixed) = match c.trials.first().map(|t| t.hash_params) {
                Some(HashParams::Argon2id {
                    iterations,
                    parallelism,
                    ..
                }) => ("memory_kib", format!("t={iterations} p={parallelism}")),
                Some(HashParams::Scrypt { r, p, .. }) => ("log_n", format!("r={r} p={p}")),
                _ => ("cost", String::new()),
            };
            let points = c
                .trials
                .iter()
                .chain(&c.plot_points)
                .map(|t| Point {
                    x: match t.hash_params {
                        HashParams::Argon2id { memory_kib, .. } => f64::from(memory_kib),
                        HashParams::Scrypt { log_n, .. } => f64::from(log_n),
                        HashParams::Bcrypt { cost } => f64::from(cost),
                    },
                    median_ms: t.hash.median_ms,
                    chosen: chosen == Some(t.hash_params),
                })
                .collect();
            Panel {
                algorithm: c.algorithm.name(),
                knob,
                fixed,
                points,
            }
        })
        .collect();
    Chart {
        title: format!(
            "authd bench-hash on {} cores ({}){}",
            machine.cores,
            machine.cpu,
            if machine.debug_build {
                ", DEBUG BUILD"
            } else {
                ""
            }
        ),
        cores: machine.cores,
        target_ms: target.as_secs_f64() * 1000.0,
        panels,
    }
}

/// Searches an integer cost knob where each step doubles the time (scrypt's log_n, bcrypt's
/// cost). Returns whether it stopped at `max` while still under the target.
fn step_search<T>(
    start: T,
    min: T,
    max: T,
    target_ms: f64,
    mut try_cost: impl FnMut(T) -> anyhow::Result<f64>,
) -> anyhow::Result<bool>
where
    T: Copy + PartialOrd + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + From<u8>,
{
    let one = T::from(1);
    let mut k = start;
    let mut median = try_cost(k)?;
    if median <= target_ms {
        // Go up while the next step (about twice the time) may still fit.
        for _ in 0..MAX_TRIALS {
            if k >= max {
                return Ok(true);
            }
            if median * 2.0 > target_ms * 1.15 {
                break;
            }
            k = k + one;
            median = try_cost(k)?;
            if median > target_ms {
                break;
            }
        }
    } else {
        // Go down until one fits.
        for _ in 0..MAX_TRIALS {
            if k <= min {
                break;
            }
            k = k - one;
            median = try_cost(k)?;
            if median <= target_ms {
                break;
            }
        }
    }
    Ok(false)
}

fn params_from_json(v: &Value) -> Option<HashParams> {
    let get = |k: &str| v.get(k).and_then(Value::as_u64);
    match v.get("algorithm")?.as_str()? {
        "argon2id" => Some(HashParams::Argon2id {
            memory_kib: u32::try_from(get("memory_kib")?).ok()?,
            iterations: u32::try_from(get("iterations")?).ok()?,
            parallelism: u32::try_from(get("parallelism")?).ok()?,
        }),
        "scrypt" => Some(HashParams::Scrypt {
            log_n: u8::try_from(get("log_n")?).ok()?,
            r: u32::try_from(get("r")?).ok()?,
            p: u32::try_from(get("p")?).ok()?,
        }),
        "bcrypt" => Some(HashParams::Bcrypt {
            cost: u32::try_from(get("cost")?).ok()?,
        }),
        _ => None,
    }
}

fn print_calibrations(machine: &Machine, target: Duration, results: &[Calibration]) {
    let target_ms = target.as_secs_f64() * 1000.0;
    println!(
        "authd bench-hash --calibrate: strongest setting with a median hash time under {} \
         on {} cores ({}){}",
        fmt_ms(target_ms),
        machine.cores,
        machine.cpu,
        if machine.debug_build {
            ", DEBUG BUILD"
        } else {
            ""
        }
    );
    for c in results {
        println!("{} ({}):", c.algorithm.name(), c.searched);
        for t in &c.trials {
            println!(
                "  {:<32} median {:>10}  p95 {:>10}  {}",
                t.setting,
                fmt_ms(t.hash.median_ms),
                fmt_ms(t.hash.p95_ms),
                if t.under_target { "under" } else { "over" }
            );
        }
        for t in &c.plot_points {
            println!(
                "  {:<32} median {:>10}  p95 {:>10}  {} (for the plot)",
                t.setting,
                fmt_ms(t.hash.median_ms),
                fmt_ms(t.hash.p95_ms),
                if t.under_target { "under" } else { "over" }
            );
        }
        if c.capped {
            println!("  (stopped at the search's upper bound, 1 GiB per hash)");
        }
    }
    println!();
    println!(
        "# Paste one of these into a password strategy table (one hash setting per strategy)."
    );
    let mut first = true;
    for c in results {
        match (&c.toml, c.median_ms, c.memory_bytes) {
            (Some(toml), Some(median), Some(memory)) => {
                println!(
                    "# {}: median {} per hash, {} per hash ({} with one hashing worker per \
                     core), about {:.1} sign-ins per second on {} cores",
                    c.algorithm.name(),
                    fmt_ms(median),
                    fmt_bytes(memory),
                    fmt_bytes(memory * machine.cores as u64),
                    machine.cores as f64 * 1000.0 / median,
                    machine.cores
                );
                if first {
                    println!("{toml}");
                    first = false;
                } else {
                    println!("# {toml}");
                }
            }
            _ => println!(
                "# {}: no setting tried stays under {}",
                c.algorithm.name(),
                fmt_ms(target_ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_search_finds_the_largest_step_under_the_target() {
        // Each step doubles: 10 ms at 10, so 160 ms at 14 and 320 ms at 15.
        let time = |k: u32| 10.0 * f64::from(1u32 << (k - 10));
        let mut tried = Vec::new();
        let capped = step_search(12u32, 4, 20, 250.0, |k| {
            tried.push(k);
            Ok(time(k))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!capped);
        assert_eq!(tried, vec![12, 13, 14]);

        let mut tried = Vec::new();
        step_search(17u32, 4, 20, 250.0, |k| {
            tried.push(k);
            Ok(time(k))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tried, vec![17, 16, 15, 14]);
    }

    #[test]
    fn the_plot_sweep_runs_from_a_cheap_setting_to_past_the_chosen_one() {
        let scrypt = |log_n| HashParams::Scrypt { log_n, r: 8, p: 1 };
        assert_eq!(
            plot_sweep(scrypt(17), &[scrypt(17)], false),
            vec![
                scrypt(12),
                scrypt(13),
                scrypt(14),
                scrypt(15),
                scrypt(16),
                scrypt(18)
            ]
        );
        // Already tried, or out of the search's range: left out.
        assert_eq!(
            plot_sweep(scrypt(11), &[scrypt(11), scrypt(12)], true),
            vec![scrypt(10)]
        );
        let bcrypt = |cost| HashParams::Bcrypt { cost };
        assert_eq!(
            plot_sweep(bcrypt(12), &[bcrypt(12)], false),
            vec![bcrypt(8), bcrypt(9), bcrypt(10), bcrypt(11), bcrypt(13)]
        );
        // A cheap anchor: two steps below it, within the search's range (4 to 20).
        assert_eq!(
            plot_sweep(bcrypt(5), &[bcrypt(5)], true),
            vec![bcrypt(4), bcrypt(6)]
        );
        let argon = |memory_kib| HashParams::Argon2id {
            memory_kib,
            iterations: 2,
            parallelism: 1,
        };
        // 229376 KiB chosen, 19456 and 379904 tried: 8 MiB doubling up to below it.
        assert_eq!(
            plot_sweep(
                argon(229_376),
                &[argon(19456), argon(379_904), argon(229_376)],
                true
            ),
            vec![
                argon(8192),
                argon(16384),
                argon(32768),
                argon(65536),
                argon(131_072)
            ]
        );
        // Nothing tried over the target: 5/4 too; one within 10% of a tried setting is
        // skipped (65536 is not within 10% of 81920, 73728 would be).
        assert_eq!(
            plot_sweep(argon(81920), &[argon(17408), argon(81920)], false),
            vec![argon(8192), argon(32768), argon(65536), argon(102_400)]
        );
        // Less than 32 MiB chosen: the grid starts at a quarter of it, never below 1 MiB.
        assert_eq!(
            plot_sweep(argon(4096), &[argon(4096)], true),
            vec![argon(1024), argon(2048)]
        );
    }

    #[test]
    fn calibration_json_round_trips() {
        for a in Algorithm::ALL {
            let p = a.owasp();
            assert_eq!(params_from_json(&p.to_json()), Some(p));
        }
    }
}
