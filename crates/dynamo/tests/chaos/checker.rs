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
//!
//! The data-type buckets ([`crate::datatypes`]) have rules of their own:
//! - **Counters** ([`check_counters`]): every increment has a distinct
//!   positive amount. After convergence, a key's value read at R=N must lie
//!   in `low..=high`, `low` = the sum of its acknowledged increments,
//!   `high` = `low` + the sum of its indeterminate ones (sent, not
//!   acknowledged: applied or not). Above `high` is a **double count**
//!   (something was applied twice, or from nowhere), below `low` a **lost
//!   increment**; either fails the run. An excess or deficit that equals one
//!   increment's amount names that increment (the amounts are distinct).
//! - **Sets** ([`check_orsets`]): elements are added once each, by one
//!   client; an element is only removed after a read showed it. So an
//!   acknowledged add whose element no remove was ever sent for
//!   (acknowledged or not) must be in the final set (else **lost**), and
//!   the final set holds only elements some client tried to add (else
//!   **unexpected**). Acknowledged removes whose element is still there are
//!   counted, not failed (an add the remove's read never saw wins, e.g. one
//!   a forwarder applied twice).

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

/// What one counter key went through: the amounts of the increments sent
/// (each distinct and positive) and of those acknowledged.
#[derive(Clone, Debug, Default)]
pub struct CounterHistory {
    /// The key.
    pub key: String,
    /// Amounts of the increments sent (recorded before sending).
    pub attempted: BTreeSet<i64>,
    /// Amounts of the increments that got a 2xx (a subset of `attempted`).
    pub acknowledged: BTreeSet<i64>,
}

/// Where a counter's final value lies against its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterOutcome {
    /// `low <= value <= high`.
    Within,
    /// `value > high` by `excess`: applied more than was sent.
    DoubleCount {
        /// `value - high`.
        excess: i64,
    },
    /// `value < low` by `deficit`: an acknowledged increment is missing.
    Lost {
        /// `low - value`.
        deficit: i64,
    },
}

/// The verdict on one counter key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterVerdict {
    /// The key.
    pub key: String,
    /// Its value read at R=N at the end.
    pub value: i64,
    /// Sum of the acknowledged increments.
    pub low: i64,
    /// `low` + sum of the indeterminate increments.
    pub high: i64,
    /// Acknowledged increments.
    pub acknowledged: usize,
    /// Increments sent and not acknowledged.
    pub indeterminate: usize,
    /// Where `value` lies.
    pub outcome: CounterOutcome,
    /// Increments whose amount alone is the excess (any increment) or the
    /// deficit (acknowledged ones): the likely culprits.
    pub culprits: Vec<i64>,
}

/// The verdict over all counter keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterReport {
    /// One verdict per key.
    pub keys: Vec<CounterVerdict>,
}

impl CounterReport {
    /// Whether every key's value lies within its bounds.
    pub fn passed(&self) -> bool {
        self.keys.iter().all(|key| key.outcome == CounterOutcome::Within)
    }

    /// Keys whose value is above their upper bound.
    pub fn double_counts(&self) -> usize {
        self.keys.iter().filter(|key| matches!(key.outcome, CounterOutcome::DoubleCount { .. })).count()
    }

    /// Keys whose value is below their lower bound.
    pub fn lost(&self) -> usize {
        self.keys.iter().filter(|key| matches!(key.outcome, CounterOutcome::Lost { .. })).count()
    }

    /// One line of counts, over all keys (every key within its bounds
    /// implies the total within the summed bounds).
    pub fn counts(&self) -> String {
        let sum = |field: fn(&CounterVerdict) -> i64| self.keys.iter().map(field).fold(0i64, i64::saturating_add);
        format!(
            "counter: increments acknowledged={} indeterminate={} bounds={}..={} value={} double-counted-keys={} \
             lost-increment-keys={}",
            self.keys.iter().map(|key| key.acknowledged).sum::<usize>(),
            self.keys.iter().map(|key| key.indeterminate).sum::<usize>(),
            sum(|key| key.low),
            sum(|key| key.high),
            sum(|key| key.value),
            self.double_counts(),
            self.lost()
        )
    }

