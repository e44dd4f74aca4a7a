//! Local failure detection (paper section 4.8.3): what one node believes
//! about the reachability of each of its peers, learned only from its own
//! calls to them. Pure: the caller reports each call's outcome with the time
//! it happened, and asks which peers to route around and which to probe.
//! This is the pure half of the mechanism; `dynamo-node`'s module of the
//! same name is the I/O half (it feeds every call's outcome in and runs the
//! probes). The detector's state is [`Liveness`], tuned by
//! [`LivenessPolicy`].
//!
//! Why local and not a membership change: in Dynamo a node that stops
//! answering is routed around (its writes go to fallbacks with hints), but it
//! stays a member, and every node decides this for itself. A node that one
//! peer cannot reach may be fine for the others (a partial partition), so
//! there is no global "down" state to agree on.
//!
//! The rules:
//! - A call that reached the peer and got an answer (even an error answer)
//!   proves it is up.
//! - A connection that could not be opened, or broke, marks the peer down at
//!   once: that is unambiguous.
//! - Timeouts are weaker evidence (a busy peer answers late); a peer is
//!   marked down after [`LivenessPolicy::timeouts_to_mark_down`] in a row.
//! - A down peer gets no traffic but probes; the first answer marks it up.
//!   The first probe comes a tenth of [`LivenessPolicy::probe_interval_ms`]
//!   after the peer went down, and the gap doubles up to that interval: a
//!   peer that was only restarting (or not started yet, at cluster start)
//!   is back in use quickly, and one that stays down costs one probe per
//!   interval.

use std::collections::BTreeMap;

use crate::codec::truncate_at_char;
use crate::ring::NodeId;

/// Longest failure reason kept per peer, in bytes.
pub const MAX_LIVENESS_REASON_LEN: usize = 512;

/// What one call to a peer showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The peer answered.
    Answered,
    /// The connection could not be opened or broke (refused, reset, closed,
    /// authentication or protocol failure): the peer cannot be used now.
    Unreachable(String),
    /// No answer within the call's timeout.
    TimedOut(String),
}

/// Tuning of the detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessPolicy {
    /// Consecutive timeouts after which a peer is marked down.
    pub timeouts_to_mark_down: u32,
    /// How often a down peer is probed, in milliseconds.
    pub probe_interval_ms: u64,
}

impl LivenessPolicy {
    /// The gap between a peer going down and its first probe.
    fn first_probe_gap_ms(self) -> u64 {
        (self.probe_interval_ms / 10).max(1)
    }
}

impl Default for LivenessPolicy {
    fn default() -> Self {
        Self { timeouts_to_mark_down: 2, probe_interval_ms: 1_000 }
    }
}

/// Whether a peer gets traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Routed to normally.
    Up,
    /// Routed around; probed until it answers.
    Down,
}

/// What the detector knows about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// Up or down.
    pub state: PeerState,
    /// When the state last changed (caller's clock, ms); 0 if never.
    pub since_ms: u64,
    /// Consecutive timeouts since the last answer.
    pub consecutive_timeouts: u32,
    /// The last failure, if any since the peer last answered.
    pub last_failure: Option<String>,
    /// When the peer last answered (ms); `None` if never.
    pub last_answer_ms: Option<u64>,
    /// When a down peer is due for its next probe (ms).
    next_probe_ms: u64,
    /// The gap before the probe after next (ms).
    probe_gap_ms: u64,
}

impl PeerView {
    fn new() -> Self {
        Self {
            state: PeerState::Up,
            since_ms: 0,
            consecutive_timeouts: 0,
            last_failure: None,
            last_answer_ms: None,
            next_probe_ms: 0,
            probe_gap_ms: 0,
        }
    }
}

/// A change of a peer's state, for logging and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The peer.
    pub node: NodeId,
    /// Its new state.
    pub state: PeerState,
    /// Why (the failure that marked it down; empty when it came up).
    pub reason: String,
}

/// One node's view of its peers. Every peer starts up: a node that just
/// started has no evidence against anyone.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    policy: LivenessPolicy,
    peers: BTreeMap<NodeId, PeerView>,
}

