//! Exponential backoff with jitter, for retries and reconnects.
//!
//! Attempt `n` (counting from 1) waits `initial * 2^(n-1)`, capped at `max`,
//! then scaled by a random factor in `[1 - JITTER, 1 + JITTER]` and capped at
//! `max` again. The jitter keeps many clients that failed together from
//! retrying in lockstep.

use std::time::Duration;

use rand::Rng;

/// Relative spread of the random factor, as the Java client's 0.2.
pub const JITTER: f64 = 0.2;
/// Growth factor per attempt.
pub const MULTIPLIER: u32 = 2;

/// A backoff policy: `initial` for the first retry, growing to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        assert!(
            initial <= max,
            "backoff initial {initial:?} exceeds max {max:?}"
        );
        Backoff { initial, max }
    }

    /// The delay before retry number `attempt` (1 for the first retry),
    /// without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let factor = MULTIPLIER.saturating_pow(exponent);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, with jitter from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_delay(attempt);
        let factor = rng.gen_range((1.0 - JITTER)..=(1.0 + JITTER));
        base.mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn base_delay_doubles_per_attempt_until_the_cap() {
        // 100ms, 200ms, 400ms, 800ms, then 1s forever, even for absurd attempt counts.
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u64> = (1..=6)
            .map(|a| backoff.base_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.base_delay(0), Duration::from_millis(100));
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delay_stays_within_twenty_percent_and_under_the_cap() {
        // Every jittered delay lies in [0.8, 1.2] x base and never exceeds max.
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=8 {
            let base = backoff.base_delay(attempt);
            for _ in 0..100 {
                let delay = backoff.delay(attempt, &mut rng);
                assert!(
                    delay >= base.mul_f64(1.0 - JITTER),
                    "{delay:?} < 0.8 x {base:?}"
                );
                assert!(
                    delay <= base.mul_f64(1.0 + JITTER),
                    "{delay:?} > 1.2 x {base:?}"
                );
                assert!(delay <= backoff.max);
            }
        }
    }

    #[test]
    fn jitter_spreads_retries_apart() {
        // Two hundred draws for the same attempt are not all the same value.
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut rng = StdRng::seed_from_u64(1);
        let draws: std::collections::BTreeSet<Duration> =
            (0..200).map(|_| backoff.delay(3, &mut rng)).collect();
        assert!(draws.len() > 100, "only {} distinct delays", draws.len());
    }
}
