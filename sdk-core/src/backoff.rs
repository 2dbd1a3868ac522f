//! Reconnect backoff: full-jitter exponential, as a pure function.
//!
//! Owns: how long to wait before reconnect attempt `n`. Must never sleep or pick its own
//! randomness: the caller passes a uniform sample, so tests and simulations are exact.

use std::time::Duration;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest delay ever chosen.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): uniform in
    /// `[0, min(cap, base * 2^(attempt-1))]`, chosen by `sample` in `[0, 1)`.
    ///
    /// Full jitter spreads a crowd of clients that lost the same region at once, so the
    /// region is not hit by all of them at the same instant when it comes back.
    pub fn delay(&self, attempt: u32, sample: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.cap)
            .as_millis() as f64;
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Duration::from_millis((ceiling * sample) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;

    #[meridian_test]
    fn the_ceiling_doubles_per_attempt_until_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        let max = |n| b.delay(n, 1.0).as_millis();
        assert_eq!(max(1), 100);
        assert_eq!(max(2), 200);
        assert_eq!(max(3), 400);
        assert_eq!(max(4), 800);
        assert_eq!(max(5), 1000);
        assert_eq!(max(60), 1000, "huge attempt counts must not overflow");
    }

    #[meridian_test]
    fn the_delay_is_jittered_over_the_whole_window() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5).as_millis(), 500);
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        assert!(b.delay(3, 7.0) <= Duration::from_millis(1000));
    }
}