impl Liveness {
    /// A detector with `policy`, knowing no peer yet.
    pub fn new(policy: LivenessPolicy) -> Self {
        Self { policy, peers: BTreeMap::new() }
    }

    /// Records what a call to `node` at `now_ms` showed. Returns the state
    /// change it caused, if any.
    pub fn record(&mut self, node: &NodeId, outcome: CallOutcome, now_ms: u64) -> Option<Transition> {
        let policy = self.policy;
        let view = self.peers.entry(node.clone()).or_insert_with(PeerView::new);
        let (mark_down, reason) = match outcome {
            CallOutcome::Answered => {
                view.consecutive_timeouts = 0;
                view.last_failure = None;
                view.last_answer_ms = Some(now_ms);
                return (view.state == PeerState::Down).then(|| {
                    view.state = PeerState::Up;
                    view.since_ms = now_ms;
                    Transition { node: node.clone(), state: PeerState::Up, reason: String::new() }
                });
            }
            CallOutcome::Unreachable(reason) => (true, reason),
            CallOutcome::TimedOut(reason) => {
                view.consecutive_timeouts = view.consecutive_timeouts.saturating_add(1);
                (view.consecutive_timeouts >= policy.timeouts_to_mark_down, reason)
            }
        };
        let reason = truncate_at_char(&reason, MAX_LIVENESS_REASON_LEN).to_string();
        view.last_failure = Some(reason.clone());
        if !mark_down || view.state == PeerState::Down {
            return None;
        }
        view.state = PeerState::Down;
        view.since_ms = now_ms;
        view.probe_gap_ms = policy.first_probe_gap_ms();
        view.next_probe_ms = now_ms.saturating_add(view.probe_gap_ms);
        Some(Transition { node: node.clone(), state: PeerState::Down, reason })
    }

    /// Whether `node` gets traffic (unknown peers are up).
    pub fn is_up(&self, node: &NodeId) -> bool {
        self.peers.get(node).is_none_or(|view| view.state == PeerState::Up)
    }

    /// The down peers due for a probe at `now_ms`; each is scheduled for
    /// its next probe after a gap twice the last one (at most one
    /// interval), so a slow probe is not repeated before it had its chance.
    pub fn due_probes(&mut self, now_ms: u64) -> Vec<NodeId> {
        let interval = self.policy.probe_interval_ms;
        let mut due = Vec::new();
        for (node, view) in &mut self.peers {
            if view.state == PeerState::Down && view.next_probe_ms <= now_ms {
                view.probe_gap_ms = view.probe_gap_ms.saturating_mul(2).clamp(1, interval.max(1));
                view.next_probe_ms = now_ms.saturating_add(view.probe_gap_ms);
                due.push(node.clone());
            }
        }
        due
    }

    /// Everything known about `node`.
    pub fn view(&self, node: &NodeId) -> Option<&PeerView> {
        self.peers.get(node)
    }

    /// Every peer this node has called, in id order.
    pub fn views(&self) -> impl Iterator<Item = (&NodeId, &PeerView)> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node() -> NodeId {
        NodeId::new("node1")
    }

    fn unreachable() -> CallOutcome {
        CallOutcome::Unreachable("connection refused".to_string())
    }

    fn timed_out() -> CallOutcome {
        CallOutcome::TimedOut("no answer in 100 ms".to_string())
    }

    #[test]
    fn unknown_peers_are_up_and_answers_keep_them_up() {
        let mut liveness = Liveness::new(LivenessPolicy::default());
        assert!(liveness.is_up(&node()));
        assert_eq!(liveness.record(&node(), CallOutcome::Answered, 10), None);
        assert!(liveness.is_up(&node()));
        assert_eq!(liveness.view(&node()).and_then(|view| view.last_answer_ms), Some(10));
    }

