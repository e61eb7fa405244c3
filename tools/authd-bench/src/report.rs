//! The figures of a run as data (serialized for `--json`) and as text: each phase, the
//! ceilings, the flood, the daemon's memory, and the block of targets the team tracks. It must
//! not measure: `load` hands it what it measured.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::http::{LoopResult, Tally};
use crate::output::{Summary, fmt_bytes, fmt_ms, fmt_rate};
use crate::system::{CpuUsed, Machine};

// The targets the team tracks (BENCHMARKS.md).
const SIGN_IN_VS_CEILING_GOAL: f64 = 95.0;
/// `/me` against the bare server with an HMAC signature (HS256, HS384, HS512).
pub(crate) const ME_VS_BARE_GOAL_HMAC: f64 = 85.0;
/// `/me` against the bare server with an asymmetric signature (EdDSA, ES256, RS256), checked
/// once per token thanks to the verified-token cache.
pub(crate) const ME_VS_BARE_GOAL_ASYMMETRIC: f64 = 80.0;
const ME_P99_UNDER_FLOOD_GOAL_MS: f64 = 5.0;
const REFUSED_P99_GOAL_MS: f64 = 5.0;

/// One measured phase, as reported.
#[derive(Debug, Serialize)]
pub(crate) struct Phase {
    /// Answers with the expected status, and their rate over the phase.
    pub(crate) ok: usize,
    pub(crate) per_second: f64,
    pub(crate) latency: Option<Summary>,
    /// 503 answers and their latency.
    pub(crate) busy: usize,
    pub(crate) busy_latency: Option<Summary>,
    pub(crate) busy_without_retry_after: u64,
    /// Of the 503s, those with code `unavailable` (the store failed, e.g. no pooled
    /// connection in time) rather than `busy`.
    pub(crate) unavailable: u64,
    pub(crate) other_statuses: BTreeMap<u16, u64>,
    pub(crate) errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed_s: f64,
    /// CPU seconds used during the phase by the server measured (the daemon, or the bare
    /// server), by the daemon's hashing threads (part of the former), and by this process (the
    /// client).
    pub(crate) server_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_hashing_cpu_s: Option<f64>,
    pub(crate) bench_cpu_s: Option<f64>,
}

impl Phase {
    pub(crate) fn of(result: LoopResult, cpu: CpuUsed) -> Phase {
        let LoopResult { tally, elapsed } = result;
        let Tally {
            mut ok,
            mut busy,
            busy_without_retry_after,
            unavailable,
            other,
            errors,
            first_error,
            ..
        } = tally;
        let secs = elapsed.as_secs_f64().max(1e-9);
        Phase {
            ok: ok.len(),
            per_second: ok.len() as f64 / secs,
            latency: Summary::of(&mut ok),
            busy: busy.len(),
            busy_latency: Summary::of(&mut busy),
            busy_without_retry_after,
            unavailable,
            other_statuses: other,
            errors,
            first_error,
            elapsed_s: secs,
            server_cpu_s: cpu.server,
            server_hashing_cpu_s: cpu.hashing,
            bench_cpu_s: cpu.client,
        }
    }

