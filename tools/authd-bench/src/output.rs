//! What is shown to people: order statistics of timings, the status line on stderr, and the
//! number formats of the report. It must not measure anything itself.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use serde::Serialize;

/// A status line on stderr: rewritten in place (`\r`) on a terminal, one line per step
/// otherwise.
pub(crate) struct Progress {
    tty: bool,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A new step: always shown.
    pub(crate) fn step(&self, message: &str) {
        if self.tty {
            self.update(message);
        } else {
            eprintln!("{message}");
        }
    }

    /// A refresh of the current step: shown on a terminal only.
    pub(crate) fn update(&self, message: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{message}\x1b[K");
            let _ = err.flush();
        }
    }

    /// Clears the status line before the results are printed.
    pub(crate) fn clear(&self) {
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
    pub(crate) count: usize,
    pub(crate) mean_ms: f64,
    pub(crate) median_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Summary {
    /// `None` for an empty set.
    pub(crate) fn of(samples: &mut [Duration]) -> Option<Summary> {
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

/// `61234/s`, `95.3/s`, `4.12/s`.
pub(crate) fn fmt_rate(per_second: f64) -> String {
    if per_second >= 1000.0 {
        format!("{per_second:.0}/s")
    } else if per_second >= 10.0 {
        format!("{per_second:.1}/s")
    } else {
        format!("{per_second:.2}/s")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(s.count, 100);
        assert!((s.median_ms - 50.0).abs() < 1e-9);
        assert!((s.p95_ms - 95.0).abs() < 1e-9);
        assert!((s.p99_ms - 99.0).abs() < 1e-9);
        assert!((s.max_ms - 100.0).abs() < 1e-9);
        assert!(Summary::of(&mut []).is_none());
        let mut one = [Duration::from_millis(7)];
        let s = Summary::of(&mut one).unwrap();
        assert!((s.p99_ms - 7.0).abs() < 1e-9 && (s.median_ms - 7.0).abs() < 1e-9);
    }

    #[test]
    fn formats_keep_three_significant_figures() {
        assert_eq!(fmt_ms(0.4123), "0.41 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(1200.0), "1.20 s");
        assert_eq!(fmt_bytes(19456 * 1024), "19.0 MiB");
        assert_eq!(fmt_rate(95.33), "95.3/s");
    }
}
