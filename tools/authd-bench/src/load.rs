//! One run of the load benchmark: the real daemon, started as a child process on a loopback
//! port with a temporary database, loaded by this process's own HTTP client. In order it
//! measures:
//!
//! 1. registration of `--users` users;
//! 2. the hash-only ceiling: the same hash parameters verified in a tight loop on one thread
//!    per core, each reusing its memory (what the daemon's hashing workers do, minus the
//!    daemon);
//! 3. sign-in throughput and latency at `--concurrency`, as a ratio of that ceiling;
//! 4. `/me` throughput and latency;
//! 5. a bare hyper server answering a fixed JSON body (a child process too, with as many runtime
//!    workers as the daemon), sent the same requests as `/me` with the same client and
//!    concurrency: `/me` is shown as a fraction of it;
//! 6. sign-ins sent at 4x the hashing ceiling, first alone (for half a phase), then together
//!    with the `/me` load of step 4: the sign-ins still served, the latency of the 503 answers
//!    (with `Retry-After`) the excess gets, the daemon's CPU per 503, and `/me` latency
//!    meanwhile;
//! 7. the daemon's peak memory (VmHWM).
//!
//! Every loop is bounded in count and time, and only 127.0.0.1 is ever addressed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authd_password::HashParams;
use authd_password::hash::verify;
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::Value;

use crate::Cli;
use crate::http::{Http, LoopResult, Tally, closed_loop, get, open_loop, post_json, rotating_gets};
use crate::output::{Progress, Summary, fmt_rate};
use crate::process::{BareChild, DaemonChild};
use crate::report::{Ceiling, Flood, FloodAlone, Phase, Report, Targets, print_report};
use crate::setup::{Driver, StoreTarget};
use crate::system::{self, CpuMark, CpuUsed, Machine, peak_memory};
use authd_strategy_api::toml;

/// Sign-ins are flooded at this multiple of the measured hashing ceiling.
const FLOOD_FACTOR: f64 = 4.0;
/// The longest a measured phase may run.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// How long the daemon gets to start answering `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long registration may take in all.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(600);
/// Extra daemon memory allowed beyond one hash's memory per hashing worker.
pub(crate) const MEMORY_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// The store of one measurement.
enum Which {
    Redb,
    /// A PostgreSQL URL (its `search_path` names a schema made for the run).
    Postgres(String),
}

/// Runs the benchmark on redb, and with `--store postgres` on PostgreSQL too, then prints the
/// reports (and both side by side).
pub(crate) fn run(args: &Cli, authd: &Path) -> anyhow::Result<()> {
    let mut reports = vec![measure(args, authd, Which::Redb)?];
    if args.store == crate::StoreKind::Postgres {
        let url = args
            .database_url
            .as_deref()
            .context("--store postgres needs --database-url")?;
        let schema = crate::pg::Schema::create(url)?;
        let outcome = measure(args, authd, Which::Postgres(schema.url.clone()));
        schema.drop_schema()?;
        reports.push(outcome?);
    }
    if args.json {
        if reports.len() == 1 {
            println!("{}", serde_json::to_string_pretty(&reports[0])?);
        } else {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
    } else {
        for (i, report) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_report(report);
        }
        if reports.len() > 1 {
            crate::report::print_comparison(&reports);
        }
    }
    Ok(())
}

