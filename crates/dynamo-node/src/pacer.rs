//! A rate shared by every task of one kind of background work on a node
//! (issue 14: key listings), so that however many run at once they add up
//! to the cap, and foreground requests keep the rest of the machine
//! (paper section 6.5). Each batch reserves its share of time behind the
//! reservations before it and waits for its turn, so the rate holds over
//! any window and idle time is not saved up for a burst.

use std::time::Duration;

use tokio::time::Instant;

/// Items per second, shared by every task that pays into it.
pub struct Pacer {
    per_item: Duration,
    next_free: std::sync::Mutex<Instant>,
}

impl Pacer {
    /// A pacer of `items_per_sec` (at least 1).
    pub fn new(items_per_sec: u32) -> Pacer {
        Pacer {
            per_item: Duration::from_secs(1) / items_per_sec.max(1),
            next_free: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// When a batch of `items` gathered now may go on: the end of the time
    /// reserved before it. Reserves the batch's own share after that.
    fn reserve(&self, items: usize, now: Instant) -> Instant {
        let mut next_free = self.next_free.lock().expect("pacer lock");
        let start = (*next_free).max(now);
        let cost = self.per_item.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX));
        *next_free = start + cost;
        start + cost
    }

    /// Waits until a batch of `items` fits the rate.
    pub async fn pay(&self, items: usize) {
        let until = self.reserve(items, Instant::now());
        tokio::time::sleep_until(until).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spreads_batches_at_its_rate_and_saves_no_credit_while_idle() {
        let pacer = Pacer::new(1_000);
        let start = Instant::now();
        assert_eq!(pacer.reserve(500, start), start + Duration::from_millis(500));
        assert_eq!(pacer.reserve(500, start), start + Duration::from_secs(1), "a second batch waits behind the first");
        let later = start + Duration::from_secs(5);
        assert_eq!(pacer.reserve(10, later), later + Duration::from_millis(10), "idle time is not a burst allowance");
    }
}
