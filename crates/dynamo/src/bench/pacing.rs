//! When each operation of a fixed-rate (`--rate`) run starts, and the
//! instant its latency counts from.
//!
//! The offered load is `rate` operations a second spread evenly over time:
//! every worker keeps its own schedule with a period of
//! `concurrency / rate`, and worker `i` starts `i / concurrency` of a period
//! after worker 0. Without that offset all workers would fire together, and
//! the server would see a burst of `concurrency` requests once a period
//! instead of one request every `1 / rate` seconds: a different workload,
//! whose queueing shows up as tail latency.
//!
//! Latency is measured from the scheduled start when the worker is behind
//! schedule (its previous operation ran past this one's start), so a server
//! that falls behind is charged for the queueing it causes (no coordinated
//! omission). A worker that is on schedule sleeps until the start, and the
//! timer wakes it late by up to a millisecond (tokio's timer resolution);
//! then latency counts from the moment it woke and sent, because that delay
//! belongs to the load generator, not to the store.

use std::time::{Duration, Instant};

/// One worker's start times.
#[derive(Clone, Debug)]
pub struct Schedule {
    next: Instant,
    period: Duration,
}

impl Schedule {
    /// The schedule of worker `index` of `concurrency`, offering `rate`
    /// operations a second together, from `origin`.
    pub fn new(origin: Instant, rate: f64, concurrency: usize, index: usize) -> Schedule {
        let period = Duration::from_secs_f64(concurrency as f64 / rate);
        let offset = period.mul_f64((index % concurrency.max(1)) as f64 / concurrency.max(1) as f64);
        Schedule { next: origin + offset, period }
    }

    /// The next scheduled start; the schedule moves one period on.
    pub fn take(&mut self) -> Instant {
        let scheduled = self.next;
        self.next += self.period;
        scheduled
    }
}

/// Where an operation's latency counts from: its scheduled start if the
/// worker was already late for it (`ready`, when the worker was free to
/// start it, is not before `scheduled`), else when the worker woke to send
/// it.
pub fn latency_origin(scheduled: Instant, ready: Instant, woke: Instant) -> Instant {
    if ready >= scheduled { scheduled } else { woke }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_together_offer_evenly_spaced_starts() {
        let origin = Instant::now();
        let (rate, concurrency) = (1_000.0, 4);
        let mut starts: Vec<Duration> = (0..concurrency)
            .flat_map(|index| {
                let mut schedule = Schedule::new(origin, rate, concurrency, index);
                (0..5).map(move |_| schedule.take() - origin)
            })
            .collect();
        starts.sort();
        assert_eq!(starts.len(), 20);
        for (position, start) in starts.iter().enumerate() {
            let expected = Duration::from_millis(position as u64);
            let error = start.abs_diff(expected);
            assert!(error < Duration::from_micros(1), "start {position} at {start:?}, expected {expected:?}");
        }
    }

    #[test]
    fn a_late_worker_is_charged_from_the_schedule_an_early_one_from_its_wake_up() {
        let scheduled = Instant::now() + Duration::from_millis(10);
        let woke = scheduled + Duration::from_micros(900);
        let early = scheduled - Duration::from_millis(3);
        assert_eq!(latency_origin(scheduled, early, woke), woke, "timer lateness is not the store's");
        let late = scheduled + Duration::from_millis(2);
        assert_eq!(latency_origin(scheduled, late, late), scheduled, "queueing behind a slow answer is");
    }
}
