//! The clients: what the cluster is asked to do while faults happen.
//!
//! - **Set clients** share a small keyspace in a `siblings` bucket. Each key
//!   holds a set of numbers (the value is the sorted list, comma
//!   separated). A client reads a key, merges the siblings (set union),
//!   adds one element no one else ever adds, and writes the result back
//!   with the read's context. Sometimes it skips the read and writes
//!   `{element}` alone with no context (a blind put: a concurrent sibling).
//!   Because every write only adds, "an acknowledged write was lost" is
//!   simply "its element is missing at the end".
//! - **LWW clients** each own a few keys of a `lww` bucket and write them
//!   in a causal chain: every put carries the context of the previous
//!   answer, so each write causally supersedes the earlier ones it has
//!   seen (recorded in [`LwwWrite::supersedes`]). Last-write-wins may drop
//!   a *concurrent* write, never one an acknowledged write superseded.
//! - **The checker** waits until faults are over and the cluster has
//!   settled, then reads every key with R=N (read repair brings the replicas
//!   together) until the replicas' own states agree, and snapshots them.
//!
//! Quorum options vary per request (R=1 sometimes, W from 1 to 3, DW 0 or
//! 1), so stale reads, concurrent writes and siblings are common. The
//! data-type clients (counters and sets that merge themselves) are in
//! [`crate::datatypes`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::version::VersionVector;

use crate::datatypes::describe_datatype;
use crate::log::{Log, LwwWrite, SetWrite, SharedLog, now_ms};
use crate::node::SimNode;
use crate::protocol::{SimClient, WriteOptions};
use crate::rng::SplitMix64;

/// Element and LWW value ids are `(client + 1) * ID_BASE + sequence`:
/// unique across clients as long as a client writes fewer than this many
/// times in a run (it writes a few hundred).
pub const ID_BASE: u64 = 1_000_000;

/// The keys of a run.
#[derive(Clone, Debug)]
pub struct Keyspace {
    /// Keys of the siblings bucket, shared by every set client.
    pub set_keys: Vec<ObjectKey>,
    /// Keys of the LWW bucket; client `c` owns `lww_keys_of(c)`.
    pub lww_keys: Vec<ObjectKey>,
    /// LWW keys per LWW client.
    pub lww_keys_per_client: usize,
    /// Keys of the counter bucket, shared by every counter client.
    pub counter_keys: Vec<ObjectKey>,
    /// Keys of the data-type set bucket, shared by every data-type set
    /// client.
    pub orset_keys: Vec<ObjectKey>,
}

/// The workloads' kinds of key, in the order [`Keyspace::all`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A set-valued key of the siblings bucket.
    Set,
    /// A last-write-wins key.
    Lww,
    /// A counter (data type).
    Counter,
    /// A data-type set.
    OrSet,
}

impl KeyKind {
    /// Every kind, in the order of [`Keyspace::all`].
    pub const ALL: [KeyKind; 4] = [KeyKind::Set, KeyKind::Lww, KeyKind::Counter, KeyKind::OrSet];
}

impl Keyspace {
    /// Indexes (into `lww_keys`) of the keys LWW client `client` owns.
    pub fn lww_keys_of(&self, client: usize) -> std::ops::Range<usize> {
        client * self.lww_keys_per_client..(client + 1) * self.lww_keys_per_client
    }

    /// Every key: set keys, LWW keys, counter keys, data-type set keys.
    /// The checker's snapshot and the preference lists follow this order.
    pub fn all(&self) -> Vec<&ObjectKey> {
        KeyKind::ALL.iter().flat_map(|kind| self.of(*kind)).collect()
    }

    /// The keys of one kind.
    pub fn of(&self, kind: KeyKind) -> &[ObjectKey] {
        match kind {
            KeyKind::Set => &self.set_keys,
            KeyKind::Lww => &self.lww_keys,
            KeyKind::Counter => &self.counter_keys,
            KeyKind::OrSet => &self.orset_keys,
        }
    }

