//! A tiny seeded random number generator (SplitMix64), so a fault schedule can be replayed
//! from the seed a failing run prints.

use std::ops::Range;

/// SplitMix64: small, fast, good enough to draw schedules; never for secrets.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator drawing the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The seed from the environment variable `var` (decimal or `0x` hex) when set, else
    /// `default`.
    pub fn seed_from_env(var: &str, default: u64) -> u64 {
        let Ok(text) = std::env::var(var) else {
            return default;
        };
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.unwrap_or_else(|_| panic!("{var}={text:?} is not a seed (decimal or 0x hex)"))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (which must not be empty).
    pub fn range(&mut self, range: Range<u64>) -> u64 {
        assert!(range.start < range.end, "empty range {range:?}");
        range.start + self.next_u64() % (range.end - range.start)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0..100) < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_sequence() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.range(10..20)).collect()
        };
        let mut r = Rng::new(42);
        let b: Vec<u64> = (0..5).map(|_| r.range(10..20)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|x| (10..20).contains(x)));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
