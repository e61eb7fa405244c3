//! The Linux /proc readers: the machine (cores, CPU model, load average), a process's peak
//! resident memory (VmHWM) and CPU time (utime + stime), and the CPU time of the daemon's
//! hashing threads. Each returns `None` where /proc is missing or unreadable: it must never
//! fail the run, only leave a figure unknown.

use serde::Serialize;

/// The daemon's hashing threads are named `authd-hash-{i}` (`strategies/api/src/pool.rs`).
const HASH_THREAD_PREFIX: &str = "authd-hash-";
/// `/proc/<pid>/stat` counts in clock ticks: 100 per second on Linux (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    /// This tool is a debug build: its client and hash-only ceiling run slower, so the ratios
    /// mean little.
    pub(crate) debug_build: bool,
}

impl Machine {
    pub(crate) fn read() -> Machine {
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

    pub(crate) fn warn_if_debug(&self) {
        if self.debug_build {
            eprintln!(
                "warning: authd-bench is a debug build; build with `cargo build --release` for \
                 meaningful figures"
            );
        }
    }
}

/// Cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures.
pub(crate) fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// A process's peak resident memory (VmHWM), in bytes.
pub(crate) fn peak_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The name and CPU seconds (user + system) in a `stat` file of /proc.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let (head, after_name) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the file; the state (field 3) is the first after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

/// CPU time (user + system) a process has used, in seconds, its ended threads included.
/// `pid` is a number or `self`.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, cpu)| cpu)
}

/// CPU time used by the daemon's hashing threads, in seconds; `None` when it has none (the
/// bare server) or /proc cannot tell. The pool's threads live as long as the daemon's
/// configuration keeps the pool, so a difference of two readings is the hashing done between.
pub(crate) fn hashing_cpu_seconds(pid: &str) -> Option<f64> {
    let mut total = None;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, cpu)) = parse_stat(&stat)
            && name.starts_with(HASH_THREAD_PREFIX)
        {
            *total.get_or_insert(0.0) += cpu;
        }
    }
    total
}

/// CPU readings of the server measured and of this process at the start of a phase.
pub(crate) struct CpuMark {
    pid: String,
    server: Option<f64>,
    hashing: Option<f64>,
    client: Option<f64>,
}

/// CPU seconds used over a phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUsed {
    /// The whole server process.
    pub(crate) server: Option<f64>,
    /// The server's hashing threads, a part of `server`.
    pub(crate) hashing: Option<f64>,
    /// This process: the client (and nothing else runs in it during a phase).
    pub(crate) client: Option<f64>,
}

impl CpuMark {
    pub(crate) fn now(pid: u32) -> CpuMark {
        let pid = pid.to_string();
        CpuMark {
            server: cpu_seconds(&pid),
            hashing: hashing_cpu_seconds(&pid),
            client: cpu_seconds("self"),
            pid,
        }
    }

    pub(crate) fn since(&self) -> CpuUsed {
        let delta = |now: Option<f64>, then: Option<f64>| now.zip(then).map(|(b, a)| b - a);
        CpuUsed {
            server: delta(cpu_seconds(&self.pid), self.server),
            hashing: delta(hashing_cpu_seconds(&self.pid), self.hashing),
            client: delta(cpu_seconds("self"), self.client),
        }
    }
}

impl CpuUsed {
    /// Two phases' use as one.
    pub(crate) fn add(self, other: CpuUsed) -> CpuUsed {
        let sum = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
        CpuUsed {
            server: sum(self.server, other.server),
            hashing: sum(self.hashing, other.hashing),
            client: sum(self.client, other.client),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_odd_process_names() {
        let stat = "4242 (authd-hash-0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 30 10 20";
        assert_eq!(parse_stat(stat), Some(("authd-hash-0", 3.0)));
        // A name may hold spaces and parentheses: the last `)` ends it.
        let stat = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 100 0 0 0";
        assert_eq!(parse_stat(stat), Some(("a (b) c", 1.0)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn proc_readers_read_this_process() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        assert!(peak_memory(std::process::id()).is_some_and(|b| b > 0));
        assert!(cpu_seconds("self").is_some());
        // This test process has no hashing threads...
        assert_eq!(hashing_cpu_seconds("self"), None);
        // ...until it starts one with the daemon's naming (which the thread sets itself as it
        // starts: hence the hand-shake).
        let (started, wait_started) = std::sync::mpsc::channel();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("authd-hash-9".into())
            .spawn(move || {
                started.send(()).unwrap();
                let _ = wait_done.recv();
            })
            .unwrap();
        wait_started.recv().unwrap();
        assert!(hashing_cpu_seconds("self").is_some());
        drop(done);
        thread.join().unwrap();
    }
}