    /// `1234/s  p50 1.20 ms  p99 3.40 ms`.
    pub(crate) fn line(&self) -> String {
        let mut s = format!("{:>9}", fmt_rate(self.per_second));
        if let Some(l) = &self.latency {
            s.push_str(&format!(
                "  p50 {:>9}  p99 {:>9}  max {:>9}",
                fmt_ms(l.median_ms),
                fmt_ms(l.p99_ms),
                fmt_ms(l.max_ms)
            ));
        }
        s.push_str(&format!("  ({} in {:.1} s", self.ok, self.elapsed_s));
        if self.busy > 0 {
            s.push_str(&format!(", {} busy", self.busy));
        }
        if self.unavailable > 0 {
            s.push_str(&format!(", {} store unavailable", self.unavailable));
        }
        for (code, n) in &self.other_statuses {
            s.push_str(&format!(", {n} x {code}"));
        }
        if self.errors > 0 {
            s.push_str(&format!(", {} errors", self.errors));
            if let Some(e) = &self.first_error {
                s.push_str(&format!(" [first: {e}]"));
            }
        }
        s.push(')');
        if let (Some(d), Some(b)) = (self.server_cpu_s, self.bench_cpu_s) {
            match self.server_hashing_cpu_s {
                Some(h) => s.push_str(&format!(
                    "  cpu server {d:.1} s (hashing {h:.1} s), client {b:.1} s"
                )),
                None => s.push_str(&format!("  cpu server {d:.1} s, client {b:.1} s")),
            }
        }
        s
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Ceiling {
    pub(crate) threads: usize,
    pub(crate) verifies: u64,
    /// Verifies per second on all threads: the time-weighted mean of the runs below.
    pub(crate) per_second: f64,
    pub(crate) verify: Option<Summary>,
    pub(crate) elapsed_s: f64,
    /// The rate of each run (before and after the sign-in phase).
    pub(crate) runs_per_second: Vec<f64>,
    #[serde(skip)]
    pub(crate) samples: Vec<Duration>,
}

impl Ceiling {
    pub(crate) fn combine(a: Ceiling, b: Ceiling) -> Ceiling {
        let elapsed = a.elapsed_s + b.elapsed_s;
        let per_second =
            (a.per_second * a.elapsed_s + b.per_second * b.elapsed_s) / elapsed.max(1e-9);
        let mut samples = a.samples;
        samples.extend(b.samples);
        let mut runs = a.runs_per_second;
        runs.extend(b.runs_per_second);
        Ceiling {
            threads: a.threads,
            verifies: a.verifies + b.verifies,
            per_second,
            verify: Summary::of(&mut samples),
            elapsed_s: elapsed,
            runs_per_second: runs,
            samples,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Flood {
    pub(crate) factor: f64,
    pub(crate) offered_per_second: f64,
    pub(crate) sent: u64,
    /// Sends skipped by the client because too many were already waiting.
    pub(crate) skipped_by_client: u64,
    pub(crate) abandoned: u64,
    pub(crate) sign_in: Phase,
    pub(crate) me: Phase,
    /// CPU seconds used during the flood by the daemon and by this process.
    pub(crate) daemon_cpu_s: Option<f64>,
    pub(crate) bench_cpu_s: Option<f64>,
}

/// Sign-ins flooded with nothing else running.
#[derive(Debug, Serialize)]
pub(crate) struct FloodAlone {
    pub(crate) sent: u64,
    pub(crate) skipped_by_client: u64,
    pub(crate) abandoned: u64,
    pub(crate) sign_in: Phase,
}

/// A figure the team tracks, against its goal.
#[derive(Debug, Serialize)]
pub(crate) struct Tracked {
    /// `None` when there was nothing to measure (no answer of that kind).
    pub(crate) value: Option<f64>,
    pub(crate) goal: String,
    pub(crate) met: bool,
}

/// The daemon's CPU time per refused (503) sign-in, over the flood with nothing else sent.
#[derive(Debug, Serialize)]
pub(crate) struct CpuPerRefused {
    pub(crate) refused: usize,
    /// The whole daemon's utime + stime over the phase, divided by the 503s. Mostly the hashing
    /// of the sign-ins it served meanwhile, so far above the cost of a 503.
    pub(crate) whole_daemon_ms: Option<f64>,
    /// The same without the CPU of the hashing threads: the 503s plus the rest of the work of
    /// the sign-ins served (parsing, lookups, tokens), so still an upper bound.
    pub(crate) outside_hashing_ms: Option<f64>,
}

/// The daemon's peak resident memory against its budget.
#[derive(Debug, Serialize)]
pub(crate) struct PeakRss {
    /// VmHWM at the end of the run.
    pub(crate) peak_bytes: Option<u64>,
    /// hash_workers x one hash's memory + 64 MiB.
    pub(crate) budget_bytes: u64,
    pub(crate) percent_of_budget: Option<f64>,
    pub(crate) met: bool,
}

/// The figures the team tracks, in one block (`"targets"` in the JSON).
#[derive(Debug, Serialize)]
pub(crate) struct Targets {
    /// `/me` requests per second as a percentage of the bare hyper server's, same run.
    pub(crate) me_vs_bare_percent: Tracked,
    /// Sign-ins per second as a percentage of the hash-only ceiling, same run.
    pub(crate) sign_in_vs_ceiling_percent: Tracked,
    /// `/me` p99 while sign-ins are sent at 4x the ceiling, in ms.
    pub(crate) me_p99_under_flood_ms: Tracked,
    /// p99 of the 503 answers to that flood, in ms; met only if every 503 had `Retry-After`.
    pub(crate) refused_p99_under_flood_ms: Tracked,
    pub(crate) cpu_per_refused: CpuPerRefused,
    pub(crate) peak_rss: PeakRss,
}

impl Targets {
    pub(crate) fn of(
        sign_in_vs_ceiling: f64,
        me_vs_bare: f64,
        flood_alone: &FloodAlone,
        flood: &Flood,
        peak: Option<u64>,
        budget: u64,
        me_vs_bare_goal: f64,
    ) -> Targets {
        let at_least = |value: f64, goal: f64| Tracked {
            value: Some(value),
            goal: format!(">= {goal}"),
            met: value >= goal,
        };
        let under = |value: Option<f64>, goal: f64| Tracked {
            value,
            goal: format!("< {goal}"),
            met: value.is_some_and(|v| v < goal),
        };
        let mut refused_p99 = under(
            flood.sign_in.busy_latency.map(|l| l.p99_ms),
            REFUSED_P99_GOAL_MS,
        );
        refused_p99.met &= flood.sign_in.busy_without_retry_after == 0;
        let alone = &flood_alone.sign_in;
        let per_refused = |cpu_s: Option<f64>| {
            cpu_s
                .filter(|_| alone.busy > 0)
                .map(|s| s * 1000.0 / alone.busy as f64)
        };
        let outside = alone
            .server_cpu_s
            .zip(alone.server_hashing_cpu_s)
            .map(|(all, hashing)| (all - hashing).max(0.0));
        let percent_of_budget = peak.map(|p| p as f64 * 100.0 / budget.max(1) as f64);
        Targets {
            me_vs_bare_percent: at_least(me_vs_bare * 100.0, me_vs_bare_goal),
            sign_in_vs_ceiling_percent: at_least(
                sign_in_vs_ceiling * 100.0,
                SIGN_IN_VS_CEILING_GOAL,
            ),
            me_p99_under_flood_ms: under(
                flood.me.latency.map(|l| l.p99_ms),
                ME_P99_UNDER_FLOOD_GOAL_MS,
            ),
            refused_p99_under_flood_ms: refused_p99,
            cpu_per_refused: CpuPerRefused {
                refused: alone.busy,
                whole_daemon_ms: per_refused(alone.server_cpu_s),
                outside_hashing_ms: per_refused(outside),
            },
            peak_rss: PeakRss {
                peak_bytes: peak,
                budget_bytes: budget,
                percent_of_budget,
                met: peak.is_some_and(|p| p < budget),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The store the daemon ran on: `redb` or `postgres`.
    pub(crate) store: String,
    pub(crate) machine: Machine,
    /// The daemon binary loaded.
    pub(crate) authd: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute figures when the run started.
    pub(crate) load_average_at_start: Option<String>,
    /// Set when the two halves of a bracketing ceiling differ by more than 20%: something
    /// else used the CPU, and the ratios are less reliable.
    pub(crate) noise_warning: Option<String>,
    pub(crate) setting: String,
    /// The token signature `/me` verifies (`tokens.signing_algorithm`).
    pub(crate) signing_algorithm: String,
    pub(crate) params: Value,
    pub(crate) route: String,
    pub(crate) hash_workers: u64,
    pub(crate) hash_queue: u64,
    pub(crate) users: usize,
    pub(crate) concurrency: usize,
    pub(crate) phase_duration_s: f64,
    pub(crate) register: Phase,
    pub(crate) hash_ceiling: Ceiling,
    pub(crate) sign_in: Phase,
    pub(crate) sign_in_vs_ceiling: f64,
    pub(crate) me: Phase,
    pub(crate) bare_hyper: Phase,
    /// The rate of each half of the bare server's run (before and after `/me`).
    pub(crate) bare_hyper_runs_per_second: Vec<f64>,
    pub(crate) me_vs_bare: f64,
    pub(crate) flood_alone: FloodAlone,
    pub(crate) flood: Flood,
    pub(crate) daemon_peak_memory_bytes: Option<u64>,
    pub(crate) memory_per_hash_bytes: u64,
    pub(crate) memory_limit_bytes: u64,
    pub(crate) targets: Targets,
}

fn print_busy(p: &Phase) {
    match &p.busy_latency {
        Some(b) => println!(
            "  sign-in 503       {:>9} answers  p50 {:>9}  p99 {:>9}  max {:>9}  ({} without \
             Retry-After, {} store unavailable)",
            p.busy,
            fmt_ms(b.median_ms),
            fmt_ms(b.p99_ms),
            fmt_ms(b.max_ms),
            p.busy_without_retry_after,
            p.unavailable
        ),
        None => println!("  sign-in 503       none"),
    }
}

pub(crate) fn print_report(r: &Report) {
    println!(
        "authd-bench: {} ({}), {} hashing workers, queue {}; {} cores ({}){}",
        r.setting,
        r.route,
        r.hash_workers,
        r.hash_queue,
        r.machine.cores,
        r.machine.cpu,
        if r.machine.debug_build {
            ", DEBUG BUILD"
        } else {
            ""
        }
    );
    println!(
        "daemon {}, store {}, tokens {}",
        r.authd, r.store, r.signing_algorithm
    );
    println!(
        "{} users, concurrency {}, {:.1} s per phase, one client thread, HTTP/1.1 keep-alive \
         on 127.0.0.1; load average at start {}",
        r.users,
        r.concurrency,
        r.phase_duration_s,
        r.load_average_at_start.as_deref().unwrap_or("unknown")
    );
    println!();
    println!("register            {}", r.register.line());
    let c = &r.hash_ceiling;
    println!(
        "hash-only ceiling   {:>9}  verify p50 {}  ({} verifies on {} threads in {:.1} s; \
         before/after sign-in: {})",
        fmt_rate(c.per_second),
        c.verify.map_or_else(|| "-".into(), |v| fmt_ms(v.median_ms)),
        c.verifies,
        c.threads,
        c.elapsed_s,
        c.runs_per_second
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!("sign-in             {}", r.sign_in.line());
    println!(
        "  = {:.1}% of the hash-only ceiling",
        r.sign_in_vs_ceiling * 100.0
    );
    println!("/me                 {}", r.me.line());
    println!("bare hyper          {}", r.bare_hyper.line());
    println!(
        "  before/after /me: {}",
        r.bare_hyper_runs_per_second
            .iter()
            .map(|x| fmt_rate(*x))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "  /me = {:.1}% of the bare hyper server",
        r.me_vs_bare * 100.0
    );
    let a = &r.flood_alone;
    println!(
        "flood alone: sign-ins offered at {} ({}x the ceiling) for {:.1} s: {} sent, {} skipped \
         by the client, {} unanswered",
        fmt_rate(r.flood.offered_per_second),
        r.flood.factor,
        r.phase_duration_s / 2.0,
        a.sent,
        a.skipped_by_client,
        a.abandoned
    );
    println!("  sign-in 200       {}", a.sign_in.line());
    println!(
        "    = {:.1}% of the hash-only ceiling",
        a.sign_in.per_second / r.hash_ceiling.per_second.max(1e-9) * 100.0
    );
    print_busy(&a.sign_in);
    let f = &r.flood;
    println!(
        "flood with /me: sign-ins offered at {} ({}x the ceiling): {} sent, {} skipped by the client, \
         {} unanswered{}",
        fmt_rate(f.offered_per_second),
        f.factor,
        f.sent,
        f.skipped_by_client,
        f.abandoned,
        match (f.daemon_cpu_s, f.bench_cpu_s) {
            (Some(d), Some(b)) => format!("; cpu server {d:.1} s, client {b:.1} s"),
            _ => String::new(),
        }
    );
    println!("  sign-in 200       {}", f.sign_in.line());
    print_busy(&f.sign_in);
    println!("  /me               {}", f.me.line());
    println!(
        "daemon peak memory  {} (VmHWM; limit {} = {} workers x {} + 64 MiB)",
        r.daemon_peak_memory_bytes
            .map_or_else(|| "unknown".into(), fmt_bytes),
        fmt_bytes(r.memory_limit_bytes),
        r.hash_workers,
        fmt_bytes(r.memory_per_hash_bytes)
    );
    if let Some(w) = &r.noise_warning {
        println!("note: {w}");
    }
    println!();
    print_targets(r);
}

fn print_targets(r: &Report) {
    let t = &r.targets;
    let mark = |met: bool| if met { "[met]   " } else { "[MISSED]" };
    let line = |status: &str, name: &str, value: String, detail: String| {
        println!("  {status} {name:<44} {value:>10}  {detail}");
    };
    let percent = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}%"));
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), fmt_ms);
    println!("targets:");
    line(
        mark(t.me_vs_bare_percent.met),
        "/me throughput vs the bare hyper server",
        percent(t.me_vs_bare_percent.value),
        format!("goal {}%", t.me_vs_bare_percent.goal),
    );
    line(
        mark(t.sign_in_vs_ceiling_percent.met),
        "sign-in throughput vs the hash-only ceiling",
        percent(t.sign_in_vs_ceiling_percent.value),
        format!("goal {}%", t.sign_in_vs_ceiling_percent.goal),
    );
    line(
        mark(t.me_p99_under_flood_ms.met),
        &format!("/me p99 during the {}x sign-in flood", r.flood.factor),
        ms(t.me_p99_under_flood_ms.value),
        format!("goal {} ms", t.me_p99_under_flood_ms.goal),
    );
    line(
        mark(t.refused_p99_under_flood_ms.met),
        &format!("503 p99 during the {}x sign-in flood", r.flood.factor),
        ms(t.refused_p99_under_flood_ms.value),
        format!(
            "goal {} ms, each with Retry-After ({} x 503, {} without)",
            t.refused_p99_under_flood_ms.goal,
            r.flood.sign_in.busy,
            r.flood.sign_in.busy_without_retry_after
        ),
    );
    let c = &t.cpu_per_refused;
    line(
        "[figure]",
        "daemon CPU per 503, flood alone",
        ms(c.outside_hashing_ms),
        format!(
            "outside the hashing threads; {} with them ({} x 503)",
            ms(c.whole_daemon_ms),
            c.refused
        ),
    );
    let m = &t.peak_rss;
    line(
        mark(m.met),
        "daemon peak RSS vs its budget",
        m.peak_bytes.map_or_else(|| "-".into(), fmt_bytes),
        format!(
            "{} of {} = {} workers x {} + 64 MiB",
            percent(m.percent_of_budget),
            fmt_bytes(m.budget_bytes),
            r.hash_workers,
            fmt_bytes(r.memory_per_hash_bytes)
        ),
    );
}

/// The figures of several runs (one per store) side by side.
pub(crate) fn print_comparison(reports: &[Report]) {
    println!();
    print!("{:<34}", "side by side");
    for r in reports {
        print!("{:>16}", r.store);
    }
    println!();
    let row = |label: &str, value: &dyn Fn(&Report) -> String| {
        print!("{label:<34}");
        for r in reports {
            print!("{:>16}", value(r));
        }
        println!();
    };
    let p99 = |p: &Phase| p.latency.as_ref().map_or("-".into(), |l| fmt_ms(l.p99_ms));
    row("register /s", &|r| fmt_rate(r.register.per_second));
    row("register p99", &|r| p99(&r.register));
    row("hash-only ceiling /s", &|r| {
        fmt_rate(r.hash_ceiling.per_second)
    });
    row("sign-in /s", &|r| fmt_rate(r.sign_in.per_second));
    row("sign-in % of ceiling", &|r| {
        format!("{:.1}%", r.sign_in_vs_ceiling * 100.0)
    });
    row("sign-in p99", &|r| p99(&r.sign_in));
    row("/me /s", &|r| fmt_rate(r.me.per_second));
    row("/me p99", &|r| p99(&r.me));
    row("/me % of bare hyper", &|r| {
        format!("{:.1}%", r.me_vs_bare * 100.0)
    });
    row("flood: sign-in 503s", &|r| {
        (r.flood_alone.sign_in.busy + r.flood.sign_in.busy).to_string()
    });
    row("flood: 503 unavailable (store)", &|r| {
        (r.flood_alone.sign_in.unavailable + r.flood.sign_in.unavailable + r.flood.me.unavailable)
            .to_string()
    });
    row("flood: errors, other statuses", &|r| {
        let other: u64 = r
            .flood
            .sign_in
            .other_statuses
            .values()
            .chain(r.flood_alone.sign_in.other_statuses.values())
            .chain(r.flood.me.other_statuses.values())
            .sum();
        format!(
            "{}, {other}",
            r.flood.sign_in.errors + r.flood_alone.sign_in.errors + r.flood.me.errors
        )
    });
    row("/me p99 during flood", &|r| p99(&r.flood.me));
}
