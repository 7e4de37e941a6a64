//! The machine's timers, kept as deadlines the supervisor's loop waits on (one task per
//! actor, not one per timer). A timer re-armed replaces the earlier deadline of its kind;
//! one that outlived its phase still fires, and the machine ignores it (timers carry their
//! generation).

use tokio::time::Instant;

use crate::actor::lifecycle::Timer;

/// At most one deadline per kind of timer.
#[derive(Debug, Default)]
pub(super) struct Timers {
    start: Option<(Instant, Timer)>,
    adopt: Option<(Instant, Timer)>,
    place: Option<(Instant, Timer)>,
    deadline: Option<(Instant, Timer)>,
    warm: Option<(Instant, Timer)>,
}

impl Timers {
    /// Arms `timer` to fire at `at`.
    pub(super) fn arm(&mut self, timer: Timer, at: Instant) {
        *self.slot(timer) = Some((at, timer));
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        [self.start, self.adopt, self.place, self.deadline, self.warm]
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min()
    }

    /// Disarms and returns the timers due at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        for slot in [
            &mut self.start,
            &mut self.adopt,
            &mut self.place,
            &mut self.deadline,
            &mut self.warm,
        ] {
            if let Some((at, timer)) = *slot {
                if at <= now {
                    due.push(timer);
                    *slot = None;
                }
            }
        }
        due
    }

    fn slot(&mut self, timer: Timer) -> &mut Option<(Instant, Timer)> {
        match timer {
            Timer::Start { .. } => &mut self.start,
            Timer::Adopt { .. } => &mut self.adopt,
            Timer::Place => &mut self.place,
            Timer::Deadline { .. } => &mut self.deadline,
            Timer::Warm { .. } => &mut self.warm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rearming_replaces_and_due_timers_fire_once() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.arm(Timer::Place, t0 + Duration::from_secs(5));
        timers.arm(Timer::Place, t0 + Duration::from_secs(1));
        timers.arm(Timer::Start { generation: 2 }, t0 + Duration::from_secs(3));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.take_due(t0), vec![]);
        assert_eq!(
            timers.take_due(t0 + Duration::from_secs(1)),
            vec![Timer::Place]
        );
        assert_eq!(
            timers.take_due(t0 + Duration::from_secs(9)),
            vec![Timer::Start { generation: 2 }]
        );
        assert_eq!(timers.next(), None);
    }
}
