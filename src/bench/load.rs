//! `authd bench-load`: the real daemon, started as a child process on a loopback port with a
//! temporary database, loaded by this process's own HTTP client. In one run it measures:
//!
//! 1. registration of `--users` users;
//! 2. the hash-only ceiling: the same hash parameters verified in a tight loop on one thread
//!    per core, each reusing its memory (what the daemon's hashing workers do, minus the
//!    daemon);
//! 3. sign-in throughput and latency at `--concurrency`, as a ratio of that ceiling;
//! 4. `/me` throughput and latency;
//! 5. a bare hyper server answering a fixed JSON body (a child process too, with as many runtime
//!    workers as the daemon), sent the same requests as `/me` with the same client and
//!    concurrency:
//!    `/me` is shown as a fraction of it;
//! 6. sign-ins sent at 4x the hashing ceiling, first alone (for half a phase), then together
//!    with the `/me` load of step 4: the sign-ins still served, the latency of the 503 answers
//!    (with `Retry-After`) the excess gets, and `/me` latency meanwhile;
//! 7. the daemon's peak memory (VmHWM).
//!
//! Every loop is bounded in count and time, and only 127.0.0.1 is ever addressed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authd_password::HashParams;
use authd_password::hash::verify;
use authd_strategy_api::AttributeType;
use authd_strategy_api::toml;
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::http::{BareServer, Http, LoopResult, Tally, closed_loop, get, open_loop, post_json};
use super::{BenchLoadArgs, Machine, Progress, Summary, fmt_bytes, fmt_ms, fmt_rate};

/// Sign-ins are flooded at this multiple of the measured hashing ceiling.
const FLOOD_FACTOR: f64 = 4.0;
/// The longest a measured phase may run.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// How long the daemon gets to start answering `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long registration may take in all.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(600);
/// Extra daemon memory allowed beyond one hash's memory per hashing worker.
const MEMORY_ALLOWANCE: u64 = 64 * 1024 * 1024;

// The targets.
const SIGN_IN_VS_CEILING_TARGET: f64 = 0.90;
const ME_VS_BARE_TARGET: f64 = 0.70;
const ME_P99_UNDER_FLOOD_TARGET_MS: f64 = 10.0;
const BUSY_P99_TARGET_MS: f64 = 5.0;

/// A temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("authd-bench-load-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon under test, killed when dropped.
struct DaemonChild {
    child: Child,
    log: PathBuf,
}

