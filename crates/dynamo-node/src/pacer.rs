//! A rate shared by every task of one kind of background work on a node
//! (issue 14: key listings), so that however many run at once they add up
//! to the cap, and foreground requests keep the rest of the machine
//! (paper section 6.5). Each batch reserves its share of time behind the
//! reservations before it and waits for its turn, so the rate holds over
//! any window and idle time is not saved up for a burst. The
//! [`BackgroundBudget`] admission control sets (`crate::admission`)
//! scales every such rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Items per second, shared by every task that pays into it.
pub struct Pacer {
    per_item: Duration,
    next_free: std::sync::Mutex<Instant>,
    budget: std::sync::Arc<BackgroundBudget>,
}

impl Pacer {
    /// A pacer of `items_per_sec` (at least 1) at the full `budget`.
    pub fn new(items_per_sec: u32, budget: std::sync::Arc<BackgroundBudget>) -> Pacer {
        Pacer {
            per_item: Duration::from_secs(1) / items_per_sec.max(1),
            next_free: std::sync::Mutex::new(Instant::now()),
            budget,
        }
    }

    /// When a batch of `items` gathered now may go on: the end of the time
    /// reserved before it. Reserves the batch's own share after that.
    fn reserve(&self, items: usize, now: Instant) -> Instant {
        let mut next_free = self.next_free.lock().expect("pacer lock");
        let start = (*next_free).max(now);
        let cost = self.budget.stretch(self.per_item.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX)));
        *next_free = start + cost;
        start + cost
    }

    /// Waits until a batch of `items` fits the rate.
    pub async fn pay(&self, items: usize) {
        let until = self.reserve(items, Instant::now());
        tokio::time::sleep_until(until).await;
    }
}
/// The share of its configured rate background work may use now, shared
/// by the controller (which writes it) and every paced task (which read
/// it). Starts at the full rate.
#[derive(Debug)]
pub struct BackgroundBudget(AtomicU64);

impl Default for BackgroundBudget {
    fn default() -> Self {
        Self(AtomicU64::new(1.0f64.to_bits()))
    }
}

impl BackgroundBudget {
    /// The budget, in `[MIN_BUDGET, 1]`.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Sets the budget (the controller's output).
    pub fn set(&self, budget: f64) {
        self.0.store(budget.to_bits(), Ordering::Relaxed);
    }

    /// `base` stretched by the budget: what a pause of `base` at the full
    /// rate becomes now.
    pub fn stretch(&self, base: Duration) -> Duration {
        base.div_f64(self.get().max(dynamo_core::admission::MIN_BUDGET))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_stretches_pauses_and_never_divides_by_zero() {
        let budget = BackgroundBudget::default();
        assert_eq!(budget.get(), 1.0);
        assert_eq!(budget.stretch(Duration::from_millis(10)), Duration::from_millis(10));
        budget.set(0.5);
        assert_eq!(budget.stretch(Duration::from_millis(10)), Duration::from_millis(20));
        budget.set(0.0);
        assert_eq!(budget.stretch(Duration::from_millis(1)), Duration::from_millis(20), "floored at MIN_BUDGET");
    }

    #[test]
    fn the_pacer_spreads_batches_at_its_rate_and_saves_no_credit_while_idle() {
        let budget = std::sync::Arc::new(BackgroundBudget::default());
        let pacer = Pacer::new(1_000, budget.clone());
        let start = Instant::now();
        assert_eq!(pacer.reserve(500, start), start + Duration::from_millis(500));
        assert_eq!(pacer.reserve(500, start), start + Duration::from_secs(1), "a second batch waits behind the first");
        let later = start + Duration::from_secs(5);
        assert_eq!(pacer.reserve(10, later), later + Duration::from_millis(10), "idle time is not a burst allowance");
        budget.set(0.5);
        let much_later = start + Duration::from_secs(10);
        assert_eq!(
            pacer.reserve(10, much_later),
            much_later + Duration::from_millis(20),
            "half the budget, half the rate"
        );
    }
}
