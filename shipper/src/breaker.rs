//! [`CircuitBreaker`]: after several failures in a row it stops sending for
//! a cool-down, then lets one probe through; this keeps a dead processor
//! from being hammered while the spool buffers everything.

use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Sending; `failures` in a row so far.
    Closed { failures: u32 },
    /// Not sending until `until`.
    Open { until: Instant },
    /// One probe is allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u64 {
        match self {
            BreakerState::Closed { .. } => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: BreakerState,
}

impl CircuitBreaker {
    /// Opens after `threshold` failures in a row, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// `None` when a request may go now, else the instant the breaker lets
    /// a probe through.
    pub fn wait_until(&mut self, now: Instant) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } if now < until => Some(until),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                None
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen => None,
        }
    }

    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen | BreakerState::Open { .. } => {
                BreakerState::Open {
                    until: now + self.cooldown,
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_probes_after_the_cooldown() {
        let now = || tokio::time::Instant::now().into_std();
        let mut b = CircuitBreaker::new(3, Duration::from_secs(30));
        b.on_failure(now());
        b.on_failure(now());
        assert_eq!(b.wait_until(now()), None);
        b.on_failure(now());
        let until = b.wait_until(now()).expect("open after three failures");
        assert_eq!(until - now(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.wait_until(now()), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_failure(now());
        assert_eq!(b.state().gauge(), 1, "a failed probe reopens at once");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.wait_until(now()), None);
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }
}
