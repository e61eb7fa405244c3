//! `--soak DURATION`: the daemon under a steady mixed load for a long time, its memory read
//! as it goes, to show whether anything grows without bound.
//!
//! After the usual registration of `--users` users, the load runs in ten segments of equal
//! length, each one all of these at once: `/me` (8 clients), sign-ins of those users (4
//! clients, hash-bound), and registrations of new users (1 client, so the database keeps
//! growing). After each segment the daemon's resident memory (VmRSS) and peak (VmHWM) are
//! read. Reported: each segment's figures, and the growth of VmRSS from the end of the first
//! segment (warm: caches, pools and buffers filled once) to the end of the last.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use hyper::StatusCode;
use serde::Serialize;

use crate::Cli;
use crate::http::{Http, closed_loop, post_json, rotating_gets};
use crate::load::{register_users, ticking, wait_ready};
use crate::output::{Progress, fmt_bytes};
use crate::setup::{Launched, config_text, driver_of, launch};
use crate::system::{self, Machine, peak_memory};

/// Segments of a soak.
const SEGMENTS: u32 = 10;

/// One segment's figures.
#[derive(Debug, Serialize)]
struct Segment {
    end_s: f64,
    me: usize,
    sign_in: usize,
    register: usize,
    errors: u64,
    rss_bytes: Option<u64>,
    peak_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Soak {
    machine: Machine,
    load_average_at_start: Option<String>,
    setting: String,
    duration_s: f64,
    segments: Vec<Segment>,
    /// VmRSS at the end of the last segment over VmRSS at the end of the first, minus one.
    rss_growth: Option<f64>,
    memory_limit_bytes: u64,
}

/// A process's current resident memory (VmRSS), in bytes.
fn resident_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub(crate) fn run(args: &Cli, authd: &Path, total: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(
        total >= Duration::from_secs(10) && total <= Duration::from_secs(3600),
        "--soak must be between 10s and 1h"
    );
    let machine = Machine::read();
    machine.warn_if_debug();
    let load_average_at_start = system::load_average();
    let (text, _) = config_text(args.config.as_deref(), args.algorithm, authd)?;
    let driver = Arc::new(driver_of(&text)?);
    let Launched {
        dir: _dir,
        mut daemon,
        base,
    } = launch(authd, &text, None, args.signing_algorithm.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")?;
    let http = Http::new();
    let progress = Progress::new();
    let health = runtime.block_on(wait_ready(
        &http,
        &format!("{base}/healthz").parse()?,
        &mut daemon,
    ))?;
    let hash_workers = health["hash_pool"]["workers"]
        .as_u64()
        .unwrap_or(machine.cores as u64);
    let users = args.users as usize;
    let register_uri: hyper::Uri = format!(
        "{base}/auth/{}/{}/register",
        driver.subject, driver.strategy
    )
    .parse()?;
    let sign_in_uri: hyper::Uri =
        format!("{base}/auth/{}/{}/sign_in", driver.subject, driver.strategy).parse()?;
    let me_uri: hyper::Uri = format!("{base}/auth/{}/me", driver.subject).parse()?;
    progress.step(&format!("registering {users} users"));
    let (tokens, _) = runtime.block_on(register_users(
        &http,
        &register_uri,
        &driver,
        users,
        4,
        &progress,
    ))?;
    let tokens = Arc::new(tokens);
    let next_user = Arc::new(AtomicU64::new(users as u64));
    let segment = total / SEGMENTS;
    let mut segments = Vec::new();
    let started = std::time::Instant::now();
    for n in 1..=SEGMENTS {
        let done = Arc::new(AtomicU64::new(0));
        let me = {
            let tokens = Arc::clone(&tokens);
            let uri = me_uri.clone();
            closed_loop(
                &http,
                8,
                segment,
                StatusCode::OK,
                Arc::clone(&done),
                rotating_gets(uri, tokens, 8),
            )
        };
        let sign_in = {
            let driver = Arc::clone(&driver);
            let uri = sign_in_uri.clone();
            closed_loop(
                &http,
                4,
                segment,
                StatusCode::OK,
                Arc::clone(&done),
                move |task, i| {
                    post_json(&uri, &driver.sign_in_body((task + i as usize * 4) % users))
                },
            )
        };
        let register = {
            let driver = Arc::clone(&driver);
            let uri = register_uri.clone();
            let next = Arc::clone(&next_user);
            closed_loop(
                &http,
                1,
                segment,
                StatusCode::CREATED,
                Arc::clone(&done),
                move |_, _| {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    post_json(&uri, &driver.register_body(i))
                },
            )
        };
        let (me, sign_in, register) = runtime.block_on(ticking(
            &progress,
            &format!("soak segment {n}/{SEGMENTS}"),
            done,
            async { tokio::join!(me, sign_in, register) },
        ));
        if let Some(status) = daemon.exited() {
            anyhow::bail!(
                "the daemon exited during the soak ({status}):\n{}",
                daemon.log_tail()
            );
        }
        segments.push(Segment {
            end_s: started.elapsed().as_secs_f64(),
            me: me.tally.ok.len(),
            sign_in: sign_in.tally.ok.len(),
            register: register.tally.ok.len(),
            errors: me.tally.errors + sign_in.tally.errors + register.tally.errors,
            rss_bytes: resident_memory(daemon.pid()),
            peak_bytes: peak_memory(daemon.pid()),
        });
    }
    progress.clear();
    let first = segments.first().and_then(|s| s.rss_bytes);
    let last = segments.last().and_then(|s| s.rss_bytes);
    let soak = Soak {
        machine,
        load_average_at_start,
        setting: driver.params.to_string(),
        duration_s: total.as_secs_f64(),
        rss_growth: first
            .zip(last)
            .map(|(a, b)| b as f64 / a.max(1) as f64 - 1.0),
        memory_limit_bytes: hash_workers * driver.params.memory_bytes()
            + crate::load::MEMORY_ALLOWANCE,
        segments,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&soak)?);
    } else {
        println!(
            "soak: {} for {:.0} s in {SEGMENTS} segments (/me 8 clients, sign-in 4, register 1)",
            soak.setting, soak.duration_s
        );
        println!("    end      /me  sign-in register errors        RSS       peak");
        for s in &soak.segments {
            println!(
                "  {:>5.0} s {:>8} {:>8} {:>8} {:>6} {:>10} {:>10}",
                s.end_s,
                s.me,
                s.sign_in,
                s.register,
                s.errors,
                s.rss_bytes.map_or("?".into(), fmt_bytes),
                s.peak_bytes.map_or("?".into(), fmt_bytes),
            );
        }
        if let Some(g) = soak.rss_growth {
            println!(
                "  RSS growth from the first segment's end to the last's: {:+.1}% (budget {})",
                g * 100.0,
                fmt_bytes(soak.memory_limit_bytes)
            );
        }
    }
    Ok(())
}