fn measure(args: &Cli, authd: &Path, which: Which) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.duration >= Duration::from_millis(100) && args.duration <= MAX_DURATION,
        "--duration must be between 100ms and 10m"
    );
    let machine = Machine::read();
    machine.warn_if_debug();
    let load_average_at_start = system::load_average();
    let progress = Progress::new();
    let users = args.users as usize;
    let concurrency = args.concurrency as usize;

    let (text, _) = crate::setup::config_text(args.config.as_deref(), args.algorithm, authd)?;
    // The algorithm `/me` verifies: the flag's, the config's, or the daemon's default.
    let signing_algorithm = match &args.signing_algorithm {
        Some(alg) => alg.clone(),
        None => toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|doc| {
                doc.get("tokens")?
                    .get("signing_algorithm")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "EdDSA".to_string()),
    };
    let driver = Arc::new(crate::setup::driver_of(&text)?);
    let target = match which {
        Which::Redb => None,
        Which::Postgres(url) => Some(StoreTarget::Postgres(url)),
    };
    let target_name = target.as_ref().map_or("redb", StoreTarget::name);
    progress.step(&format!(
        "starting the daemon ({}, {target_name})",
        driver.params
    ));
    let crate::setup::Launched {
        dir: _dir,
        mut daemon,
        base,
    } = crate::setup::launch(authd, &text, target, args.signing_algorithm.as_deref())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")?;
    let http = Http::new();
    let uri = |path: String| -> anyhow::Result<hyper::Uri> {
        format!("{base}{path}")
            .parse()
            .with_context(|| format!("bad path {path}"))
    };
    let health_uri = uri("/healthz".into())?;
    let register_uri = uri(format!(
        "/auth/{}/{}/register",
        driver.subject, driver.strategy
    ))?;
    let sign_in_uri = uri(format!(
        "/auth/{}/{}/sign_in",
        driver.subject, driver.strategy
    ))?;
    let me_uri = uri(format!("/auth/{}/me", driver.subject))?;

    let health = runtime.block_on(wait_ready(&http, &health_uri, &mut daemon))?;
    // As /healthz reports them; the daemon's defaults (one worker per core, 8 queued jobs per
    // worker) if it does not.
    let hash_workers = health["hash_pool"]["workers"]
        .as_u64()
        .unwrap_or(machine.cores as u64);
    let hash_queue = health["hash_pool"]["queue_capacity"]
        .as_u64()
        .unwrap_or(8 * hash_workers);

    // 1. Registration.
    let register_concurrency = concurrency.min((hash_workers + hash_queue).max(1) as usize);
    progress.step(&format!("registering {users} users"));
    let mark = CpuMark::now(daemon.pid());
    let (tokens, register) = runtime.block_on(register_users(
        &http,
        &register_uri,
        &driver,
        users,
        register_concurrency,
        &progress,
    ))?;
    let register = Phase::of(register, mark.since());
    let tokens = Arc::new(tokens);
    let sign_in_bodies: Arc<Vec<Bytes>> =
        Arc::new((0..users).map(|i| driver.sign_in_body(i)).collect());

    // 2-3. Sign-ins, bracketed by the two halves of the hash-only ceiling (A-B-A), so that
    // drifting background load falls on both sides of the ratio alike.
    let threads = machine.cores;
    let half = args.duration / 2;
    let ceiling_run = |n: usize| {
        progress.step(&format!(
            "hash ceiling ({n}/2): {} on {threads} threads",
            driver.params
        ));
        hash_ceiling(
            driver.params,
            driver.password.as_bytes(),
            threads,
            half,
            &progress,
        )
    };
    let ceiling_before = ceiling_run(1)?;
    let mark = CpuMark::now(daemon.pid());
    let sign_in = {
        let bodies = Arc::clone(&sign_in_bodies);
        let uri = sign_in_uri.clone();
        let done = Arc::new(AtomicU64::new(0));
        runtime.block_on(ticking(
            &progress,
            "sign-in",
            Arc::clone(&done),
            closed_loop(
                &http,
                concurrency,
                args.duration,
                StatusCode::OK,
                done,
                move |task, i| {
                    let n = (task as u64 + i * concurrency as u64) as usize % bodies.len();
                    post_json(&uri, &bodies[n])
                },
            ),
        ))
    };
    let sign_in = Phase::of(sign_in, mark.since());
    ensure_answers("sign-in", &sign_in)?;
    let ceiling_after = ceiling_run(2)?;
    let ceiling = Ceiling::combine(ceiling_before, ceiling_after);

    // 4-5. /me, bracketed by the two halves of the bare hyper server's run, with the same
    // client and concurrency.
    let me_loop =
        |uri: hyper::Uri, tokens: Arc<Vec<HeaderValue>>| rotating_gets(uri, tokens, concurrency);
    let mut server = BareChild::spawn()?;
    let bare_uri: hyper::Uri = format!("http://127.0.0.1:{}/", server.port).parse()?;
    let bare_run = |n: usize| {
        let mark = CpuMark::now(server.pid());
        let done = Arc::new(AtomicU64::new(0));
        // The very requests /me gets (bearer token included), to another server.
        let result = runtime.block_on(ticking(
            &progress,
            &format!("bare hyper ({n}/2)"),
            Arc::clone(&done),
            closed_loop(
                &http,
                concurrency,
                half,
                StatusCode::OK,
                done,
                me_loop(bare_uri.clone(), Arc::clone(&tokens)),
            ),
        ));
        (result, mark.since())
    };
    let bare_before = bare_run(1);
    let mark = CpuMark::now(daemon.pid());
    let me = {
        let done = Arc::new(AtomicU64::new(0));
        runtime.block_on(ticking(
            &progress,
            "/me",
            Arc::clone(&done),
            closed_loop(
                &http,
                concurrency,
                args.duration,
                StatusCode::OK,
                done,
                me_loop(me_uri.clone(), Arc::clone(&tokens)),
            ),
        ))
    };
    let me = Phase::of(me, mark.since());
    ensure_answers("/me", &me)?;
    let bare_after = bare_run(2);
    if let Some(status) = server.exited() {
        anyhow::bail!("the bare server exited during the benchmark ({status})");
    }
    drop(server);
    let bare_runs: Vec<f64> = [&bare_before.0, &bare_after.0]
        .iter()
        .map(|r| r.tally.ok.len() as f64 / r.elapsed.as_secs_f64().max(1e-9))
        .collect();
    let bare = Phase::of(
        bare_before.0.combine(bare_after.0),
        bare_before.1.add(bare_after.1),
    );
    ensure_answers("bare hyper", &bare)?;

    // 6. Sign-ins flooded alone for half a phase (the daemon should keep hashing at its
    // ceiling and shed the rest at once), then with /me at the same time.
    let offered = FLOOD_FACTOR * ceiling.per_second;
    let mark = CpuMark::now(daemon.pid());
    let flood_alone = {
        let done = Arc::new(AtomicU64::new(0));
        let bodies = Arc::clone(&sign_in_bodies);
        let uri = sign_in_uri.clone();
        runtime.block_on(ticking(
            &progress,
            &format!("flood: sign-ins at {} alone", fmt_rate(offered)),
            Arc::clone(&done),
            open_loop(&http, offered, half, StatusCode::OK, done, move |i| {
                post_json(&uri, &bodies[i as usize % bodies.len()])
            }),
        ))
    };
    let cpu = mark.since();
    let flood_alone = FloodAlone {
        sent: flood_alone.sent,
        skipped_by_client: flood_alone.skipped,
        abandoned: flood_alone.abandoned,
        sign_in: Phase::of(flood_alone.result, cpu),
    };
    let mark = CpuMark::now(daemon.pid());
    let (flood_sign_in, flood_me) = {
        let done = Arc::new(AtomicU64::new(0));
        let bodies = Arc::clone(&sign_in_bodies);
        let uri = sign_in_uri.clone();
        runtime.block_on(ticking(
            &progress,
            &format!("flood: sign-ins at {} with /me", fmt_rate(offered)),
            Arc::clone(&done),
            async {
                tokio::join!(
                    open_loop(
                        &http,
                        offered,
                        args.duration,
                        StatusCode::OK,
                        Arc::clone(&done),
                        move |i| post_json(&uri, &bodies[i as usize % bodies.len()]),
                    ),
                    closed_loop(
                        &http,
                        concurrency,
                        args.duration,
                        StatusCode::OK,
                        Arc::clone(&done),
                        me_loop(me_uri.clone(), Arc::clone(&tokens)),
                    ),
                )
            },
        ))
    };
    let cpu = mark.since();
    let flood = Flood {
        factor: FLOOD_FACTOR,
        offered_per_second: offered,
        sent: flood_sign_in.sent,
        skipped_by_client: flood_sign_in.skipped,
        abandoned: flood_sign_in.abandoned,
        sign_in: Phase::of(flood_sign_in.result, CpuUsed::default()),
        me: Phase::of(flood_me, CpuUsed::default()),
        daemon_cpu_s: cpu.server,
        bench_cpu_s: cpu.client,
    };

    // 7. Peak memory, read before the daemon goes.
    let peak = peak_memory(daemon.pid());
    if let Some(status) = daemon.exited() {
        anyhow::bail!(
            "the daemon exited during the benchmark ({status}):\n{}",
            daemon.log_tail()
        );
    }
    drop(daemon);
    progress.clear();

    let memory_limit = hash_workers * driver.params.memory_bytes() + MEMORY_ALLOWANCE;
    let sign_in_vs_ceiling = sign_in.per_second / ceiling.per_second.max(1e-9);
    let me_vs_bare = me.per_second / bare.per_second.max(1e-9);
    let targets = Targets::of(
        sign_in_vs_ceiling,
        me_vs_bare,
        &flood_alone,
        &flood,
        peak,
        memory_limit,
        if signing_algorithm.starts_with("HS") {
            crate::report::ME_VS_BARE_GOAL_HMAC
        } else {
            crate::report::ME_VS_BARE_GOAL_ASYMMETRIC
        },
    );
    let spread = |runs: &[f64]| {
        let max = runs.iter().copied().fold(0.0, f64::max);
        let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
        if max > 0.0 { 1.0 - min / max } else { 0.0 }
    };
    let noise_warning = {
        let (c, b) = (spread(&ceiling.runs_per_second), spread(&bare_runs));
        (c > 0.2 || b > 0.2).then(|| {
            format!(
                "the two halves of a ceiling differ by {:.0}% (hash) and {:.0}% (bare hyper): \
                 something else used the CPU during the run, so the ratios are less reliable",
                c * 100.0,
                b * 100.0
            )
        })
    };
    let report = Report {
        store: target_name.to_string(),
        machine,
        authd: authd.display().to_string(),
        load_average_at_start,
        noise_warning,
        setting: driver.params.to_string(),
        signing_algorithm,
        params: driver.params.to_json(),
        route: format!("/auth/{}/{}/sign_in", driver.subject, driver.strategy),
        hash_workers,
        hash_queue,
        users,
        concurrency,
        phase_duration_s: args.duration.as_secs_f64(),
        register,
        hash_ceiling: ceiling,
        sign_in,
        sign_in_vs_ceiling,
        me,
        bare_hyper: bare,
        bare_hyper_runs_per_second: bare_runs,
        me_vs_bare,
        flood_alone,
        flood,
        daemon_peak_memory_bytes: peak,
        memory_per_hash_bytes: driver.params.memory_bytes(),
        memory_limit_bytes: memory_limit,
        targets,
    };
    Ok(report)
}