    /// Every key on one line: value, bounds and what is wrong.
    pub fn details(&self) -> String {
        let each = self.keys.iter().map(|key| {
            let verdict = match key.outcome {
                CounterOutcome::Within => "ok".to_string(),
                CounterOutcome::DoubleCount { excess } => format!("DOUBLE COUNT by {excess}"),
                CounterOutcome::Lost { deficit } => format!("LOST INCREMENT(S) worth {deficit}"),
            };
            let culprits = if key.culprits.is_empty() {
                String::new()
            } else {
                let named: Vec<String> = key.culprits.iter().map(|amount| describe_amount(*amount)).collect();
                format!(" (= the increment {})", named.join(" or "))
            };
            format!(
                "{}={} in {}..={} [{} acknowledged, {} indeterminate] {verdict}{culprits}",
                key.key, key.value, key.low, key.high, key.acknowledged, key.indeterminate
            )
        });
        each.collect::<Vec<_>>().join("; ")
    }
}

/// Checks every counter key: `finals[i]` is the value of key
/// `histories[i]` read at R=N at the end (0 for a key never found).
pub fn check_counters(histories: &[CounterHistory], finals: &[i64]) -> CounterReport {
    assert_eq!(histories.len(), finals.len(), "one final value per counter key");
    let mut report = CounterReport::default();
    for (history, &value) in histories.iter().zip(finals) {
        assert!(history.acknowledged.is_subset(&history.attempted), "harness bug: acknowledged but never sent");
        assert!(history.attempted.iter().all(|amount| *amount > 0), "harness bug: amounts are positive");
        let total =
            |amounts: &mut dyn Iterator<Item = &i64>| amounts.fold(0i64, |sum, amount| sum.saturating_add(*amount));
        let low = total(&mut history.acknowledged.iter());
        let high = total(&mut history.attempted.iter());
        let (outcome, culprits) = if value > high {
            let excess = value - high;
            (
                CounterOutcome::DoubleCount { excess },
                history.attempted.iter().copied().filter(|a| *a == excess).collect(),
            )
        } else if value < low {
            let deficit = low - value;
            (CounterOutcome::Lost { deficit }, history.acknowledged.iter().copied().filter(|a| *a == deficit).collect())
        } else {
            (CounterOutcome::Within, Vec::new())
        };
        report.keys.push(CounterVerdict {
            key: history.key.clone(),
            value,
            low,
            high,
            acknowledged: history.acknowledged.len(),
            indeterminate: history.attempted.len() - history.acknowledged.len(),
            outcome,
            culprits,
        });
    }
    report
}

/// Most counter clients: the client number is the amount's last three
/// decimal digits (see [`increment_amount`]).
pub const MAX_COUNTER_CLIENTS: usize = 1000;

/// The amount of counter client `client`'s increment number `seq` (from 1):
/// `1000·seq + client`, positive and distinct in the run, and readable
/// (`17003` is client 3's 17th increment).
pub fn increment_amount(client: usize, seq: u64) -> i64 {
    assert!(client < MAX_COUNTER_CLIENTS && seq > 0, "client {client} seq {seq}");
    1000 * seq as i64 + client as i64
}

/// `c<client>-<seq>` for an amount of [`increment_amount`].
pub fn describe_amount(amount: i64) -> String {
    format!("c{}-{} (+{amount})", amount % 1000, amount / 1000)
}

/// What one data-type set key went through.
#[derive(Clone, Debug, Default)]
pub struct OrSetHistory {
    /// The key.
    pub key: String,
    /// Elements some client tried to add (each by one client, once).
    pub attempted: BTreeSet<String>,
    /// Elements whose add got a 2xx (a subset of `attempted`).
    pub acknowledged: BTreeSet<String>,
    /// Elements a remove was sent for, acknowledged or not.
    pub removed: BTreeSet<String>,
    /// Elements a remove of which got a 2xx (a subset of `removed`).
    pub removes_acknowledged: BTreeSet<String>,
}

/// The verdict over all data-type set keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrSetReport {
    /// Adds sent.
    pub attempted: usize,
    /// Adds acknowledged.
    pub acknowledged: usize,
    /// Acknowledged adds, never removed, present at the end.
    pub kept: usize,
    /// Acknowledged adds whose element was later removed (no claim).
    pub acknowledged_then_removed: usize,
    /// Elements a remove was sent for.
    pub removes: usize,
    /// Elements a remove of which was acknowledged.
    pub removes_acknowledged: usize,
    /// Acknowledged removes whose element is still in the set (counted,
    /// not failed: an add their read never saw wins).
    pub removed_but_present: usize,
    /// `(key, element)`: acknowledged add, no remove ever sent, absent.
    pub lost: Vec<(String, String)>,
    /// `(key, element)`: present at the end, never attempted for the key.
    pub unexpected: Vec<(String, String)>,
}