    /// Where the keys of `kind` sit in [`Keyspace::all`].
    pub fn range(&self, kind: KeyKind) -> std::ops::Range<usize> {
        let start = match kind {
            KeyKind::Set => 0,
            KeyKind::Lww => self.set_keys.len(),
            KeyKind::Counter => self.set_keys.len() + self.lww_keys.len(),
            KeyKind::OrSet => self.set_keys.len() + self.lww_keys.len() + self.counter_keys.len(),
        };
        start..start + self.of(kind).len()
    }

    /// The kind of key `index` of [`Keyspace::all`], and its index among
    /// the keys of its kind.
    ///
    /// # Panics
    /// If `index` is past the last key.
    pub fn locate(&self, index: usize) -> (KeyKind, usize) {
        let kind = KeyKind::ALL
            .into_iter()
            .find(|kind| self.range(*kind).contains(&index))
            .unwrap_or_else(|| panic!("key index {index} is past the keyspace"));
        (kind, index - self.range(kind).start)
    }

    /// How the trace and the violations name key `index` of
    /// [`Keyspace::all`].
    pub fn name(&self, index: usize) -> String {
        match self.locate(index) {
            (KeyKind::Set, key) => format!("set key k{key}"),
            (KeyKind::Lww, key) => format!("lww key l{key}"),
            (KeyKind::Counter, key) => format!("counter key c{key}"),
            (KeyKind::OrSet, key) => format!("data-type set key s{key}"),
        }
    }
}

/// What every client needs.
pub struct ClientSetup {
    /// Client number (within its kind).
    pub id: usize,
    /// The RPC client. Shared with the harness, which drops it only after
    /// the simulation: dropping a client closes its connections in the
    /// iteration order of a `HashMap` (random), which would make the run
    /// depend on more than its seed.
    pub client: Arc<SimClient>,
    /// Its random stream.
    pub rng: SplitMix64,
    /// Node RPC addresses, by node index.
    pub nodes: Vec<String>,
    /// The keys.
    pub keys: Arc<Keyspace>,
    /// Stop starting operations at this simulated time.
    pub stop_ms: u64,
    /// Longest pause between two operations, in milliseconds.
    pub think_ms_max: u64,
    /// The run's log.
    pub log: SharedLog,
}

/// When clients send their first request, in simulated milliseconds: the
/// nodes bind their listeners during the first few milliseconds, and a
/// call before that fails to connect, a failure no fault caused.
pub const CLIENT_START_MS: u64 = 10;

/// Waits until [`CLIENT_START_MS`] (the first thing every client does).
pub(crate) async fn wait_for_the_cluster() {
    tokio::time::sleep(Duration::from_millis(CLIENT_START_MS.saturating_sub(now_ms()))).await;
}

/// Longest pause between two operations of a set or LWW client, in
/// milliseconds.
pub const THINK_MS_MAX: u64 = 30;

/// Picks `(w, dw)` for a write: mostly W=2, sometimes 1 or 3; DW 0 or 1.
pub(crate) fn write_options(rng: &mut SplitMix64) -> WriteOptions {
    let w = match rng.below(10) {
        0 => 1,
        9 => 3,
        _ => 2,
    };
    WriteOptions { w, dw: u8::from(rng.percent(50)) }
}

