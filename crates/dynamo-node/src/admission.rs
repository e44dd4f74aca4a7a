//! Admission control of background work, the I/O half (paper section 6.5,
//! issue 16): every window this node takes the p99 of the client requests
//! it finished in that window, feeds it to the pure controller
//! ([`dynamo_core::admission::AdmissionController`]), and publishes the
//! resulting budget, the share of its configured rate that each kind of
//! background work may use: key listings ([`crate::pacer::Pacer`]),
//! anti-entropy repairs and partition transfers scale their pace by it,
//! and hint delivery rests between batches in proportion.
//!
//! Only HTTP data requests (get, put, delete) count as foreground: the
//! Redis front end's commands are not measured yet.

use std::sync::Arc;
use std::time::Duration;

use dynamo_core::admission::{AdmissionController, window_quantile};
use tracing::debug;

use crate::metrics::{Metrics, latency_bounds_ms};
use crate::pacer::BackgroundBudget;

/// The controller and the last snapshot of the foreground histogram: one
/// [`Window::close`] per window.
struct Window {
    controller: AdmissionController,
    bounds: Vec<f64>,
    before: Vec<u64>,
}

impl Window {
    fn open(target_ms: u64, metrics: &Metrics) -> Self {
        Self {
            controller: AdmissionController::new(target_ms as f64),
            bounds: latency_bounds_ms(),
            before: metrics.foreground_latency_counts(),
        }
    }

    /// Ends the window: its foreground p99 goes to the controller; returns
    /// the new budget and the p99 (`None` without foreground requests).
    fn close(&mut self, metrics: &Metrics) -> (f64, Option<f64>) {
        let after = metrics.foreground_latency_counts();
        let p99 = window_quantile(&self.before, &after, &self.bounds, 0.99);
        self.before = after;
        (self.controller.observe(p99), p99)
    }
}

/// Runs the controller until `stop`: every `window`, the foreground p99
/// of that window against `target_ms`.
pub async fn run(
    metrics: Arc<Metrics>,
    budget: Arc<BackgroundBudget>,
    target_ms: u64,
    window: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut current = Window::open(target_ms, &metrics);
    let mut ticks = tokio::time::interval(window);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let (next, p99) = current.close(&metrics);
        if next != budget.get() {
            debug!(?p99, target_ms, budget = next, "background budget changed");
        }
        budget.set(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Operation;

    #[test]
    fn slow_foreground_requests_shrink_the_budget_in_their_window_and_quiet_windows_grow_it() {
        let metrics = Metrics::default();
        for _ in 0..1_000 {
            metrics.record_request(Operation::Get, 200, Duration::from_millis(2));
        }
        let mut window = Window::open(50, &metrics);
        assert_eq!(window.close(&metrics), (1.0, None), "nothing in the window: the full rate");
        for _ in 0..98 {
            metrics.record_request(Operation::Put, 204, Duration::from_millis(2));
        }
        for _ in 0..2 {
            metrics.record_request(Operation::Get, 200, Duration::from_millis(400));
        }
        let (budget, p99) = window.close(&metrics);
        assert_eq!(budget, 0.5, "a window whose p99 is over target halves the budget (p99 {p99:?})");
        // Requests before the window do not count: fast ones now.
        for _ in 0..100 {
            metrics.record_request(Operation::Get, 200, Duration::from_millis(2));
        }
        assert_eq!(window.close(&metrics).0, 0.6, "a calm window adds a tenth");
        metrics.record_request(Operation::Other, 200, Duration::from_secs(5));
        assert_eq!(window.close(&metrics), (0.7, None), "admin and ping requests are not foreground");
    }
}
