//! The series the request path touches: a histogram of fixed buckets and a counter, kept in
//! atomics spread over a few cache-line-aligned shards, one per worker thread (by a
//! thread-local index), and added up at scrape time.
//!
//! `prometheus-client`'s own `Histogram` takes a mutex on every observation, and its counter
//! is one atomic: two workers counting the same route then hand that cache line to each other
//! on every request. Here an observation writes only its own thread's shard: two relaxed
//! `fetch_add`s and a compare-and-swap loop on the sum that nobody else touches. A scrape
//! reads the shards one by one; an observation in flight may be in its bucket and not yet in
//! the sum, which no `rate()` notices. `_count` is the sum of the buckets read, so it always
//! equals the `+Inf` bucket.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per series: as many as the threads that commonly observe at once on a small
/// machine; past them, threads share a shard (still correct, only less spread).
const SHARDS: usize = 4;
/// Most finite bucket bounds a histogram may have.
pub const MAX_BOUNDS: usize = 15;

/// The shard of the calling thread: threads take the next one in turn at their first use.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SHARD.with(|cell| match cell.get() {
        Some(i) => i,
        None => {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            cell.set(Some(i));
            i
        }
    })
}

/// One thread's part of a histogram, alone on its cache lines.
#[repr(align(128))]
#[derive(Debug, Default)]
struct HistogramShard {
    /// Observations per bucket (not cumulative); index `bounds.len()` is `+Inf`.
    counts: [AtomicU64; MAX_BOUNDS + 1],
    /// The sum of the observations, as the bits of an `f64` (0.0 is all zero bits).
    sum: AtomicU64,
}

/// A histogram with the upper bounds `bounds` (ascending, finite, at most [`MAX_BOUNDS`])
/// and the implicit `+Inf`.
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    shards: [HistogramShard; SHARDS],
}

impl AtomicHistogram {
    /// An empty histogram over `bounds`, which must be ascending and finite; bounds past the
    /// first [`MAX_BOUNDS`] are ignored.
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        debug_assert!(bounds.len() <= MAX_BOUNDS);
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(bounds.iter().all(|b| b.is_finite()));
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds: &bounds[..bounds.len().min(MAX_BOUNDS)],
                shards: Default::default(),
            }),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value` (`NaN` in `+Inf`).
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let i = inner
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(inner.bounds.len());
        let shard = &inner.shards[shard()];
        if let Some(count) = shard.counts.get(i) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let _ = shard
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Observations per bucket (not cumulative), `+Inf` last.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let inner = &*self.inner;
        inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, bound)| {
                let n = inner
                    .shards
                    .iter()
                    .map(|s| s.counts[i].load(Ordering::Relaxed))
                    .sum();
                (bound, n)
            })
            .collect()
    }

    /// The number of observations so far.
    pub fn count(&self) -> u64 {
        self.buckets().iter().map(|(_, n)| n).sum()
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.inner
            .shards
            .iter()
            .map(|s| f64::from_bits(s.sum.load(Ordering::Relaxed)))
            .sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One thread's part of a counter, alone on its cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct CounterShard(AtomicU64);

/// A counter spread over shards like [`AtomicHistogram`].
#[derive(Clone, Debug, Default)]
pub struct ShardedCounter {
    shards: Arc<[CounterShard; SHARDS]>,
}

impl ShardedCounter {
    pub fn inc(&self) {
        self.shards[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    const BOUNDS: &[f64] = &[0.1, 1.0];

    #[test]
    fn observations_land_in_their_buckets_and_encode_cumulatively() {
        let h = AtomicHistogram::new(BOUNDS);
        for v in [0.05, 0.1, 0.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.count(), 5);
        let mut registry = Registry::default();
        registry.register("t_seconds", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE t_seconds histogram"), "{text}");
        assert!(text.contains("t_seconds_count 5"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"0.1\"} 2"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"1.0\"} 3"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 5"), "{text}");
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::new(BOUNDS);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        h.observe(0.5);
                    }
                });
            }
        });
        assert_eq!(h.count(), 40_000);
        assert!((h.sum() - 20_000.0).abs() < 1e-6, "{}", h.sum());
    }

    #[test]
    fn a_sharded_counter_adds_up_every_thread_and_encodes_as_a_counter() {
        let c = ShardedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        c.inc();
                    }
                });
            }
        });
        assert_eq!(c.get(), 6_000);
        let mut registry = Registry::default();
        registry.register("t_requests", "test", c.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE t_requests counter"), "{text}");
        assert!(text.contains("t_requests_total 6000"), "{text}");
    }
}