/// A set client's loop (see the module docs).
pub async fn set_client(setup: ClientSetup) -> turmoil::Result {
    let ClientSetup { id, client, mut rng, nodes, keys, stop_ms, think_ms_max, log } = setup;
    wait_for_the_cluster().await;
    let mut sequence = 0;
    while now_ms() < stop_ms {
        sequence += 1;
        let element = (id as u64 + 1) * ID_BASE + sequence;
        let key_index = rng.index(keys.set_keys.len());
        let key = &keys.set_keys[key_index];
        let read_node = rng.index(nodes.len());
        let blind = rng.percent(10);
        let r = if rng.percent(20) { Some(1) } else { None };
        let options = write_options(&mut rng);
        let write_node = if rng.percent(70) { read_node } else { rng.index(nodes.len()) };
        let think = Duration::from_millis(rng.between(0, think_ms_max));

        let read = if blind {
            Some((VersionVector::new(), Hlc::default(), BTreeSet::new()))
        } else {
            let outcome = client.get(&nodes[read_node], key, r).await;
            let what = format!("set{id} get k{key_index} via n{read_node} r={r:?}");
            record_set_read(&mut log.lock(), &what, key_index, outcome)
        };
        let Some((context, seen, mut elements)) = read else {
            tokio::time::sleep(think).await;
            continue;
        };
        elements.insert(element);
        let start_ms = now_ms();
        let outcome = client.put(&nodes[write_node], key, &context, seen, encode_set(&elements), options).await;
        let write = SetWrite {
            client: id,
            key: key_index,
            element,
            w: options.w,
            dw: options.dw,
            blind,
            start_ms,
            end_ms: now_ms(),
            acked: outcome.is_ok(),
        };
        record_set_write(&mut log.lock(), write, write_node, outcome.err());
        tokio::time::sleep(think).await;
    }
    Ok(())
}

/// Logs a set client's read; returns its context and elements when it
/// succeeded.
fn record_set_read(
    log: &mut Log,
    what: &str,
    key_index: usize,
    outcome: Result<VersionedObject, String>,
) -> Option<(VersionVector, Hlc, BTreeSet<u64>)> {
    match outcome {
        Ok(object) => {
            log.counters.reads_ok += 1;
            let (elements, bad) = set_elements(&object);
            log.event(now_ms(), format!("{what}: {} siblings, {} elements", object.siblings().len(), elements.len()));
            if let Some(bad) = bad {
                log.violation(now_ms(), format!("set key k{key_index} holds an unreadable value: {bad}"));
            }
            Some((object.context().clone(), object.latest_timestamp(), elements))
        }
        Err(reason) => {
            log.counters.reads_failed += 1;
            log.event(now_ms(), format!("{what} failed: {reason}"));
            None
        }
    }
}

/// Logs a set client's write and adds it to the history.
fn record_set_write(log: &mut Log, write: SetWrite, node: usize, error: Option<String>) {
    if write.acked {
        log.counters.writes_acked += 1;
    } else {
        log.counters.writes_failed += 1;
    }
    log.event(
        write.end_ms,
        format!(
            "set{} put k{} +{} via n{node} w={} dw={} blind={}: {}",
            write.client,
            write.key,
            write.element,
            write.w,
            write.dw,
            write.blind,
            error.as_deref().unwrap_or("ok")
        ),
    );
    log.set_writes.push(write);
}

/// An LWW client's causal chain on one key.
#[derive(Default)]
struct Chain {
    /// The context the next write carries.
    context: VersionVector,
    /// The greatest version timestamp `context` covers.
    seen_timestamp: Hlc,
    /// Writes `context` is known to have seen.
    seen: BTreeSet<u64>,
}

