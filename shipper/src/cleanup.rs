//! The cleanup rule: when a spool file may be deleted.

use std::time::Duration;

use crate::spool::UtcHour;
use crate::tailer::{Presence, TailState};

/// What to do with a tailed file whose lines are all acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    Keep,
    /// Delete the file and forget it.
    Delete,
    /// Someone else removed it: forget it.
    Forget,
}

/// What the rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct CleanupInput {
    /// Read to the end, every line acknowledged, no partial line held.
    pub fully_acked: bool,
    pub state: TailState,
    pub presence: Presence,
    /// The hour in the file's name, if it still has a spool name.
    pub hour: Option<UtcHour>,
    pub current_hour: UtcHour,
    /// Time since the file's modification time.
    pub untouched_for: Duration,
}

/// A file is deleted only when it was read to its end, every line in it was
/// acknowledged, no writer touched it for `grace` (by its modification
/// time and by what the shipper saw), and its hour is over, so that no
/// writer of that hour can still append to it.
pub fn decide(input: CleanupInput, now: std::time::Instant, grace: Duration) -> Cleanup {
    let idle = match input.state {
        TailState::AtEof { since } => now.saturating_duration_since(since) >= grace,
        TailState::Active => false,
    };
    let hour_over = input.hour.is_some_and(|h| h < input.current_hour);
    match (input.fully_acked, idle, input.presence) {
        (true, true, Presence::Unlinked { .. }) => Cleanup::Forget,
        (true, true, Presence::Linked) if hour_over && input.untouched_for >= grace => {
            Cleanup::Delete
        }
        _ => Cleanup::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn every_condition_must_hold_before_a_delete() {
        let grace = Duration::from_secs(120);
        let now = Instant::now() + Duration::from_secs(1000);
        let ok = CleanupInput {
            fully_acked: true,
            state: TailState::AtEof { since: now - grace },
            presence: Presence::Linked,
            hour: Some(2026112710),
            current_hour: 2026112711,
            untouched_for: grace,
        };
        assert_eq!(decide(ok, now, grace), Cleanup::Delete);
        let keep = [
            CleanupInput {
                fully_acked: false,
                ..ok
            },
            CleanupInput {
                state: TailState::Active,
                ..ok
            },
            CleanupInput {
                state: TailState::AtEof {
                    since: now - grace / 2,
                },
                ..ok
            },
            CleanupInput {
                hour: Some(2026112711),
                ..ok
            },
            CleanupInput { hour: None, ..ok },
            CleanupInput {
                untouched_for: grace / 2,
                ..ok
            },
        ];
        for (i, input) in keep.into_iter().enumerate() {
            assert_eq!(decide(input, now, grace), Cleanup::Keep, "case {i}");
        }
        let gone = CleanupInput {
            presence: Presence::Unlinked { since: now },
            hour: None,
            ..ok
        };
        assert_eq!(decide(gone, now, grace), Cleanup::Forget);
    }
}