impl OrSetReport {
    /// Whether no acknowledged add was lost and nothing came from nowhere.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty()
    }

    /// One line of counts.
    pub fn counts(&self) -> String {
        format!(
            "set: adds attempted={} acknowledged={} (kept {}, removed since {}) lost={} unexpected={} removes={} \
             (acknowledged {}, element still present {})",
            self.attempted,
            self.acknowledged,
            self.kept,
            self.acknowledged_then_removed,
            self.lost.len(),
            self.unexpected.len(),
            self.removes,
            self.removes_acknowledged,
            self.removed_but_present
        )
    }

    /// The first few lost and unexpected elements.
    pub fn examples(&self, limit: usize) -> String {
        Report { lost: self.lost.clone(), unexpected: self.unexpected.clone(), ..Report::default() }.examples(limit)
    }
}

/// Checks every data-type set key: `finals[i]` is the set key
/// `histories[i]` holds at the end (read at R=N; empty if not found).
pub fn check_orsets(histories: &[OrSetHistory], finals: &[BTreeSet<String>]) -> OrSetReport {
    assert_eq!(histories.len(), finals.len(), "one final set per key");
    let mut report = OrSetReport::default();
    for (history, held) in histories.iter().zip(finals) {
        assert!(history.acknowledged.is_subset(&history.attempted), "harness bug: acknowledged but never sent");
        assert!(history.removes_acknowledged.is_subset(&history.removed), "harness bug: remove never sent");
        report.attempted += history.attempted.len();
        report.acknowledged += history.acknowledged.len();
        report.removes += history.removed.len();
        report.removes_acknowledged += history.removes_acknowledged.len();
        for element in &history.acknowledged {
            match (history.removed.contains(element), held.contains(element)) {
                (true, _) => report.acknowledged_then_removed += 1,
                (false, true) => report.kept += 1,
                (false, false) => report.lost.push((history.key.clone(), element.clone())),
            }
        }
        report.removed_but_present += history.removes_acknowledged.intersection(held).count();
        for element in held.difference(&history.attempted) {
            report.unexpected.push((history.key.clone(), element.clone()));
        }
    }
    report
}

/// The value of a `GET /buckets/{b}/datatypes/{k}` answer of a counter
/// bucket: 0 for 404 (never incremented). `Err` for anything else.
pub fn parse_counter(status: u16, body: &[u8]) -> Result<i64, String> {
    match status {
        404 => Ok(0),
        200 => {
            let json: serde_json::Value = serde_json::from_slice(body).map_err(|error| format!("bad JSON: {error}"))?;
            match (json["type"].as_str(), json["value"].as_i64()) {
                (Some("counter"), Some(value)) => Ok(value),
                _ => Err(format!("not a counter: {}", truncated(&json.to_string()))),
            }
        }
        _ => Err(format!("{status}: {}", truncated(&String::from_utf8_lossy(body)))),
    }
}