/// An LWW client's loop (see the module docs).
pub async fn lww_client(setup: ClientSetup) -> turmoil::Result {
    let ClientSetup { id, client, mut rng, nodes, keys, stop_ms, think_ms_max, log } = setup;
    let owned: Vec<usize> = keys.lww_keys_of(id).collect();
    let mut chains: BTreeMap<usize, Chain> = owned.iter().map(|&key| (key, Chain::default())).collect();
    // What each of this client's writes superseded, to extend a chain with
    // the causal past of a value it reads back.
    let mut past: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    wait_for_the_cluster().await;
    let mut sequence = 0;
    while now_ms() < stop_ms {
        sequence += 1;
        let value = (id as u64 + 1) * ID_BASE + sequence;
        let key_index = owned[rng.index(owned.len())];
        let key = &keys.lww_keys[key_index];
        let node = rng.index(nodes.len());
        let options = write_options(&mut rng);
        let refresh = rng.percent(50);
        let read_node = rng.index(nodes.len());
        let think = Duration::from_millis(rng.between(0, think_ms_max));
        let Some(chain) = chains.get_mut(&key_index) else { break };

        let start_ms = now_ms();
        let outcome = client
            .put(&nodes[node], key, &chain.context, chain.seen_timestamp, Bytes::from(value.to_string()), options)
            .await;
        let acked = outcome.is_ok();
        {
            let mut log = log.lock();
            log.event(
                now_ms(),
                format!(
                    "lww{id} put l{key_index} ={value} via n{node} w={} dw={}: {}",
                    options.w,
                    options.dw,
                    outcome.as_ref().err().map_or("ok", String::as_str)
                ),
            );
            if acked {
                log.counters.writes_acked += 1;
            } else {
                log.counters.writes_failed += 1;
            }
            log.lww_writes.push(LwwWrite {
                key: key_index,
                id: value,
                supersedes: chain.seen.clone(),
                w: options.w,
                dw: options.dw,
                start_ms,
                acked,
            });
        }
        past.insert(value, chain.seen.clone());
        match outcome {
            Ok((context, timestamp)) => {
                chain.context = context;
                chain.seen_timestamp = chain.seen_timestamp.max(timestamp);
                chain.seen.insert(value);
            }
            Err(_) if refresh => {
                // Catch up with what the cluster has, joining (never
                // replacing) the context: the chain only grows.
                let read = client.get(&nodes[read_node], key, None).await;
                let mut log = log.lock();
                match read {
                    Ok(object) => {
                        log.counters.reads_ok += 1;
                        chain.context.join(object.context());
                        chain.seen_timestamp = chain.seen_timestamp.max(object.latest_timestamp());
                        for sibling in object.siblings() {
                            match value_id(&sibling.payload) {
                                Some(seen) if past.contains_key(&seen) => {
                                    chain.seen.insert(seen);
                                    chain.seen.extend(past[&seen].iter().copied());
                                }
                                _ => log.violation(
                                    now_ms(),
                                    format!("lww key l{key_index} holds a value never written: {:?}", sibling.payload),
                                ),
                            }
                        }
                        log.event(
                            now_ms(),
                            format!("lww{id} get l{key_index} via n{read_node}: {}", describe(&object)),
                        );
                    }
                    Err(reason) => {
                        log.counters.reads_failed += 1;
                        log.event(now_ms(), format!("lww{id} get l{key_index} via n{read_node} failed: {reason}"));
                    }
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(think).await;
    }
    Ok(())
}

/// The elements of every sibling of a set key, and the first value that
/// does not parse (there should be none).
pub fn set_elements(object: &VersionedObject) -> (BTreeSet<u64>, Option<String>) {
    let mut elements = BTreeSet::new();
    let mut bad = None;
    for sibling in object.siblings() {
        let Payload::Value { data, .. } = &sibling.payload else {
            bad.get_or_insert_with(|| "a tombstone".to_string());
            continue;
        };
        match parse_set(data) {
            Some(parsed) => elements.extend(parsed),
            None => {
                bad.get_or_insert_with(|| String::from_utf8_lossy(data).into_owned());
            }
        }
    }
    (elements, bad)
}

/// `1,5,9` → {1, 5, 9}; the empty string is the empty set.
fn parse_set(data: &[u8]) -> Option<BTreeSet<u64>> {
    let text = std::str::from_utf8(data).ok()?;
    if text.is_empty() {
        return Some(BTreeSet::new());
    }
    text.split(',').map(|part| part.parse().ok()).collect()
}

/// The value of a set: its elements, sorted, comma separated.
pub fn encode_set(elements: &BTreeSet<u64>) -> Bytes {
    let parts: Vec<String> = elements.iter().map(u64::to_string).collect();
    Bytes::from(parts.join(","))
}

/// The id an LWW value carries.
pub fn value_id(payload: &Payload) -> Option<u64> {
    match payload {
        Payload::Value { data, .. } => std::str::from_utf8(data).ok()?.parse().ok(),
        Payload::Tombstone | Payload::Datatype(_) => None,
    }
}

/// A short description of an LWW object for the trace: each version's
/// value and timestamp (wall milliseconds and logical counter).
pub fn describe(object: &VersionedObject) -> String {
    let values: Vec<String> = object
        .siblings()
        .iter()
        .map(|sibling| {
            let value = value_id(&sibling.payload).map_or_else(|| "?".to_string(), |id| id.to_string());
            format!("{value}@{}.{}", sibling.timestamp.wall_ms(), sibling.timestamp.logical())
        })
        .collect();
    format!("[{}]", values.join(" "))
}

/// A short description of a set object for the trace.
pub fn describe_set(object: &VersionedObject) -> String {
    let (elements, _) = set_elements(object);
    format!("{} siblings, {} elements", object.siblings().len(), elements.len())
}

/// Reads every key with R=N until all replicas agree, then returns each
/// replica's own state (see [`crate::check::Snapshot`]).
pub struct CheckerSetup {
    /// The RPC client (shared with the harness, see [`ClientSetup::client`]).
    pub client: Arc<SimClient>,
    /// Node RPC addresses.
    pub nodes: Vec<String>,
    /// The simulated nodes (to read each replica's own state).
    pub machines: Vec<Arc<SimNode>>,
    /// The keys.
    pub keys: Arc<Keyspace>,
    /// Preference list (node indexes) of every key, in the order of
    /// [`Keyspace::all`].
    pub replicas: Vec<Vec<usize>>,
    /// Whether the ring may have changed during the run: then the checker
    /// first waits for the change to settle everywhere and reads each key
    /// from its replicas under the final ring instead of `replicas`.
    pub ring_may_change: bool,
    /// N.
    pub n: u8,
    /// When to start.
    pub start_ms: u64,
    /// Rounds (of reads, or of waiting) before giving up on convergence.
    pub max_rounds: u32,
    /// How the replicas are brought to agree before the check.
    pub convergence: Convergence,
    /// Where to put the result.
    pub result: Arc<std::sync::Mutex<Option<crate::check::Snapshot>>>,
    /// The run's log.
    pub log: SharedLog,
}

/// Waits (up to `max_rounds` background rounds) until every node runs,
/// knows the same ring and sees no partition copy pending, then returns
/// each key's replicas under that ring. A change that does not settle is a
/// violation; the lists of the first running node's view are returned
/// anyway, so the rest of the check still runs.
async fn settled_replicas(
    machines: &[Arc<SimNode>],
    keys: &[&ObjectKey],
    n: u8,
    max_rounds: u32,
    log: &SharedLog,
) -> Vec<Vec<usize>> {
    let deadline_ms = now_ms() + u64::from(max_rounds) * BACKGROUND_ROUND.as_millis() as u64;
    loop {
        let epochs: Vec<Option<u64>> = machines.iter().map(|machine| machine.epoch()).collect();
        let pending: Vec<Option<usize>> = machines.iter().map(|machine| machine.pending_pulls()).collect();
        let settled = epochs.iter().all(|epoch| epoch.is_some() && *epoch == epochs[0])
            && pending.iter().all(|pulls| *pulls == Some(0));
        if settled || now_ms() >= deadline_ms {
            let mut log = log.lock();
            log.event(now_ms(), format!("ring settled={settled}: epochs {epochs:?}, pending pulls {pending:?}"));
            if !settled {
                log.violations.push(format!(
                    "the ring change did not settle after healing: epochs {epochs:?}, pending pulls {pending:?}"
                ));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lists = |machine: &SimNode| keys.iter().map(|key| machine.preference_list(key, n)).collect::<Option<Vec<_>>>();
    machines.iter().find_map(|machine| lists(machine)).unwrap_or_default()
}

/// What the operator does in a run with a join: once the new node has had
/// time to ask to join, commit the plan through one node after another
/// until a commit goes through, as an operator would retry
/// `dynamo admin commit` during the faults.
pub struct OperatorSetup {
    /// The RPC client.
    pub client: Arc<SimClient>,
    /// Node RPC addresses (the founding nodes).
    pub nodes: Vec<String>,
    /// When to make the first attempt.
    pub start_ms: u64,
    /// When to give up.
    pub stop_ms: u64,
    /// Which node to try first, and the order after.
    pub rng: SplitMix64,
    /// The run's log.
    pub log: SharedLog,
}

/// Pause between two commit attempts.
const COMMIT_RETRY: Duration = Duration::from_millis(500);

/// The operator's loop (see [`OperatorSetup`]).
pub async fn operator(setup: OperatorSetup) -> turmoil::Result {
    let OperatorSetup { client, nodes, start_ms, stop_ms, mut rng, log } = setup;
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now_ms()))).await;
    let mut node = rng.index(nodes.len());
    while now_ms() < stop_ms {
        let outcome = client.commit(&nodes[node]).await;
        log.lock().event(now_ms(), format!("operator commit via n{node}: {outcome:?}"));
        if outcome.is_ok() {
            break;
        }
        node = (node + 1) % nodes.len();
        tokio::time::sleep(COMMIT_RETRY).await;
    }
    Ok(())
}

/// How long the checker waits after a round of reads for their repairs to
/// land.
const REPAIR_SETTLE: Duration = Duration::from_millis(1000);

/// How the checker lets the replicas converge after healing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convergence {
    /// Rounds of R=N reads (read repair helps).
    ReadRepair,
    /// No client reads at all: only hinted handoff and anti-entropy may
    /// repair replicas. Each round waits [`BACKGROUND_ROUND`].
    Background,
}

/// Simulated time of one round of waiting in [`Convergence::Background`].
pub const BACKGROUND_ROUND: Duration = Duration::from_secs(5);

/// The checker's loop.
pub async fn checker(setup: CheckerSetup) -> turmoil::Result {
    let CheckerSetup {
        client,
        nodes,
        machines,
        keys,
        mut replicas,
        ring_may_change,
        n,
        start_ms,
        max_rounds,
        convergence,
        result,
        log,
    } = setup;
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now_ms()))).await;
    let all_keys: Vec<&ObjectKey> = keys.all();
    if ring_may_change {
        replicas = settled_replicas(&machines, &all_keys, n, max_rounds, &log).await;
    }
    let mut snapshot = crate::check::Snapshot::take(&machines, &all_keys, &replicas, 0);
    if convergence == Convergence::Background {
        for round in 1..=max_rounds {
            if snapshot.converged() {
                break;
            }
            tokio::time::sleep(BACKGROUND_ROUND).await;
            snapshot = crate::check::Snapshot::take(&machines, &all_keys, &replicas, round);
        }
        log.lock().event(
            now_ms(),
            format!("check done after {} rounds without reads, converged={}", snapshot.rounds, snapshot.converged()),
        );
        *result.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot);
        return Ok(());
    }
    for round in 1..=max_rounds {
        for (index, key) in all_keys.iter().enumerate() {
            let node = (index + round as usize) % nodes.len();
            let outcome = client.get(&nodes[node], key, Some(n)).await;
            let described = match (outcome, keys.locate(index).0) {
                (Err(reason), _) => format!("failed: {reason}"),
                (Ok(object), KeyKind::Lww) => describe(&object),
                (Ok(object), KeyKind::Set) => describe_set(&object),
                (Ok(object), KeyKind::Counter | KeyKind::OrSet) => describe_datatype(&object),
            };
            log.lock().event(now_ms(), format!("check round {round} get #{index} via n{node}: {described}"));
        }
        tokio::time::sleep(REPAIR_SETTLE).await;
        snapshot = crate::check::Snapshot::take(&machines, &all_keys, &replicas, round);
        if snapshot.converged() {
            break;
        }
    }
    log.lock()
        .event(now_ms(), format!("check done after {} rounds, converged={}", snapshot.rounds, snapshot.converged()));
    *result.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot);
    Ok(())
}