/// Fails when a phase got no good answer at all (the daemon is broken, not slow).
fn ensure_answers(name: &str, phase: &Phase) -> anyhow::Result<()> {
    anyhow::ensure!(
        phase.ok > 0,
        "{name}: no successful answer ({} busy, other statuses {:?}, {} errors{})",
        phase.busy,
        phase.other_statuses,
        phase.errors,
        phase
            .first_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Runs `fut`, refreshing the status line with the answers counted so far.
pub(crate) async fn ticking<T>(
    progress: &Progress,
    label: &str,
    done: Arc<AtomicU64>,
    fut: impl std::future::Future<Output = T>,
) -> T {
    progress.step(label);
    let start = Instant::now();
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            () = tokio::time::sleep(Duration::from_millis(250)) => progress.update(&format!(
                "{label}: {:.1} s, {} answers",
                start.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed)
            )),
        }
    }
}

/// Polls `/healthz` until the daemon answers; returns its body.
pub(crate) async fn wait_ready(
    http: &Http,
    uri: &hyper::Uri,
    daemon: &mut DaemonChild,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = daemon.exited() {
            anyhow::bail!(
                "the daemon exited at start ({status}):\n{}",
                daemon.log_tail()
            );
        }
        if let Ok(answer) = http.call(get(uri, None)).await
            && answer.status == StatusCode::OK
        {
            return serde_json::from_slice(&answer.body).context("/healthz is not JSON");
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the daemon did not answer /healthz within {} s:\n{}",
                START_TIMEOUT.as_secs(),
                daemon.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers users `0..n`, `concurrency` at a time, retrying 503s; returns each user's
/// session token as an `Authorization` value.
pub(crate) async fn register_users(
    http: &Http,
    uri: &hyper::Uri,
    driver: &Arc<Driver>,
    n: usize,
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<(Vec<HeaderValue>, LoopResult)> {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + REGISTER_TIMEOUT;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let http = http.clone();
        let uri = uri.clone();
        let driver = Arc::clone(driver);
        let next = Arc::clone(&next);
        let failed = Arc::clone(&failed);
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut tokens = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n || failed.load(Ordering::Relaxed) {
                    break;
                }
                let body = driver.register_body(i);
                let token = loop {
                    if Instant::now() > deadline {
                        failed.store(true, Ordering::Relaxed);
                        return Err(anyhow::anyhow!("registration took too long"));
                    }
                    let sent = Instant::now();
                    let answer = http.call(post_json(&uri, &body)).await;
                    tally.record(StatusCode::CREATED, sent.elapsed(), &answer);
                    match answer {
                        Ok(a) if a.status == StatusCode::CREATED => {
                            let v: Value = serde_json::from_slice(&a.body)?;
                            let token = v["token"]
                                .as_str()
                                .context("register answered without a token")?;
                            break HeaderValue::from_str(&format!("Bearer {token}"))?;
                        }
                        Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(a) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(anyhow::anyhow!(
                                "register answered {}: {}",
                                a.status,
                                String::from_utf8_lossy(&a.body)
                            ));
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e.context("register failed"));
                        }
                    }
                };
                tokens.push((i, token));
            }
            tally.last_done = Some(Instant::now());
            Ok((tokens, tally))
        });
    }
    let mut all = Vec::with_capacity(n);
    let mut tally = Tally::default();
    let mut first_error = None;
    loop {
        let joined = tokio::select! {
            j = tasks.join_next() => j,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                progress.update(&format!(
                    "registering {n} users: {} done",
                    all.len() + tally.ok.len()
                ));
                continue;
            }
        };
        match joined {
            None => break,
            Some(Ok(Ok((tokens, t)))) => {
                all.extend(tokens);
                tally.merge(t);
            }
            Some(Ok(Err(e))) => {
                first_error.get_or_insert(e);
            }
            Some(Err(e)) => {
                first_error.get_or_insert(anyhow::anyhow!("a registering task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    anyhow::ensure!(all.len() == n, "only {} of {n} users registered", all.len());
    all.sort_by_key(|(i, _)| *i);
    let elapsed = tally.last_done.unwrap_or_else(Instant::now) - start;
    Ok((
        all.into_iter().map(|(_, t)| t).collect(),
        LoopResult { tally, elapsed },
    ))
}

/// Verifies `password` against one stored hash of `params` in a tight loop on `threads`
/// threads for `duration`, each thread reusing its memory as the daemon's workers do.
fn hash_ceiling(
    params: HashParams,
    password: &[u8],
    threads: usize,
    duration: Duration,
    progress: &Progress,
) -> anyhow::Result<Ceiling> {
    let stored = Arc::new(params.hash(password).context("hashing failed")?);
    let password = Arc::new(password.to_vec());
    let start_line = Arc::new(Barrier::new(threads + 1));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let stored = Arc::clone(&stored);
        let password = Arc::clone(&password);
        let start_line = Arc::clone(&start_line);
        let count = Arc::clone(&count);
        let handle = std::thread::Builder::new()
            .name(format!("hash-ceiling-{t}"))
            .spawn(move || -> anyhow::Result<(Vec<Duration>, Duration)> {
                // Warm-up: sizes this thread's reused memory before timing starts.
                let warm = verify(&password, &stored);
                start_line.wait();
                anyhow::ensure!(
                    warm.context("verify failed")?,
                    "the password does not verify"
                );
                let start = Instant::now();
                let mut times = Vec::new();
                while start.elapsed() < duration && times.len() < 10_000_000 {
                    let t0 = Instant::now();
                    let ok = verify(&password, &stored).context("verify failed")?;
                    times.push(t0.elapsed());
                    anyhow::ensure!(ok, "the password does not verify");
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok((times, start.elapsed()))
            })
            .context("cannot start a hashing thread")?;
        handles.push(handle);
    }
    start_line.wait();
    let start = Instant::now();
    while !handles.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(100));
        progress.update(&format!(
            "hash ceiling: {:.1} s, {} verifies",
            start.elapsed().as_secs_f64(),
            count.load(Ordering::Relaxed)
        ));
    }
    let mut all = Vec::new();
    let mut per_second = 0.0;
    let mut longest = Duration::ZERO;
    for handle in handles {
        let (times, elapsed) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a hashing thread panicked"))??;
        per_second += times.len() as f64 / elapsed.as_secs_f64().max(1e-9);
        longest = longest.max(elapsed);
        all.extend(times);
    }
    Ok(Ceiling {
        threads,
        verifies: all.len() as u64,
        per_second,
        verify: Summary::of(&mut all),
        elapsed_s: longest.as_secs_f64(),
        runs_per_second: vec![per_second],
        samples: all,
    })
}