impl DaemonChild {
    fn spawn(config: &Path, log: &Path) -> anyhow::Result<DaemonChild> {
        let exe = std::env::current_exe().context("cannot find the authd executable")?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(DaemonChild {
            child,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the daemon's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare hyper server, run as a child process like the daemon: `authd bench-load
/// --serve-bare`. Killed when dropped; it also stops by itself when its standard input closes.
struct BareChild {
    child: Child,
    port: u16,
}

impl BareChild {
    fn spawn() -> anyhow::Result<BareChild> {
        use std::io::BufRead as _;
        let exe = std::env::current_exe().context("cannot find the authd executable")?;
        let mut child = Command::new(&exe)
            .args(["bench-load", "--serve-bare"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // The port is the first line it prints, as soon as it listens.
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        match line.trim().parse() {
            Ok(port) => Ok(BareChild { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the bare server did not start (it said {line:?})")
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for BareChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `authd bench-load --serve-bare`: the bare server alone, on as many runtime workers as the
/// daemon's (one per core), until standard input closes.
fn serve_bare() -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let server = BareServer::start(super::cores())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.addr.port())?;
    out.flush()?;
    drop(out);
    let mut sink = [0u8; 64];
    while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
    drop(server);
    Ok(())
}

/// A process's peak resident memory (VmHWM), in bytes.
fn peak_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) a process has used, in seconds (Linux, 100 ticks per second).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the file; the state (field 3) is the first after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU used by the daemon and by this process over a phase.
struct CpuMark {
    daemon: Option<f64>,
    bench: Option<f64>,
    pid: String,
}

impl CpuMark {
    fn now(pid: u32) -> CpuMark {
        let pid = pid.to_string();
        CpuMark {
            daemon: cpu_seconds(&pid),
            bench: cpu_seconds("self"),
            pid,
        }
    }

    fn since(&self) -> (Option<f64>, Option<f64>) {
        let d = cpu_seconds(&self.pid).zip(self.daemon).map(|(b, a)| b - a);
        let b = cpu_seconds("self").zip(self.bench).map(|(b, a)| b - a);
        (d, b)
    }
}

/// A free loopback port (bound and released: another process could take it in between, in
/// which case the daemon fails to start and says so).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// How the benchmark drives one password strategy.
struct Driver {
    subject: String,
    strategy: String,
    params: HashParams,
    identity_field: String,
    password_field: String,
    confirmation_field: Option<String>,
    /// Required attributes other than the identity, and their types.
    required: Vec<(String, AttributeType, bool, Option<usize>)>,
    password: String,
}

impl Driver {
    fn from_setup(setup: &super::PasswordSetup) -> Driver {
        let c = &setup.config;
        let required = setup
            .spec
            .attributes
            .iter()
            .filter(|a| a.required && a.name != c.identity_field)
            .map(|a| (a.name.clone(), a.ty, a.unique, a.max_length))
            .collect();
        let max = c
            .password_max_length
            .min(c.hash.max_password_bytes().unwrap_or(usize::MAX));
        let len = 24.max(c.password_min_length).min(max).max(1);
        let password: String = "bench-password-"
            .chars()
            .chain(std::iter::repeat('x'))
            .take(len)
            .collect();
        Driver {
            subject: setup.subject.clone(),
            strategy: setup.strategy.clone(),
            params: c.hash,
            identity_field: c.identity_field.clone(),
            password_field: c.password_field.clone(),
            confirmation_field: c
                .confirmation_required
                .then(|| c.password_confirmation_field.clone()),
            required,
            password,
        }
    }

    fn identity(i: usize) -> String {
        format!("bench{i}@example.com")
    }

    fn register_body(&self, i: usize) -> Bytes {
        let mut body = Map::new();
        body.insert(self.identity_field.clone(), json!(Self::identity(i)));
        body.insert(self.password_field.clone(), json!(self.password));
        if let Some(f) = &self.confirmation_field {
            body.insert(f.clone(), json!(self.password));
        }
        for (name, ty, unique, max_length) in &self.required {
            let value = match ty {
                AttributeType::String | AttributeType::CiString => {
                    let s = if *unique {
                        format!("b{i}")
                    } else {
                        "bench".into()
                    };
                    json!(
                        s.chars()
                            .take(max_length.unwrap_or(usize::MAX))
                            .collect::<String>()
                    )
                }
                AttributeType::Integer => json!(i),
                AttributeType::Boolean => json!(true),
            };
            body.insert(name.clone(), value);
        }
        Bytes::from(Value::Object(body).to_string())
    }

    fn sign_in_body(&self, i: usize) -> Bytes {
        Bytes::from(
            json!({
                self.identity_field.as_str(): Self::identity(i),
                self.password_field.as_str(): self.password,
            })
            .to_string(),
        )
    }
}

/// The default config: one `user` resource whose password strategy hashes with `params`.
fn default_config(params: &HashParams) -> String {
    format!(
        "version = 1\n\
         [tokens]\nissuer = \"authd-bench\"\n\
         [resources.user]\nattributes.email = {{ type = \"ci_string\", unique = true }}\n\
         [resources.user.strategies.password]\ntype = \"password\"\nidentity_field = \"email\"\n{}\n",
        super::params_toml(params)
    )
}

/// `text` with its listen address and store path replaced.
fn relocate(text: &str, port: u16, db: &Path) -> anyhow::Result<String> {
    let mut doc: toml::Table = toml::from_str(text).context("the config is not valid TOML")?;
    let section = |doc: &mut toml::Table, name: &str| -> anyhow::Result<toml::Table> {
        match doc.remove(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => anyhow::bail!("[{name}] is not a table"),
        }
    };
    let mut server = section(&mut doc, "server")?;
    server.insert(
        "listen".into(),
        toml::Value::String(format!("127.0.0.1:{port}")),
    );
    doc.insert("server".into(), toml::Value::Table(server));
    let mut store = section(&mut doc, "store")?;
    store.insert(
        "path".into(),
        toml::Value::String(db.to_string_lossy().into_owned()),
    );
    doc.insert("store".into(), toml::Value::Table(store));
    toml::to_string(&doc).context("cannot write the benchmark's config")
}

/// One measured phase, as reported.
#[derive(Debug, Serialize)]
struct Phase {
    /// Answers with the expected status, and their rate over the phase.
    ok: usize,
    per_second: f64,
    latency: Option<Summary>,
    /// 503 answers and their latency.
    busy: usize,
    busy_latency: Option<Summary>,
    busy_without_retry_after: u64,
    other_statuses: BTreeMap<u16, u64>,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    elapsed_s: f64,
    /// CPU seconds used during the phase by the server measured (the daemon, or the bare
    /// server) and by this process (the client).
    server_cpu_s: Option<f64>,
    bench_cpu_s: Option<f64>,
}

impl Phase {
    fn of(result: LoopResult, cpu: (Option<f64>, Option<f64>)) -> Phase {
        let LoopResult { tally, elapsed } = result;
        let Tally {
            mut ok,
            mut busy,
            busy_without_retry_after,
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
            other_statuses: other,
            errors,
            first_error,
            elapsed_s: secs,
            server_cpu_s: cpu.0,
            bench_cpu_s: cpu.1,
        }
    }

    /// `1234/s  p50 1.20 ms  p99 3.40 ms`.
    fn line(&self) -> String {
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
            s.push_str(&format!("  cpu server {d:.1} s, client {b:.1} s"));
        }
        s
    }
}

#[derive(Debug, Serialize)]
struct Ceiling {
    threads: usize,
    verifies: u64,
    /// Verifies per second on all threads: the time-weighted mean of the runs below.
    per_second: f64,
    verify: Option<Summary>,
    elapsed_s: f64,
    /// The rate of each run (before and after the sign-in phase).
    runs_per_second: Vec<f64>,
    #[serde(skip)]
    samples: Vec<Duration>,
}

impl Ceiling {
    fn combine(a: Ceiling, b: Ceiling) -> Ceiling {
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

fn add_cpu(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| a + b)
}

#[derive(Debug, Serialize)]
struct Flood {
    factor: f64,
    offered_per_second: f64,
    sent: u64,
    /// Sends skipped by the client because too many were already waiting.
    skipped_by_client: u64,
    abandoned: u64,
    sign_in: Phase,
    me: Phase,
    /// CPU seconds used during the flood by the daemon and by this process.
    daemon_cpu_s: Option<f64>,
    bench_cpu_s: Option<f64>,
}

/// Sign-ins flooded with nothing else running.
#[derive(Debug, Serialize)]
struct FloodAlone {
    sent: u64,
    skipped_by_client: u64,
    abandoned: u64,
    sign_in: Phase,
}

#[derive(Debug, Serialize)]
struct Check {
    target: String,
    measured: String,
    met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    /// `/proc/loadavg`'s 1, 5 and 15 minute figures when the run started.
    load_average_at_start: Option<String>,
    /// Set when the two halves of a bracketing ceiling differ by more than 20%: something
    /// else used the CPU, and the ratios are less reliable.
    noise_warning: Option<String>,
    setting: String,
    params: Value,
    route: String,
    hash_workers: u64,
    hash_queue: u64,
    users: usize,
    concurrency: usize,
    phase_duration_s: f64,
    register: Phase,
    hash_ceiling: Ceiling,
    sign_in: Phase,
    sign_in_vs_ceiling: f64,
    me: Phase,
    bare_hyper: Phase,
    /// The rate of each half of the bare server's run (before and after `/me`).
    bare_hyper_runs_per_second: Vec<f64>,
    me_vs_bare: f64,
    flood_alone: FloodAlone,
    flood: Flood,
    daemon_peak_memory_bytes: Option<u64>,
    memory_per_hash_bytes: u64,
    memory_limit_bytes: u64,
    checks: Vec<Check>,
}

pub(super) fn run(args: &BenchLoadArgs) -> anyhow::Result<()> {
    if args.serve_bare {
        return serve_bare();
    }
    anyhow::ensure!(
        args.duration >= Duration::from_millis(100) && args.duration <= MAX_DURATION,
        "--duration must be between 100ms and 10m"
    );
    let machine = Machine::read();
    machine.warn_if_debug();
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let progress = Progress::new();
    let users = args.users as usize;
    let concurrency = args.concurrency as usize;

    let dir = TempDir::new()?;
    let (text, setups) = match &args.config {
        Some(path) => super::password_strategies(path)?,
        None => {
            let text = default_config(&args.algorithm.owasp());
            let path = dir.0.join("default.toml");
            std::fs::write(&path, &text)?;
            super::password_strategies(&path)?
        }
    };
    let setup = setups
        .iter()
        .find(|s| s.config.registration_enabled && s.config.sign_in_enabled)
        .context("the config has no password strategy with registration and sign-in enabled")?;
    let driver = Arc::new(Driver::from_setup(setup));

    // The config and the database in separate folders: the daemon watches its config's folder.
    let config_dir = dir.0.join("config");
    let data_dir = dir.0.join("data");
    std::fs::create_dir(&config_dir)?;
    std::fs::create_dir(&data_dir)?;
    let port = free_port()?;
    let config_path = config_dir.join("authd.toml");
    std::fs::write(
        &config_path,
        relocate(&text, port, &data_dir.join("bench.redb"))?,
    )?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")?;
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
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

    progress.step(&format!(
        "starting the daemon ({}, port {port})",
        driver.params
    ));
    let mut daemon = DaemonChild::spawn(&config_path, &dir.0.join("daemon.log"))?;
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
    let me_loop = |uri: hyper::Uri, tokens: Arc<Vec<HeaderValue>>| {
        move |task: usize, i: u64| {
            let n = (task as u64 + i * concurrency as u64) as usize % tokens.len();
            get(&uri, Some(&tokens[n]))
        }
    };
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
        (
            add_cpu(bare_before.1.0, bare_after.1.0),
            add_cpu(bare_before.1.1, bare_after.1.1),
        ),
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
        sign_in: Phase::of(flood_sign_in.result, (None, None)),
        me: Phase::of(flood_me, (None, None)),
        daemon_cpu_s: cpu.0,
        bench_cpu_s: cpu.1,
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
    let checks = checks(sign_in_vs_ceiling, me_vs_bare, &flood, peak, memory_limit);
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
        machine,
        load_average_at_start,
        noise_warning,
        setting: driver.params.to_string(),
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
        checks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
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
async fn ticking<T>(
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
async fn wait_ready(
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
async fn register_users(
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

fn checks(
    sign_in_vs_ceiling: f64,
    me_vs_bare: f64,
    flood: &Flood,
    peak: Option<u64>,
    memory_limit: u64,
) -> Vec<Check> {
    let mut out = vec![
        Check {
            target: format!(
                "sign-in throughput >= {:.0}% of the hash-only ceiling",
                SIGN_IN_VS_CEILING_TARGET * 100.0
            ),
            measured: format!("{:.1}%", sign_in_vs_ceiling * 100.0),
            met: sign_in_vs_ceiling >= SIGN_IN_VS_CEILING_TARGET,
        },
        Check {
            target: format!(
                "/me throughput >= {:.0}% of the bare hyper server",
                ME_VS_BARE_TARGET * 100.0
            ),
            measured: format!("{:.1}%", me_vs_bare * 100.0),
            met: me_vs_bare >= ME_VS_BARE_TARGET,
        },
    ];
    let me_p99 = flood.me.latency.map(|l| l.p99_ms);
    out.push(Check {
        target: format!(
            "/me p99 under {ME_P99_UNDER_FLOOD_TARGET_MS} ms while sign-ins are flooded"
        ),
        measured: me_p99.map_or_else(|| "no answer".into(), fmt_ms),
        met: me_p99.is_some_and(|p| p < ME_P99_UNDER_FLOOD_TARGET_MS),
    });
    let busy_p99 = flood.sign_in.busy_latency.map(|l| l.p99_ms);
    out.push(Check {
        target: format!(
            "excess sign-ins get 503 with Retry-After, p99 under {BUSY_P99_TARGET_MS} ms"
        ),
        measured: match busy_p99 {
            Some(p) => format!(
                "{} x 503 ({} without Retry-After), p99 {}",
                flood.sign_in.busy,
                flood.sign_in.busy_without_retry_after,
                fmt_ms(p)
            ),
            None => "no 503 answer".into(),
        },
        met: busy_p99.is_some_and(|p| p < BUSY_P99_TARGET_MS)
            && flood.sign_in.busy_without_retry_after == 0,
    });
    out.push(Check {
        target: format!(
            "daemon peak memory under {} (workers x one hash + 64 MiB)",
            fmt_bytes(memory_limit)
        ),
        measured: peak.map_or_else(|| "unknown (no /proc)".into(), fmt_bytes),
        met: peak.is_some_and(|p| p < memory_limit),
    });
    out
}

fn print_busy(p: &Phase) {
    match &p.busy_latency {
        Some(b) => println!(
            "  sign-in 503       {:>9} answers  p50 {:>9}  p99 {:>9}  max {:>9}  ({} without \
             Retry-After)",
            p.busy,
            fmt_ms(b.median_ms),
            fmt_ms(b.p99_ms),
            fmt_ms(b.max_ms),
            p.busy_without_retry_after
        ),
        None => println!("  sign-in 503       none"),
    }
}

fn print_report(r: &Report) {
    println!(
        "authd bench-load: {} ({}), {} hashing workers, queue {}; {} cores ({}){}",
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
    println!("targets:");
    for check in &r.checks {
        println!(
            "  [{}] {}: {}",
            if check.met { "met" } else { "MISSED" },
            check.target,
            check.measured
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocation_replaces_only_the_listen_address_and_the_store() {
        let text = default_config(&HashParams::default());
        let out = relocate(&text, 4321, Path::new("/tmp/x y/bench.redb"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let config = crate::parse_config(&out).unwrap_or_else(|p| panic!("{p}\n{out}"));
        assert_eq!(config.server.listen.port(), 4321);
        assert!(config.server.listen.ip().is_loopback());
        assert_eq!(config.store.path, Path::new("/tmp/x y/bench.redb"));
        assert_eq!(config.resources.len(), 1);
    }

    #[test]
    fn bodies_carry_identity_password_and_confirmation() {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e:#}"));
        let path = dir.0.join("c.toml");
        std::fs::write(&path, default_config(&HashParams::Bcrypt { cost: 4 }))
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, setups) =
            super::super::password_strategies(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let driver = Driver::from_setup(&setups[0]);
        let body: Value =
            serde_json::from_slice(&driver.register_body(3)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["email"], "bench3@example.com");
        assert_eq!(body["password"], body["password_confirmation"]);
        assert!(driver.password.len() >= 8 && driver.password.len() <= 72);
        let body: Value =
            serde_json::from_slice(&driver.sign_in_body(3)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.as_object().map(Map::len), Some(2));
    }

    #[test]
    fn proc_readers_read_this_process() {
        if Path::new("/proc/self/status").exists() {
            assert!(peak_memory(std::process::id()).is_some_and(|b| b > 0));
            assert!(cpu_seconds("self").is_some());
        }
    }
}