    #[test]
    fn a_refused_connection_marks_down_at_once_and_an_answer_marks_up() {
        let mut liveness = Liveness::new(LivenessPolicy::default());
        let down = liveness.record(&node(), unreachable(), 100).expect("a transition");
        assert_eq!((down.state, down.reason.as_str()), (PeerState::Down, "connection refused"));
        assert!(!liveness.is_up(&node()));
        assert_eq!(liveness.record(&node(), unreachable(), 150), None, "already down");
        let up = liveness.record(&node(), CallOutcome::Answered, 200).expect("a transition");
        assert_eq!(up.state, PeerState::Up);
        assert!(liveness.is_up(&node()));
        assert_eq!(liveness.view(&node()).map(|view| view.since_ms), Some(200));
    }

    #[test]
    fn timeouts_mark_down_only_when_consecutive() {
        let policy = LivenessPolicy { timeouts_to_mark_down: 3, probe_interval_ms: 1_000 };
        let mut liveness = Liveness::new(policy);
        assert_eq!(liveness.record(&node(), timed_out(), 1), None);
        assert_eq!(liveness.record(&node(), timed_out(), 2), None);
        assert_eq!(liveness.record(&node(), CallOutcome::Answered, 3), None, "an answer resets the count");
        assert_eq!(liveness.record(&node(), timed_out(), 4), None);
        assert_eq!(liveness.record(&node(), timed_out(), 5), None);
        assert!(liveness.is_up(&node()));
        let down = liveness.record(&node(), timed_out(), 6).expect("third timeout in a row");
        assert_eq!(down.state, PeerState::Down);
    }

    #[test]
    fn down_peers_are_probed_soon_then_at_most_once_per_interval() {
        let mut liveness = Liveness::new(LivenessPolicy { timeouts_to_mark_down: 1, probe_interval_ms: 1_000 });
        liveness.record(&node(), unreachable(), 0);
        liveness.record(&NodeId::new("node2"), CallOutcome::Answered, 0);
        assert!(liveness.due_probes(99).is_empty(), "not before a tenth of the interval");
        let mut probes = Vec::new();
        for now in (100..=5_000).step_by(10) {
            if !liveness.due_probes(now).is_empty() {
                probes.push(now);
            }
        }
        assert_eq!(&probes[..5], [100, 300, 700, 1_500, 2_500], "gaps 200, 400, 800, then the interval");
        assert!(probes.windows(2).all(|pair| pair[1] - pair[0] <= 1_000), "{probes:?}");
        liveness.record(&node(), CallOutcome::Answered, 5_100);
        assert!(liveness.due_probes(10_000).is_empty(), "up peers are not probed");
    }

    #[test]
    fn long_reasons_are_cut() {
        let mut liveness = Liveness::new(LivenessPolicy::default());
        let transition = liveness.record(&node(), CallOutcome::Unreachable("é".repeat(1_000)), 0).expect("down");
        assert!(transition.reason.len() <= MAX_LIVENESS_REASON_LEN);
    }

    fn outcome() -> impl Strategy<Value = CallOutcome> {
        prop_oneof![Just(CallOutcome::Answered), Just(unreachable()), Just(timed_out())]
    }

    proptest! {
        /// Whatever happened before, the state follows from the latest
        /// evidence: an answer means up, a refused connection means down.
        #[test]
        fn the_last_decisive_outcome_decides(history in prop::collection::vec(outcome(), 0..40)) {
            let mut liveness = Liveness::new(LivenessPolicy::default());
            let mut expected_up = true;
            let mut timeouts = 0;
            for (at, outcome) in history.into_iter().enumerate() {
                match &outcome {
                    CallOutcome::Answered => { expected_up = true; timeouts = 0; }
                    CallOutcome::Unreachable(_) => expected_up = false,
                    CallOutcome::TimedOut(_) => {
                        timeouts += 1;
                        if timeouts >= LivenessPolicy::default().timeouts_to_mark_down { expected_up = false; }
                    }
                }
                let before = liveness.is_up(&node());
                let transition = liveness.record(&node(), outcome, at as u64);
                prop_assert_eq!(liveness.is_up(&node()), expected_up);
                prop_assert_eq!(transition.is_some(), before != expected_up, "a transition exactly on change");
            }
        }
    }
}
