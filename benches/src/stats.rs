//! Measurements of one run: an overall latency histogram plus per-second
//! buckets (messages, bytes, latency) for the progress line and the plot.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds up to this bound (an hour); larger values are clamped.
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Seconds of per-second buckets kept for the plot; a longer run keeps the first ones.
pub const TIMELINE_SECONDS_MAX: usize = 24 * 3600;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// One second of the run.
#[derive(Clone)]
pub struct Bucket {
    pub messages: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            messages: 0,
            bytes: 0,
            latency: histogram(),
        }
    }
}

pub struct Stats {
    started: Instant,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
    pub timeline: Vec<Bucket>,
    /// When the latest message was recorded.
    pub last: Option<Instant>,
}

impl Stats {
    pub fn new(started: Instant) -> Self {
        Stats {
            started,
            messages: 0,
            bytes: 0,
            errors: 0,
            latency: histogram(),
            timeline: Vec::new(),
            last: None,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    fn bucket(&mut self, at: Instant) -> Option<&mut Bucket> {
        let second = at.saturating_duration_since(self.started).as_secs() as usize;
        if second >= TIMELINE_SECONDS_MAX {
            return None;
        }
        while self.timeline.len() <= second {
            self.timeline.push(Bucket::new());
        }
        self.timeline.get_mut(second)
    }

    /// One message of `bytes` completed at `at` after `latency`.
    pub fn record(&mut self, at: Instant, bytes: u64, latency: Option<Duration>) {
        self.messages += 1;
        self.bytes += bytes;
        self.last = self.last.max(Some(at));
        let micros = latency.map(|l| (l.as_micros() as u64).clamp(1, LATENCY_US_MAX));
        if let Some(us) = micros {
            self.latency.saturating_record(us);
        }
        if let Some(bucket) = self.bucket(at) {
            bucket.messages += 1;
            bucket.bytes += bytes;
            if let Some(us) = micros {
                bucket.latency.saturating_record(us);
            }
        }
    }

    /// Many messages at once, without latencies (consumers without timestamps).
    pub fn record_many(&mut self, at: Instant, messages: u64, bytes: u64) {
        self.messages += messages;
        self.bytes += bytes;
        self.last = self.last.max(Some(at));
        if let Some(bucket) = self.bucket(at) {
            bucket.messages += messages;
            bucket.bytes += bytes;
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.last = self.last.max(other.last);
        self.errors += other.errors;
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        // Align by wall time: both started within the same run.
        let shift = other
            .started
            .saturating_duration_since(self.started)
            .as_secs() as usize;
        for (i, bucket) in other.timeline.iter().enumerate() {
            let second = i + shift;
            if second >= TIMELINE_SECONDS_MAX {
                break;
            }
            while self.timeline.len() <= second {
                self.timeline.push(Bucket::new());
            }
            let mine = &mut self.timeline[second];
            mine.messages += bucket.messages;
            mine.bytes += bucket.bytes;
            mine.latency
                .add(&bucket.latency)
                .expect("same histogram bounds");
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_wall_seconds_and_merge_aligned() {
        // Records land in the second they happened; merging keeps the alignment.
        let t0 = Instant::now();
        let mut a = Stats::new(t0);
        a.record(t0, 100, Some(Duration::from_millis(2)));
        a.record(
            t0 + Duration::from_millis(1500),
            100,
            Some(Duration::from_millis(4)),
        );
        let mut b = Stats::new(t0 + Duration::from_secs(1));
        b.record(t0 + Duration::from_millis(1200), 50, None);
        a.merge(&b);
        assert_eq!(a.last, Some(t0 + Duration::from_millis(1500)));
        assert_eq!(a.messages, 3);
        assert_eq!(a.bytes, 250);
        assert_eq!(a.timeline.len(), 2);
        assert_eq!(a.timeline[0].messages, 1);
        assert_eq!(a.timeline[1].messages, 2);
        let p = Percentiles::of(&a.latency).unwrap();
        assert!(p.p50 >= 1.9 && p.max >= 3.9, "{p:?}");
    }
}
