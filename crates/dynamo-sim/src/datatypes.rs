//! The data-type clients (issue 12): counters and sets whose replicas merge
//! themselves, driven under the same faults as the other workloads.
//!
//! - **Counter clients** share a few keys of a `counter` bucket and send
//!   increments of varying sign and size through any node. An increment's
//!   amount is `±(256·seq + 16·client + r)` with `r` in 1..=15: small and
//!   large, about a third of them negative, and unique in the run. Unique
//!   because a node outside a key's preference list forwards the update to
//!   a replica, and tries the next replica when that call fails, although
//!   the first may have applied it: the handler of every node records each
//!   forwarded update it receives ([`crate::protocol`]), and the amount
//!   says which client update a copy belongs to (the forwarder gives each
//!   an operation id, so it counts once however many replicas received
//!   it). Half the increments carry a client operation id; a client
//!   retries those, up to [`MAX_ATTEMPTS`] times in all, through other
//!   nodes until one attempt is acknowledged, and each must still count
//!   once. Sometimes a client reads a counter instead (reads repair
//!   replicas).
//! - **Set clients** share a few keys of a `set` bucket. Mostly a client
//!   adds an element no one else ever adds. Sometimes it reads the set,
//!   picks one element the read returned and removes it with the read's
//!   causal context (rarely with none: the remove then acts on what the
//!   acting replica holds), at times in one operation with the add of a
//!   new element. An element is thus only ever removed after a read showed
//!   it, so "an acknowledged add was lost" is simply "its element is
//!   missing at the end and no remove of it was ever sent".
//!
//! Every update's outcome goes to the log ([`CounterUpdate`],
//! [`SetChange`]); [`crate::check`] judges the final values against them.
//! The value an update returns is the acting replica's: an acknowledged
//! add's element must be in it, an acknowledged remove's must not.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use dynamo_core::crdt::context::CausalContext;
use dynamo_core::crdt::counter::OperationId;
use dynamo_core::crdt::set::{OrSet, SetUpdate};
use dynamo_core::crdt::value::{DataOp, DataValue};
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::VersionedObject;

use crate::log::{CounterUpdate, Log, SetChange, now_ms};
use crate::protocol::WriteOptions;
use crate::rng::SplitMix64;
use crate::workload::{ClientSetup, ID_BASE, KeyKind, wait_for_the_cluster, write_options};

/// The simulated host every data-type client runs in.
pub const DATATYPE_HOST: &str = "datatypes";

/// Counter clients a run may have: the client number is part of each
/// amount (see the module docs).
pub const MAX_COUNTER_CLIENTS: usize = 16;

/// Chance (percent) that a counter client reads instead of incrementing.
const COUNTER_READ_PERCENT: u64 = 15;
/// Chance (percent) that an increment carries an operation id; a client
/// retries those (through other nodes) until one attempt is acknowledged.
const WITH_ID_PERCENT: u64 = 50;
/// Most attempts of an increment with an id.
const MAX_ATTEMPTS: usize = 3;
/// Chance (percent) that an increment is negative.
const DECREMENT_PERCENT: u64 = 35;
/// Chance (percent) that a set client reads and removes instead of adding.
const REMOVE_PERCENT: u64 = 35;
/// Chance (percent) that a remove carries no context.
const REMOVE_WITHOUT_CONTEXT_PERCENT: u64 = 15;
/// Chance (percent) that a remove also adds a new element, in one
/// operation.
const REMOVE_WITH_ADD_PERCENT: u64 = 25;

/// The amount of counter client `client`'s increment number `seq` (see
/// the module docs): unique in the run.
fn amount(rng: &mut SplitMix64, client: usize, seq: u64) -> i64 {
    let magnitude = 256 * seq as i64 + 16 * client as i64 + rng.between(1, 15) as i64;
    if rng.percent(DECREMENT_PERCENT) { -magnitude } else { magnitude }
}

