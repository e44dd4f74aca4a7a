//! The lost-write checker: pure functions from what the clients did and
//! what the cluster holds at the end to a verdict. No I/O, so the rules are
//! unit-tested below, including the failures they must catch.
//!
//! Per key, with *attempted* = elements some client tried to add,
//! *acknowledged* = those whose write got a 2xx, *final* = the union of the
//! siblings an R=N read returns after healing and convergence:
//! - **lost** = acknowledged but not in final: a broken promise, the run
//!   fails;
//! - **unexpected** = in final but never attempted (for that key): data from
//!   nowhere, the run fails;
//! - **indeterminate** = attempted, not acknowledged (timeout, 503, node
//!   killed mid-request): either outcome is allowed; counted as present or
//!   absent.
//!
//! Every write was kill -9 (a process crash) at worst, never a power loss,
//! and dw=0 acknowledgements are in the OS after a process crash (see the
//! durability table in docs/architecture.md), so no loss is excusable.

use std::collections::BTreeSet;

/// What one key went through.
#[derive(Clone, Debug, Default)]
pub struct KeyHistory {
    /// The key.
    pub key: String,
    /// Elements some client tried to add.
    pub attempted: BTreeSet<String>,
    /// Elements whose write was acknowledged (a subset of `attempted`).
    pub acknowledged: BTreeSet<String>,
}

/// The verdict over all keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Elements attempted.
    pub attempted: usize,
    /// Elements acknowledged.
    pub acknowledged: usize,
    /// Attempted, not acknowledged, present at the end.
    pub indeterminate_present: usize,
    /// Attempted, not acknowledged, absent at the end.
    pub indeterminate_absent: usize,
    /// `(key, element)` acknowledged but absent at the end.
    pub lost: Vec<(String, String)>,
    /// `(key, element)` present at the end but never attempted for the key.
    pub unexpected: Vec<(String, String)>,
}

impl Report {
    /// Whether the run kept every promise.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty()
    }

    /// Indeterminate elements, present or not.
    pub fn indeterminate(&self) -> usize {
        self.indeterminate_present + self.indeterminate_absent
    }

    /// One line of counts.
    pub fn counts(&self) -> String {
        format!(
            "attempted={} acknowledged={} indeterminate={} (present {}, absent {}) lost={} unexpected={}",
            self.attempted,
            self.acknowledged,
            self.indeterminate(),
            self.indeterminate_present,
            self.indeterminate_absent,
            self.lost.len(),
            self.unexpected.len()
        )
    }

    /// The first few lost and unexpected elements, for the failure message.
    pub fn examples(&self, limit: usize) -> String {
        let show = |pairs: &[(String, String)]| {
            let mut shown: Vec<String> =
                pairs.iter().take(limit).map(|(key, element)| format!("{key}:{element}")).collect();
            if pairs.len() > limit {
                shown.push(format!("... {} more", pairs.len() - limit));
            }
            shown.join(" ")
        };
        format!("lost: [{}] unexpected: [{}]", show(&self.lost), show(&self.unexpected))
    }
}

/// Checks every key: `finals[i]` is what key `histories[i]` holds at the
/// end (the union of its siblings' elements).
pub fn check(histories: &[KeyHistory], finals: &[BTreeSet<String>]) -> Report {
    assert_eq!(histories.len(), finals.len(), "one final state per key");
    let mut report = Report::default();
    for (history, held) in histories.iter().zip(finals) {
        assert!(history.acknowledged.is_subset(&history.attempted), "harness bug: acknowledged but never attempted");
        report.attempted += history.attempted.len();
        report.acknowledged += history.acknowledged.len();
        for element in &history.attempted {
            let present = held.contains(element);
            match (history.acknowledged.contains(element), present) {
                (true, true) => {}
                (true, false) => report.lost.push((history.key.clone(), element.clone())),
                (false, true) => report.indeterminate_present += 1,
                (false, false) => report.indeterminate_absent += 1,
            }
        }
        for element in held.difference(&history.attempted) {
            report.unexpected.push((history.key.clone(), element.clone()));
        }
    }
    report
}

/// Parses a stored value: a JSON array of strings (the workload's set
/// encoding). `None` if it is anything else.
pub fn parse_set(value: &[u8]) -> Option<BTreeSet<String>> {
    serde_json::from_slice::<Vec<String>>(value).ok().map(|elements| elements.into_iter().collect())
}

/// Encodes a set the way [`parse_set`] reads it (sorted JSON array).
pub fn encode_set(elements: &BTreeSet<String>) -> Vec<u8> {
    serde_json::to_vec(elements).unwrap_or_default()
}

