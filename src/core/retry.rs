//! Retry policy: what a failure means and how long to wait before the next attempt.

use super::error::Failure;

/// Exponential backoff with jitter and a budget of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay (livestore-filesync: 1 s).
    pub base_delay_ms: u64,
    /// Largest delay.
    pub max_delay_ms: u64,
    /// Retries after the first attempt before a transfer ends in `error` (livestore-filesync: 5).
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay_ms: 1_000,
            max_delay_ms: 30_000,
            max_retries: 5,
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this many milliseconds; the attempt counts against the budget.
    RetryIn(u64),
    /// No network: wait until the connection is back. Costs nothing from the budget.
    WaitOnline,
    /// Do not retry on our own: non-retryable failure or budget used up.
    GiveUp,
}

impl RetryPolicy {
    /// Decides after failure number `retries_so_far + 1` of an operation. `rng` supplies jitter.
    pub fn decide(&self, failure: &Failure, retries_so_far: u32, rng: &mut Rng) -> Decision {
        let retryable = match failure {
            Failure::Offline => return Decision::WaitOnline,
            Failure::Timeout
            | Failure::Server { .. }
            | Failure::Protocol { .. }
            | Failure::RateLimited { .. }
            | Failure::NotFound
            | Failure::Integrity { .. }
            | Failure::KeyCleared => true,
            Failure::Auth { .. }
            | Failure::Rejected { .. }
            | Failure::Storage { .. }
            | Failure::Cancelled => false,
        };
        if !retryable || retries_so_far >= self.max_retries {
            return Decision::GiveUp;
        }
        let exp = self
            .base_delay_ms
            .saturating_mul(1u64 << retries_so_far.min(30))
            .min(self.max_delay_ms);
        // "Equal jitter": half fixed, half random, so retries of many clients spread out but
        // never come back sooner than half the nominal delay.
        let delay = exp / 2 + rng.below(exp / 2 + 1);
        match failure {
            Failure::RateLimited {
                retry_after_ms: Some(after),
            } => Decision::RetryIn(delay.max(*after)),
            _ => Decision::RetryIn(delay),
        }
    }
}

/// A small deterministic generator (SplitMix64): the engine's only source of randomness, seeded
/// from the config so a simulation replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified() {
        let p = RetryPolicy::default();
        let mut rng = Rng::new(1);
        assert_eq!(
            p.decide(&Failure::Offline, 99, &mut rng),
            Decision::WaitOnline
        );
        for f in [
            Failure::Auth { status: 401 },
            Failure::Rejected { status: 400 },
            Failure::Storage {
                quota: true,
                message: "full".into(),
            },
            Failure::Cancelled,
        ] {
            assert_eq!(p.decide(&f, 0, &mut rng), Decision::GiveUp, "{f:?}");
        }
        for f in [
            Failure::Timeout,
            Failure::Server { status: 503 },
            Failure::NotFound,
            Failure::Integrity { actual: "x".into() },
        ] {
            assert!(
                matches!(p.decide(&f, 0, &mut rng), Decision::RetryIn(_)),
                "{f:?}"
            );
            assert_eq!(p.decide(&f, p.max_retries, &mut rng), Decision::GiveUp);
        }
        assert_eq!(Failure::from_status(429, None).code(), "rate_limited");
        assert_eq!(Failure::from_status(403, None).code(), "auth");
        assert_eq!(Failure::from_status(502, None).code(), "server_error");
        assert_eq!(Failure::from_status(409, None).code(), "rejected");
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let mut rng = Rng::new(7);
        for n in 0..5u32 {
            let nominal = (1_000u64 << n).min(p.max_delay_ms);
            for _ in 0..50 {
                let Decision::RetryIn(d) = p.decide(&Failure::Timeout, n, &mut rng) else {
                    panic!()
                };
                assert!(d >= nominal / 2 && d <= nominal, "attempt {n}: {d}");
            }
        }
        let ra = Failure::RateLimited {
            retry_after_ms: Some(45_000),
        };
        assert_eq!(p.decide(&ra, 0, &mut rng), Decision::RetryIn(45_000));
    }

    #[test]
    fn rng_is_deterministic_per_seed() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(3), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(3), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .scan(Rng::new(4), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