/// Runs every data-type client of a run (counter or set, by `kind`) as a
/// task of its own, all in one simulated host ([`DATATYPE_HOST`]), each
/// with its own RPC client and random stream. One host, not one each:
/// turmoil polls every host at every tick, and a host per client cost a
/// run about as much as all of that client's requests.
pub async fn datatype_clients(setups: Vec<(KeyKind, ClientSetup)>) -> turmoil::Result {
    let tasks: Vec<_> = setups
        .into_iter()
        .map(|(kind, setup)| match kind {
            KeyKind::Counter => tokio::spawn(counter_client(setup)),
            KeyKind::OrSet => tokio::spawn(orset_client(setup)),
            KeyKind::Set | KeyKind::Lww => panic!("a {kind:?} client is not a data-type client"),
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// A counter client's loop (see the module docs).
async fn counter_client(setup: ClientSetup) {
    let ClientSetup { id, client, mut rng, nodes, keys, stop_ms, think_ms_max, log } = setup;
    assert!(id < MAX_COUNTER_CLIENTS, "at most {MAX_COUNTER_CLIENTS} counter clients keep amounts unique");
    wait_for_the_cluster().await;
    let mut seq = 0;
    while now_ms() < stop_ms {
        seq += 1;
        let key_index = rng.index(keys.counter_keys.len());
        let key = &keys.counter_keys[key_index];
        let node = rng.index(nodes.len());
        let options = write_options(&mut rng);
        let read = rng.percent(COUNTER_READ_PERCENT);
        let r = if rng.percent(30) { Some(1) } else { None };
        let amount = amount(&mut rng, id, seq);
        let think = Duration::from_millis(rng.between(0, think_ms_max));

        if read {
            let outcome = client.get_value(&nodes[node], key, r).await;
            let what = format!("counter{id} get c{key_index} via n{node} r={r:?}");
            record_read(&mut log.lock(), &what, &format!("counter key c{key_index}"), outcome);
        } else {
            let start_ms = now_ms();
            let with_id = rng.percent(WITH_ID_PERCENT);
            let op_id = with_id.then(|| OperationId::from_client(format!("counter{id}-{seq}").as_bytes()));
            let op = DataOp::Increment { amount, id: op_id };
            let mut update = CounterUpdate {
                client: id,
                key: key_index,
                amount,
                node,
                w: options.w,
                dw: options.dw,
                start_ms,
                acked: false,
                with_id,
                attempts: 0,
            };
            let mut via = node;
            loop {
                update.attempts += 1;
                let outcome = client.update(&nodes[via], key, op.clone(), options).await;
                update.acked = outcome.is_ok();
                // No retry once the clients stop: the checker reads from
                // then on (seed 100970: a retry acknowledged after its read).
                let last =
                    !with_id || update.acked || usize::from(update.attempts) >= MAX_ATTEMPTS || now_ms() >= stop_ms;
                record_increment(&mut log.lock(), &update, via, outcome, last);
                if last {
                    break;
                }
                // A retry with the same id, through another node.
                via = (via + 1 + rng.index(nodes.len() - 1)) % nodes.len();
            }
        }
        tokio::time::sleep(think).await;
    }
}

/// Logs a data-type read; returns the value when the read succeeded and
/// the key holds one data-type value (or nothing yet). Anything else a
/// key of a data-type bucket holds is a violation.
fn record_read(
    log: &mut Log,
    what: &str,
    name: &str,
    outcome: Result<Result<Option<DataValue>, String>, String>,
) -> Option<Option<DataValue>> {
    match outcome {
        Ok(Ok(value)) => {
            log.counters.reads_ok += 1;
            log.event(now_ms(), format!("{what}: {}", describe_value(value.as_ref())));
            Some(value)
        }
        Ok(Err(problem)) => {
            log.counters.reads_ok += 1;
            log.violation(now_ms(), format!("{name} holds an unreadable data-type value: {problem}"));
            None
        }
        Err(reason) => {
            log.counters.reads_failed += 1;
            log.event(now_ms(), format!("{what} failed: {reason}"));
            None
        }
    }
}

/// Logs an increment and adds it to the history.
/// Logs one attempt of an increment; the update itself once `last`.
fn record_increment(log: &mut Log, update: &CounterUpdate, via: usize, outcome: Result<DataValue, String>, last: bool) {
    let result = match &outcome {
        Ok(DataValue::Counter(counter)) => format!("ok, value {} at the acting replica", counter.value()),
        Ok(other) => {
            log.violation(now_ms(), format!("an increment of counter key c{} returned {other:?}", update.key));
            "ok?".to_string()
        }
        Err(reason) => reason.clone(),
    };
    log.event(
        now_ms(),
        format!(
            "counter{} increment c{} {:+}{} via n{via} w={} dw={} (attempt {}): {result}",
            update.client,
            update.key,
            update.amount,
            if update.with_id { " with its id" } else { "" },
            update.w,
            update.dw,
            update.attempts
        ),
    );
    if last {
        count_update(log, update.acked);
        log.counter_updates.push(update.clone());
    }
}

fn count_update(log: &mut Log, acked: bool) {
    if acked {
        log.counters.updates_acked += 1;
    } else {
        log.counters.updates_failed += 1;
    }
}

/// One set operation of a client: the element it adds, the one it
/// removes, the context of the read the remove saw it in, and where it
/// goes.
struct SetOp {
    client: usize,
    /// Index of the key among the data-type set keys.
    key: usize,
    /// Node it is sent to.
    node: usize,
    options: WriteOptions,
    add: Option<u64>,
    remove: Option<u64>,
    context: Option<CausalContext>,
    /// When the operation, or the read before its remove, was sent.
    start_ms: u64,
}

impl SetOp {
    fn updates(&self) -> Vec<SetUpdate> {
        let add = self.add.map(|element| SetUpdate::Add(encode_element(element)));
        let remove = self.remove.map(|element| SetUpdate::Remove(encode_element(element)));
        add.into_iter().chain(remove).collect()
    }

    fn describe(&self) -> String {
        let add = self.add.map(|element| format!("+{element}"));
        let remove = self.remove.map(|element| format!("-{element}"));
        let context = if self.remove.is_some() && self.context.is_none() { " (no context)" } else { "" };
        format!("{}{context}", add.into_iter().chain(remove).collect::<Vec<_>>().join(" "))
    }
}

/// A data-type set client's loop (see the module docs).
async fn orset_client(setup: ClientSetup) {
    let ClientSetup { id, client, mut rng, nodes, keys, stop_ms, think_ms_max, log } = setup;
    wait_for_the_cluster().await;
    let mut seq = 0;
    while now_ms() < stop_ms {
        seq += 1;
        let element = (id as u64 + 1) * ID_BASE + seq;
        let key_index = rng.index(keys.orset_keys.len());
        let key = &keys.orset_keys[key_index];
        let read_node = rng.index(nodes.len());
        let write_node = if rng.percent(70) { read_node } else { rng.index(nodes.len()) };
        let options = write_options(&mut rng);
        let remove = rng.percent(REMOVE_PERCENT);
        let r = if rng.percent(20) { Some(1) } else { None };
        let with_context = !rng.percent(REMOVE_WITHOUT_CONTEXT_PERCENT);
        let with_add = rng.percent(REMOVE_WITH_ADD_PERCENT);
        let pick = rng.next_u64();
        let think = Duration::from_millis(rng.between(0, think_ms_max));

        let mut op = SetOp {
            client: id,
            key: key_index,
            node: write_node,
            options,
            add: Some(element),
            remove: None,
            context: None,
            start_ms: now_ms(),
        };
        if remove {
            let outcome = client.get_value(&nodes[read_node], key, r).await;
            let what = format!("orset{id} get s{key_index} via n{read_node} r={r:?}");
            let name = format!("data-type set key s{key_index}");
            let read = record_read(&mut log.lock(), &what, &name, outcome);
            let Some(value) = read else {
                tokio::time::sleep(think).await;
                continue;
            };
            if let Some(DataValue::Set(set)) = value {
                let seen = set_elements(&set, &mut log.lock(), &name);
                if !seen.is_empty() {
                    let victim = *seen.iter().nth((pick % seen.len() as u64) as usize).expect("within the set");
                    op.remove = Some(victim);
                    op.add = with_add.then_some(element);
                    op.context = with_context.then(|| set.context().clone());
                }
            }
        }
        let request = DataOp::Set { updates: op.updates(), context: op.context.clone() };
        let outcome = client.update(&nodes[write_node], key, request, options).await;
        record_set_op(&mut log.lock(), key, &op, outcome);
        tokio::time::sleep(think).await;
    }
}

/// Logs a set operation, checks the acting replica's value it returned,
/// and adds its changes to the history.
fn record_set_op(log: &mut Log, object_key: &ObjectKey, op: &SetOp, outcome: Result<DataValue, String>) {
    let SetOp { client, key, node, options, .. } = *op;
    let acked = outcome.is_ok();
    let name = format!("data-type set key s{key}");
    let result = match &outcome {
        Ok(DataValue::Set(set)) => {
            let elements = set_elements(set, log, &name);
            if let Some(added) = op.add.filter(|element| !elements.contains(element)) {
                log.violation(
                    now_ms(),
                    format!("{name}: the acknowledged add of {added} is not in the value it returned"),
                );
            }
            // A remove drops the dots its context observed; an add applied
            // twice (by a forwarder's retry) left a second dot it may not
            // have observed, which rightly survives (add wins).
            let removed = op.remove.filter(|element| elements.contains(element));
            if let Some(removed) = removed.filter(|element| forwarded_adds(log, object_key, *element) < 2) {
                log.violation(
                    now_ms(),
                    format!("{name}: the acknowledged remove of {removed} is in the value it returned"),
                );
            }
            format!("ok, {} elements at the acting replica", elements.len())
        }
        Ok(other) => {
            log.violation(now_ms(), format!("a set operation on {name} returned {other:?}"));
            "ok?".to_string()
        }
        Err(reason) => reason.clone(),
    };
    count_update(log, acked);
    log.event(
        now_ms(),
        format!(
            "orset{client} update s{key} {} via n{node} w={} dw={}: {result}",
            op.describe(),
            options.w,
            options.dw
        ),
    );
    let change = |element: u64, add: bool| SetChange {
        client,
        key,
        element,
        add,
        with_context: op.context.is_some(),
        w: options.w,
        dw: options.dw,
        start_ms: op.start_ms,
        acked,
    };
    log.set_changes.extend(op.add.map(|element| change(element, true)));
    log.set_changes.extend(op.remove.map(|element| change(element, false)));
}

/// How many replicas received the add of `element` to `key` from a
/// forwarding node (each may have applied it, under a dot of its own).
pub fn forwarded_adds(log: &Log, key: &ObjectKey, element: u64) -> usize {
    let bytes = encode_element(element);
    let adds = |op: &DataOp| match op {
        DataOp::Set { updates, .. } => updates.iter().any(|update| *update == SetUpdate::Add(bytes.clone())),
        DataOp::Increment { .. } | DataOp::Map { .. } => false,
    };
    log.forwarded_updates.iter().filter(|copy| copy.key == *key && adds(&copy.op)).count()
}

/// How many replicas received the increment of `key` by `amount` from a
/// forwarding node.
pub fn forwarded_increments(log: &Log, key: &ObjectKey, amount: i64) -> usize {
    let same = |op: &DataOp| matches!(op, DataOp::Increment { amount: sent, .. } if *sent == amount);
    log.forwarded_updates.iter().filter(|copy| copy.key == *key && same(&copy.op)).count()
}

/// An element's bytes: its decimal digits.
pub fn encode_element(element: u64) -> Bytes {
    Bytes::from(element.to_string())
}

/// The elements of `set`; an element that is not one a client could have
/// written is a violation (logged), and left out.
fn set_elements(set: &OrSet, log: &mut Log, name: &str) -> BTreeSet<u64> {
    let (elements, bad) = parse_elements(set);
    if let Some(bad) = bad {
        log.violation(now_ms(), format!("{name} holds an element no client writes: {bad:?}"));
    }
    elements
}

/// The elements of `set` as numbers, and the first one that does not
/// parse (there should be none).
pub fn parse_elements(set: &OrSet) -> (BTreeSet<u64>, Option<String>) {
    let mut elements = BTreeSet::new();
    let mut bad = None;
    for element in set.elements() {
        match std::str::from_utf8(element).ok().and_then(|text| text.parse().ok()) {
            Some(number) => {
                elements.insert(number);
            }
            None => {
                bad.get_or_insert_with(|| String::from_utf8_lossy(element).into_owned());
            }
        }
    }
    (elements, bad)
}

/// A short description of a data-type value for the trace.
pub fn describe_value(value: Option<&DataValue>) -> String {
    match value {
        None => "no value yet".to_string(),
        Some(DataValue::Counter(counter)) => format!("counter {} ({} actors)", counter.value(), counter.actors()),
        Some(DataValue::Set(set)) => {
            format!("set of {} elements ({} removes deferred)", set.len(), set.deferred_len())
        }
        Some(DataValue::Map(map)) => format!("map of {} fields", map.len()),
    }
}

/// A short description of an object of a data-type bucket for the trace.
pub fn describe_datatype(object: &VersionedObject) -> String {
    match object.datatype_value() {
        Ok(value) => describe_value(value),
        Err(problem) => format!("unreadable: {problem}"),
    }
}