/// Whether the replicas of one key agree, from a
/// `GET /admin/replicas/{bucket}/{key}` answer: every replica of the
/// preference list answered and holds the same causal context and the same
/// versions (vtag, digest, tombstone flag). `Err` says why not.
pub fn replicas_agree(admin: &serde_json::Value) -> Result<(), String> {
    let listed = admin["preference_list"].as_array().map_or(0, Vec::len);
    let replicas = admin["replicas"].as_array().ok_or("no replicas in the answer")?;
    if listed == 0 || replicas.len() != listed {
        return Err(format!("{} replica states for a preference list of {listed}", replicas.len()));
    }
    let mut fingerprints = Vec::with_capacity(replicas.len());
    for replica in replicas {
        let node = replica["node"].as_str().unwrap_or("?");
        if replica["status"] != "ok" {
            return Err(format!("{node}: {}", replica["reason"].as_str().unwrap_or("not ok")));
        }
        let mut versions: Vec<String> = replica["versions"]
            .as_array()
            .map(|versions| {
                versions
                    .iter()
                    .map(|version| format!("{}/{}/{}", version["vtag"], version["digest_md5"], version["deleted"]))
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_unstable();
        fingerprints.push((node, replica["context"].to_string(), versions));
    }
    let (first_node, first_context, first_versions) = &fingerprints[0];
    for (node, context, versions) in &fingerprints[1..] {
        if context != first_context || versions != first_versions {
            return Err(format!(
                "{first_node} holds {} version(s), {node} holds {} version(s) or another context",
                first_versions.len(),
                versions.len()
            ));
        }
    }
    Ok(())
}

/// Whether the partition transfers are over, from every node's
/// `GET /admin/transfers` answer (or why there is none): every node
/// answered, all are at one epoch (a node that missed the last commit
/// would report nothing pending for the ring before it) and none sees a
/// pull pending. `Ok` carries the epoch, `Err` says who is not there yet.
pub fn transfers_done(reports: &[Result<serde_json::Value, String>]) -> Result<u64, String> {
    let mut problems = Vec::new();
    let mut epochs = BTreeSet::new();
    for report in reports {
        let report = match report {
            Ok(report) => report,
            Err(why) => {
                problems.push(why.clone());
                continue;
            }
        };
        let node = report["node"].as_str().unwrap_or("?");
        let (Some(epoch), Some(pending)) = (report["epoch"].as_u64(), report["pending"].as_u64()) else {
            problems.push(format!("{node}: no epoch or pending count in {report}"));
            continue;
        };
        epochs.insert(epoch);
        if pending > 0 {
            problems.push(format!(
                "{node}: {pending} pull(s) pending at epoch {epoch}, by node {}",
                report["pending_by_node"]
            ));
        }
    }
    if epochs.len() > 1 {
        let each = reports.iter().flatten().map(|report| format!("{}={}", report["node"], report["epoch"]));
        problems.push(format!("nodes at different epochs: {}", each.collect::<Vec<_>>().join(" ")));
    }
    match (problems.is_empty(), epochs.first()) {
        (true, Some(epoch)) => Ok(*epoch),
        (true, None) => Err("no node reported".to_string()),
        (false, _) => Err(problems.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(elements: &[&str]) -> BTreeSet<String> {
        elements.iter().map(|element| element.to_string()).collect()
    }

    fn history(key: &str, attempted: &[&str], acknowledged: &[&str]) -> KeyHistory {
        KeyHistory { key: key.to_string(), attempted: set(attempted), acknowledged: set(acknowledged) }
    }

    #[test]
    fn a_run_that_kept_every_acknowledged_element_passes_whatever_happened_to_the_others() {
        let histories = [history("k0", &["c0-1", "c0-2", "c1-1"], &["c0-1", "c1-1"]), history("k1", &["c2-1"], &[])];
        let report = check(&histories, &[set(&["c0-1", "c1-1", "c0-2"]), set(&[])]);
        assert!(report.passed(), "{report:?}");
        assert_eq!((report.attempted, report.acknowledged), (4, 2));
        assert_eq!((report.indeterminate_present, report.indeterminate_absent), (1, 1));
        assert_eq!(
            report.counts(),
            "attempted=4 acknowledged=2 indeterminate=2 (present 1, absent 1) lost=0 unexpected=0"
        );
    }

    #[test]
    fn an_acknowledged_element_missing_at_the_end_is_lost_and_fails_the_run() {
        let histories = [history("k0", &["c0-1", "c0-2"], &["c0-1", "c0-2"])];
        let report = check(&histories, &[set(&["c0-1"])]);
        assert!(!report.passed());
        assert_eq!(report.lost, vec![("k0".to_string(), "c0-2".to_string())]);
        assert!(report.examples(5).contains("k0:c0-2"), "{}", report.examples(5));
    }

    #[test]
    fn an_element_nobody_attempted_is_unexpected_and_fails_the_run() {
        let histories = [history("k0", &["c0-1"], &["c0-1"])];
        let report = check(&histories, &[set(&["c0-1", "c9-9"])]);
        assert!(!report.passed());
        assert_eq!(report.unexpected, vec![("k0".to_string(), "c9-9".to_string())]);
        assert!(report.lost.is_empty());
    }

    #[test]
    fn an_element_that_ended_up_under_another_key_is_lost_there_and_unexpected_here() {
        let histories = [history("k0", &["c0-1"], &["c0-1"]), history("k1", &["c1-1"], &["c1-1"])];
        let report = check(&histories, &[set(&["c1-1"]), set(&["c1-1", "c0-1"])]);
        assert_eq!(report.lost, vec![("k0".to_string(), "c0-1".to_string())]);
        assert_eq!(
            report.unexpected,
            vec![("k0".to_string(), "c1-1".to_string()), ("k1".to_string(), "c0-1".to_string())]
        );
    }

    #[test]
    fn sets_round_trip_through_their_encoding_and_garbage_is_refused() {
        let elements = set(&["c1-2", "c0-1"]);
        assert_eq!(encode_set(&elements), br#"["c0-1","c1-2"]"#);
        assert_eq!(parse_set(&encode_set(&elements)), Some(elements));
        assert_eq!(parse_set(b"not json"), None);
        assert_eq!(parse_set(br#"{"a":1}"#), None);
    }

    fn admin(replicas: serde_json::Value) -> serde_json::Value {
        serde_json::json!({ "preference_list": ["node0", "node1", "node2"], "replicas": replicas })
    }

    fn replica(node: &str, context: &str, vtags: &[&str]) -> serde_json::Value {
        let versions: Vec<serde_json::Value> =
            vtags.iter().map(|vtag| serde_json::json!({ "vtag": vtag, "digest_md5": "d", "deleted": false })).collect();
        serde_json::json!({ "node": node, "status": "ok", "context": context, "versions": versions })
    }

    #[test]
    fn replicas_agree_only_when_all_answer_with_the_same_context_and_versions() {
        let same = admin(serde_json::json!([
            replica("node0", "ctx", &["a", "b"]),
            replica("node1", "ctx", &["b", "a"]),
            replica("node2", "ctx", &["a", "b"]),
        ]));
        assert_eq!(replicas_agree(&same), Ok(()));
        let behind = admin(serde_json::json!([
            replica("node0", "ctx", &["a", "b"]),
            replica("node1", "old", &["a"]),
            replica("node2", "ctx", &["a", "b"]),
        ]));
        assert!(replicas_agree(&behind).is_err());
        let down = admin(serde_json::json!([
            replica("node0", "ctx", &["a"]),
            { "node": "node1", "status": "failed", "reason": "timeout" },
            replica("node2", "ctx", &["a"]),
        ]));
        assert_eq!(replicas_agree(&down), Err("node1: timeout".to_string()));
    }

    fn transfers(node: &str, epoch: u64, pending: u64) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({ "node": node, "epoch": epoch, "pending": pending, "pending_by_node": {} }))
    }

    #[test]
    fn transfers_are_done_only_when_every_node_answers_at_one_epoch_with_nothing_pending() {
        assert_eq!(transfers_done(&[transfers("node0", 2, 0), transfers("node5", 2, 0)]), Ok(2));
        let pending = transfers_done(&[transfers("node0", 2, 0), transfers("node5", 2, 3)]);
        assert!(pending.as_ref().is_err_and(|why| why.contains("node5: 3 pull(s) pending")), "{pending:?}");
        let behind = transfers_done(&[transfers("node0", 2, 0), transfers("node1", 1, 0)]);
        assert!(behind.as_ref().is_err_and(|why| why.contains("different epochs")), "{behind:?}");
        let silent = transfers_done(&[transfers("node0", 2, 0), Err("node1: timeout".to_string())]);
        assert_eq!(silent, Err("node1: timeout".to_string()));
        assert!(transfers_done(&[]).is_err());
    }
}