/// The elements and context of a `GET /buckets/{b}/datatypes/{k}` answer
/// of a set bucket: empty and no context for 404. `Err` for anything else.
pub fn parse_orset(status: u16, body: &[u8]) -> Result<(BTreeSet<String>, Option<String>), String> {
    match status {
        404 => Ok((BTreeSet::new(), None)),
        200 => {
            let json: serde_json::Value = serde_json::from_slice(body).map_err(|error| format!("bad JSON: {error}"))?;
            let elements: Option<BTreeSet<String>> = json["value"]
                .as_array()
                .and_then(|values| values.iter().map(|value| value.as_str().map(str::to_string)).collect());
            match (json["type"].as_str(), elements, json["context"].as_str()) {
                (Some("set"), Some(elements), Some(context)) => Ok((elements, Some(context.to_string()))),
                _ => Err(format!("not a set with a context: {}", truncated(&json.to_string()))),
            }
        }
        _ => Err(format!("{status}: {}", truncated(&String::from_utf8_lossy(body)))),
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(120).collect()
}

/// Whether the replicas of one key agree, from a
/// `GET /admin/replicas/{bucket}/{key}` answer: every replica of the
/// preference list answered and holds the same causal context and the same
/// versions (vtag, digest, tombstone flag, size, and for a data type its
/// summary: a counter's value, a set's element count). `Err` says why not.
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
                    .map(|version| {
                        format!(
                            "{}/{}/{}/{}/{}/{}/{}",
                            version["vtag"],
                            version["digest_md5"],
                            version["deleted"],
                            version["size"],
                            version["datatype"],
                            version["value"],
                            version["elements"]
                        )
                    })
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

    #[test]
    fn replicas_of_a_data_type_disagree_when_their_values_differ_under_the_same_label() {
        let counter = |node: &str, value: i64| {
            let version = serde_json::json!({ "vtag": "node1-7", "digest_md5": "", "deleted": false, "size": 40,
                "datatype": "counter", "value": value });
            serde_json::json!({ "node": node, "status": "ok", "context": "ctx", "versions": [version] })
        };
        let same = admin(serde_json::json!([counter("node0", 5), counter("node1", 5), counter("node2", 5)]));
        assert_eq!(replicas_agree(&same), Ok(()));
        let apart = admin(serde_json::json!([counter("node0", 5), counter("node1", 6), counter("node2", 5)]));
        assert!(replicas_agree(&apart).is_err());
    }

    fn counter(key: &str, attempted: &[i64], acknowledged: &[i64]) -> CounterHistory {
        CounterHistory {
            key: key.to_string(),
            attempted: attempted.iter().copied().collect(),
            acknowledged: acknowledged.iter().copied().collect(),
        }
    }

    #[test]
    fn a_counter_between_its_acknowledged_sum_and_that_plus_every_indeterminate_increment_passes() {
        // 1000 and 2001 acknowledged, 3002 indeterminate: 3001..=6003.
        let histories = [counter("k0", &[1000, 2001, 3002], &[1000, 2001]), counter("k1", &[], &[])];
        for value in [3001, 6003] {
            let report = check_counters(&histories, &[value, 0]);
            assert!(report.passed(), "{value}: {report:?}");
            assert_eq!((report.keys[0].low, report.keys[0].high), (3001, 6003));
        }
        let report = check_counters(&histories, &[6003, 0]);
        assert_eq!(
            report.counts(),
            "counter: increments acknowledged=2 indeterminate=1 bounds=3001..=6003 value=6003 double-counted-keys=0 \
             lost-increment-keys=0"
        );
        assert_eq!(report.keys[1].outcome, CounterOutcome::Within, "a key never incremented reads 0");
    }

    #[test]
    fn a_counter_above_its_upper_bound_is_a_double_count_that_names_the_increment_and_fails_the_run() {
        let histories = [counter("k0", &[1000, 2001, 3002], &[1000, 2001])];
        // The acknowledged 2001 applied twice, the indeterminate 3002 once.
        let report = check_counters(&histories, &[1000 + 2 * 2001 + 3002]);
        assert!(!report.passed());
        assert_eq!(report.keys[0].outcome, CounterOutcome::DoubleCount { excess: 2001 });
        assert_eq!(report.keys[0].culprits, vec![2001]);
        assert_eq!((report.double_counts(), report.lost()), (1, 0));
        assert!(
            report.details().contains("DOUBLE COUNT by 2001 (= the increment c1-2 (+2001))"),
            "{}",
            report.details()
        );
    }

    #[test]
    fn a_counter_below_the_sum_of_its_acknowledged_increments_lost_one_and_fails_the_run() {
        let histories = [counter("k0", &[1000, 2001, 3002], &[1000, 2001])];
        let report = check_counters(&histories, &[1000]);
        assert!(!report.passed());
        assert_eq!(report.keys[0].outcome, CounterOutcome::Lost { deficit: 2001 });
        assert_eq!(report.keys[0].culprits, vec![2001]);
        assert_eq!((report.double_counts(), report.lost()), (0, 1));
        // One short of the lower bound is a loss too, even if no single
        // increment explains it.
        let report = check_counters(&histories, &[3000]);
        assert_eq!(report.keys[0].outcome, CounterOutcome::Lost { deficit: 1 });
        assert!(report.keys[0].culprits.is_empty());
    }

    #[test]
    fn increment_amounts_are_distinct_positive_and_name_their_client_and_sequence_number() {
        let mut seen = BTreeSet::new();
        for client in [0, 1, 7, 255] {
            for seq in 1..200 {
                let amount = increment_amount(client, seq);
                assert!(amount > 0);
                assert!(seen.insert(amount), "{amount} twice");
            }
        }
        assert_eq!(describe_amount(increment_amount(3, 17)), "c3-17 (+17003)");
    }

    fn orset(
        key: &str,
        attempted: &[&str],
        acknowledged: &[&str],
        removed: &[&str],
        removes_acked: &[&str],
    ) -> OrSetHistory {
        OrSetHistory {
            key: key.to_string(),
            attempted: set(attempted),
            acknowledged: set(acknowledged),
            removed: set(removed),
            removes_acknowledged: set(removes_acked),
        }
    }

    #[test]
    fn a_set_holding_every_acknowledged_add_never_removed_passes_whatever_happened_to_the_rest() {
        // c0-1 kept; c0-2 acknowledged then removed (gone); c0-3 removed
        // (remove not acknowledged) but still there; c1-1 indeterminate,
        // absent.
        let histories =
            [orset("k0", &["c0-1", "c0-2", "c0-3", "c1-1"], &["c0-1", "c0-2", "c0-3"], &["c0-2", "c0-3"], &["c0-2"])];
        let report = check_orsets(&histories, &[set(&["c0-1", "c0-3"])]);
        assert!(report.passed(), "{report:?}");
        assert_eq!((report.kept, report.acknowledged_then_removed, report.removed_but_present), (1, 2, 0));
        assert_eq!(
            report.counts(),
            "set: adds attempted=4 acknowledged=3 (kept 1, removed since 2) lost=0 unexpected=0 removes=2 \
             (acknowledged 1, element still present 0)"
        );
    }

    #[test]
    fn an_acknowledged_add_missing_from_the_set_without_any_remove_is_lost_and_fails_the_run() {
        let histories = [orset("k0", &["c0-1", "c0-2"], &["c0-1", "c0-2"], &[], &[])];
        let report = check_orsets(&histories, &[set(&["c0-1"])]);
        assert!(!report.passed());
        assert_eq!(report.lost, vec![("k0".to_string(), "c0-2".to_string())]);
        assert!(report.examples(5).contains("k0:c0-2"));
    }

    #[test]
    fn an_element_no_client_added_to_the_set_is_unexpected_and_fails_the_run() {
        let histories = [orset("k0", &["c0-1"], &["c0-1"], &[], &[]), orset("k1", &["c1-1"], &[], &[], &[])];
        let report = check_orsets(&histories, &[set(&["c0-1", "c1-1"]), set(&[])]);
        assert!(!report.passed());
        assert_eq!(report.unexpected, vec![("k0".to_string(), "c1-1".to_string())]);
    }

    #[test]
    fn an_acknowledged_remove_whose_element_survived_is_counted_not_failed() {
        let histories = [orset("k0", &["c0-1"], &["c0-1"], &["c0-1"], &["c0-1"])];
        let report = check_orsets(&histories, &[set(&["c0-1"])]);
        assert!(report.passed());
        assert_eq!(report.removed_but_present, 1);
    }

    #[test]
    fn data_type_answers_parse_and_anything_else_is_refused() {
        assert_eq!(parse_counter(200, br#"{"type":"counter","value":42}"#), Ok(42));
        assert_eq!(parse_counter(404, br#"{"error":"not found"}"#), Ok(0));
        assert!(parse_counter(200, br#"{"type":"set","value":[],"context":"x"}"#).is_err());
        assert!(parse_counter(503, b"unavailable").is_err());
        let (elements, context) =
            parse_orset(200, br#"{"type":"set","value":["c0-1","c1-2"],"context":"AwAD"}"#).unwrap();
        assert_eq!((elements, context.as_deref()), (set(&["c0-1", "c1-2"]), Some("AwAD")));
        assert_eq!(parse_orset(404, b""), Ok((BTreeSet::new(), None)));
        assert!(parse_orset(200, br#"{"type":"set","value":[1],"context":"x"}"#).is_err());
        assert!(parse_orset(200, br#"{"type":"counter","value":1}"#).is_err());
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
