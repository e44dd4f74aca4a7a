//! Anti-entropy between real node internals (memory engines, the real
//! coordinator, replica, RPC handler and message codec), with a `Peers` that
//! hands each request's encoded bytes straight to the other node's handler
//! and counts every byte both ways. What it proves: an exchange sends only a
//! few KiB to find one differing key among 100,000, repairs exactly the keys
//! that differ, in both directions, by merging (siblings survive), never
//! copies a key to a node outside its preference list, and replaces a
//! corrupt record with a good copy (anti-entropy, read repair, or a write);
//! and that a partition transfer and tombstone collection go on past
//! corrupt records.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use dynamo_core::codec::encode_object;
use dynamo_core::failure_detector::LivenessPolicy;
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::merkle::ObjectDigest;
use dynamo_core::messages::{Request, Response};
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::{BucketProps, ConflictMode};
use dynamo_core::ring::NodeId;
use dynamo_core::version::{ActorId, VersionVector};
use dynamo_node::anti_entropy::{AntiEntropy, AntiEntropyConfig, ExchangeReport};
use dynamo_node::buckets::BucketRegistry;
use dynamo_node::clock::SystemClock;
use dynamo_node::cluster::Cluster;
use dynamo_node::config::{EngineKind, MemberSpec, NodeConfig, Settings};
use dynamo_node::coordinator::Coordinator;
use dynamo_node::failure_detector::FailureDetector;
use dynamo_node::handler::NodeHandler;
use dynamo_node::hints::HintStore;
use dynamo_node::merkle_index::MerkleIndex;
use dynamo_node::peers::{PeerFuture, Peers};
use dynamo_node::replica::{Replica, WriteStamp};
use dynamo_node::services::NodeServices;
use dynamo_storage::{Durability, MemoryEngine, Namespace, Store};

/// Two partitions (a ring needs one per node); both nodes replicate both
/// (n = 2), and the tests put their keys in partition 0, the one they
/// exchange.
const Q: u32 = 2;
/// The partition the tests exchange.
const PARTITION: u32 = 0;

/// Calls the other node's RPC handler in-process, counting the encoded
/// request and response bytes (what travels inside RPC frames).
#[derive(Default)]
struct DirectPeers {
    handlers: OnceLock<BTreeMap<NodeId, Arc<NodeHandler>>>,
    bytes: AtomicU64,
}

impl Peers for DirectPeers {
    fn call<'a>(&'a self, node: &'a NodeId, request: Request, _timeout: Duration) -> PeerFuture<'a> {
        Box::pin(async move {
            let handler = self.handlers.get().and_then(|handlers| handlers.get(node)).ok_or("unknown node")?;
            let body = request.encode();
            self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            let reply =
                dynamo_rpc::Handler::handle(handler.as_ref(), "test", request.method(), Bytes::from(body)).await?;
            self.bytes.fetch_add(reply.len() as u64, Ordering::Relaxed);
            Response::decode(&reply).map_err(|error| error.to_string())
        })
    }
}

struct TestNode {
    services: NodeServices,
    coordinator: Arc<Coordinator>,
    anti_entropy: Arc<AntiEntropy>,
}

impl TestNode {
    fn replica(&self) -> &Replica {
        &self.services.replica
    }

    fn state(&self, key: &ObjectKey) -> VersionedObject {
        self.replica().read(key).expect("read")
    }

    fn root(&self) -> dynamo_core::merkle::NodeHash {
        self.replica().index().hashes(PARTITION, 0, &[0]).expect("root")[0]
    }

    async fn exchange(&self) -> ExchangeReport {
        let mut reports = self.anti_entropy.trigger(Some(PARTITION)).await.expect("trigger");
        assert_eq!(reports.len(), 1);
        reports.remove(0)
    }
}

fn config(id: &str) -> NodeConfig {
    let members = ["a", "b"]
        .iter()
        .map(|id| MemberSpec { id: id.to_string(), rpc_addr: format!("{id}:1"), capacity: None, zone: None })
        .collect();
    Settings {
        node_id: Some(id.to_string()),
        members: Some(members),
        cluster_secret: Some("0123456789abcdef".to_string()),
        engine: Some(EngineKind::Memory),
        partitions: Some(Q),
        default_n: Some(2),
        default_r: Some(1),
        default_w: Some(1),
        anti_entropy_interval_ms: Some(0),
        ..Settings::default()
    }
    .resolve()
    .expect("valid settings")
}

/// Two nodes over `stores` (node a, node b), each with its index built by
/// the start-up scan, sharing one metered `DirectPeers`.
fn cluster(stores: [Store; 2]) -> (TestNode, TestNode, Arc<DirectPeers>) {
    let peers = Arc::new(DirectPeers::default());
    let [a, b] = stores;
    let nodes = [("a", a, 1), ("b", b, 2)].map(|(id, store, actor)| {
        let config = config(id);
        let (index, _) = MerkleIndex::build(store.clone(), Q).expect("index");
        let clock = Arc::new(SystemClock);
        let replica = Arc::new(Replica::new(store.clone(), Q, ActorId(actor), clock.clone(), Arc::new(index)));
        let store_for_hints = store.clone();
        let buckets = Arc::new(BucketRegistry::new(store, config.default_props));
        let cluster = Cluster::from_config(&config).expect("ring");
        let others =
            cluster.ring().nodes().map(|spec| spec.id.clone()).filter(|node| node != cluster.local()).collect();
        let detector = Arc::new(FailureDetector::new(LivenessPolicy::default(), others));
        let hints = Arc::new(HintStore::open(store_for_hints, Q, 1 << 20).expect("hint store"));
        let background = Arc::default();
        let services = NodeServices { replica, cluster, peers: peers.clone(), detector, buckets, hints, background };
        let coordinator = Arc::new(Coordinator::new(services.clone(), Duration::from_secs(5)));
        let settings = AntiEntropyConfig {
            interval: Duration::ZERO,
            max_keys_per_sec: 1_000_000,
            call_timeout: Duration::from_secs(5),
        };
        let anti_entropy = Arc::new(AntiEntropy::new(services.clone(), clock, settings));
        TestNode { services, coordinator, anti_entropy }
    });
    let handlers = nodes
        .iter()
        .map(|node| {
            let handler = NodeHandler::new(node.services.clone(), node.coordinator.clone());
            (node.services.cluster.local().clone(), Arc::new(handler))
        })
        .collect();
    assert!(peers.handlers.set(handlers).is_ok());
    let [a, b] = nodes;
    (a, b, peers)
}

/// The `nth` key of `bucket` that falls in [`PARTITION`].
fn key(bucket: &str, nth: u32) -> ObjectKey {
    keys(bucket).nth(nth as usize).expect("endless")
}

/// The keys of `bucket` that fall in [`PARTITION`], in a fixed order.
fn keys(bucket: &str) -> impl Iterator<Item = ObjectKey> + '_ {
    (0u32..)
        .map(move |index| ObjectKey::new(bucket, format!("key-{index:07}").as_bytes()).expect("valid key"))
        .filter(|key| key.partition(Q) == PARTITION)
}

fn value(text: &str) -> Payload {
    Payload::Value { data: Bytes::from(text.to_string()), content_type: None, expires_ms: None }
}

/// The first `count` keys of bucket `b` in [`PARTITION`], with identical
/// objects in both stores, written below the replica (as if both nodes had
/// received every write), so the indexes are built from storage at
/// start-up.
fn identical_stores(count: usize) -> [Store; 2] {
    let stores = [Store::memory(MemoryEngine::new()), Store::memory(MemoryEngine::new())];
    for (index, key) in keys("b").take(count).enumerate() {
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(7), Hlc(1), value(&format!("v{index}")), ConflictMode::Siblings);
        let encoded = encode_object(&object);
        for store in &stores {
            store.put_buffered(Namespace::Objects, &key.storage_key(Q), &encoded).expect("put");
        }
    }
    stores
}

async fn write(node: &TestNode, key: &ObjectKey, text: &str) {
    let context = node.state(key).context().clone();
    node.replica()
        .coordinate_write(
            key,
            &context,
            WriteStamp::After(Hlc(0)),
            value(text),
            ConflictMode::Siblings,
            Durability::Buffered,
        )
        .await
        .expect("write");
}

#[tokio::test]
async fn one_differing_key_among_100000_costs_a_few_kib_and_is_the_only_key_repaired() {
    let (a, b, peers) = cluster(identical_stores(100_000));
    assert_eq!(a.root(), b.root(), "identical stores build identical trees");
    let changed = key("b", 54_321);
    assert_eq!(a.replica().index().keys(), 100_000, "all in the exchanged partition");
    write(&a, &changed, "newer").await;
    assert_ne!(a.root(), b.root());

    let report = a.exchange().await;

    let bytes = peers.bytes.load(Ordering::Relaxed);
    println!(
        "one differing key among 100,000: {bytes} bytes ({} sent, {} received), {} keys compared",
        report.bytes_sent, report.bytes_received, report.keys_compared
    );
    assert_eq!(report.bytes_sent + report.bytes_received, bytes, "the report counts what crossed the wire");
    assert!(bytes < 16 * 1024, "an exchange for one differing key sent {bytes} bytes");
    assert_eq!((report.segments_differing, report.keys_differing, report.keys_repaired), (1, 1, 1));
    assert!(report.keys_compared < 300, "only one leaf's keys were listed: {}", report.keys_compared);
    assert_eq!((report.errors, report.complete), (0, true), "{:?}", report.error_messages);
    assert_eq!(b.state(&changed), a.state(&changed));
    assert_eq!(a.root(), b.root(), "the trees agree after the exchange");

    let again = a.exchange().await;
    assert_eq!((again.keys_differing, again.keys_repaired), (0, 0));
    assert!(again.bytes_sent + again.bytes_received < 100, "equal trees cost one root each way");
}

#[tokio::test]
async fn refilling_an_empty_replica_costs_its_listing_and_objects_and_little_more() {
    const KEYS: usize = 10_000;
    let [full, _] = identical_stores(KEYS);
    let (empty, full, peers) = cluster([Store::memory(MemoryEngine::new()), full]);
    assert_eq!(empty.replica().index().keys(), 0);

    let report = empty.exchange().await;

    let bytes = peers.bytes.load(Ordering::Relaxed);
    let per_key = bytes / KEYS as u64;
    println!("refilling an empty replica of {KEYS} keys: {bytes} bytes, {per_key} bytes per repaired key");
    assert_eq!((report.keys_differing, report.keys_repaired, report.errors), (KEYS as u64, KEYS as u64, 0));
    assert!(report.complete);
    assert_eq!(empty.root(), full.root());
    // Per key: a listing entry (~31 bytes), a Read request (~17) and its
    // answer (an object of ~60 bytes); the trees are shared by 10,000 keys.
    assert!(per_key < 160, "{per_key} bytes per key");
}

#[tokio::test]
async fn an_exchange_repairs_both_ways_and_keeps_concurrent_versions_as_siblings() {
    let (a, b, _) = cluster(identical_stores(2_000));
    let only_on_a = key("b", 2_001);
    let only_on_b = key("b", 2_002);
    let concurrent = key("b", 17);
    write(&a, &only_on_a, "from a").await;
    write(&b, &only_on_b, "from b").await;
    write(&a, &concurrent, "a's version").await;
    write(&b, &concurrent, "b's version").await;

    let report = b.exchange().await;

    assert_eq!((report.keys_differing, report.keys_repaired, report.errors), (3, 3, 0), "{report:?}");
    for key in [&only_on_a, &only_on_b, &concurrent] {
        assert_eq!(a.state(key), b.state(key), "{key:?}");
    }
    let merged = a.state(&concurrent);
    let siblings: Vec<&Payload> = merged.siblings().iter().map(|sibling| &sibling.payload).collect();
    assert_eq!(siblings, [&value("a's version"), &value("b's version")], "a merge, never an overwrite");
    assert_eq!(a.root(), b.root());
    assert_eq!(a.replica().index().mismatches() + b.replica().index().mismatches(), 0);
}

#[tokio::test]
async fn keys_of_a_bucket_with_a_smaller_n_are_never_copied_outside_their_preference_list() {
    let (a, b, _) = cluster(identical_stores(10));
    let props = BucketProps { n: 1, r: 1, w: 1, dw: 0, conflict: ConflictMode::Siblings, ..BucketProps::default() };
    for node in [&a, &b] {
        node.services.buckets.apply("single", props, 1).await.expect("props");
    }
    let key = key("single", 1);
    let owner = a.services.cluster.preference_list(&key, 1)[0].clone();
    let (holder, other) = if owner.as_str() == "a" { (&a, &b) } else { (&b, &a) };
    write(holder, &key, "only here").await;

    let report = holder.exchange().await;

    assert_eq!((report.keys_differing, report.keys_skipped, report.keys_repaired), (1, 1, 0));
    assert!(other.state(&key).is_empty(), "the other node is not a replica of the key");
    assert_eq!(ObjectDigest::of(&other.state(&key)), None);
}

#[tokio::test]
async fn the_scheduler_repairs_on_its_own_and_reports_its_status() {
    let (a, b, _) = cluster(identical_stores(100));
    let changed = key("b", 5);
    write(&b, &changed, "newer").await;
    let scheduled = Arc::new(AntiEntropy::new(
        a.services.clone(),
        Arc::new(SystemClock),
        AntiEntropyConfig {
            interval: Duration::from_millis(10),
            max_keys_per_sec: 100,
            call_timeout: Duration::from_secs(5),
        },
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduled.clone().run(async move {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.state(&changed) != b.state(&changed) {
        assert!(tokio::time::Instant::now() < deadline, "the scheduler never repaired the key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    task.await.expect("the scheduler stops when told");
    let status = scheduled.status();
    assert!(status.enabled);
    assert_eq!(status.indexed_keys, 100);
    assert!(status.totals.keys_repaired >= 1, "{:?}", status.totals);
    let partition = status.partitions.iter().find(|status| status.partition == PARTITION).expect("exchanged");
    assert_eq!(partition.last.peer, "b");
}

/// Flips one bit of `key`'s stored record on `node`, below the replica (as
/// bit rot would), so its checksum no longer matches.
fn corrupt(node: &TestNode, key: &ObjectKey) {
    let engine = node.replica().store().engine().expect("engine");
    dynamo_storage::record::damage(engine.as_ref(), Namespace::Objects, &key.storage_key(Q)).expect("damage");
}

fn assert_unreadable(node: &TestNode, key: &ObjectKey) {
    match node.replica().read(key) {
        Err(error) => assert!(error.is_corruption(), "expected a corruption error, got {error}"),
        Ok(object) => panic!("a corrupt record was served: {object:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_record_once_read_is_replaced_by_the_next_exchange() {
    let (a, b, _) = cluster(identical_stores(100));
    let victim = key("b", 42);
    corrupt(&b, &victim);
    assert_unreadable(&b, &victim);

    let report = a.exchange().await;

    assert_eq!((report.keys_differing, report.keys_repaired, report.errors), (1, 1, 0), "{report:?}");
    assert_eq!(b.state(&victim), a.state(&victim), "b holds a good copy again");
    assert_eq!(a.root(), b.root());
    assert_eq!(a.replica().index().mismatches() + b.replica().index().mismatches(), 0, "no rebuild needed");
}

#[tokio::test]
async fn an_exchange_started_by_the_corrupt_side_repairs_it_too() {
    let (a, b, _) = cluster(identical_stores(100));
    let victim = key("b", 7);
    corrupt(&b, &victim);
    assert_unreadable(&b, &victim);

    let report = b.exchange().await;

    assert_eq!((report.keys_repaired, report.errors), (1, 0), "{report:?}");
    assert_eq!(b.state(&victim), a.state(&victim));
    assert_eq!(a.root(), b.root());
}

#[tokio::test]
async fn a_write_coordinated_by_a_replica_whose_record_is_corrupt_replaces_the_record() {
    let (a, _b, _) = cluster(identical_stores(10));
    let victim = key("b", 3);
    corrupt(&a, &victim);
    let written = a
        .replica()
        .coordinate_write(
            &victim,
            &VersionVector::new(),
            WriteStamp::After(Hlc(0)),
            value("after the corruption"),
            ConflictMode::Siblings,
            Durability::Buffered,
        )
        .await
        .expect("the write is not refused");
    assert_eq!(a.state(&victim), written);
    let payloads: Vec<&Payload> = written.siblings().iter().map(|sibling| &sibling.payload).collect();
    assert_eq!(payloads, [&value("after the corruption")]);
    assert_eq!(a.replica().index().mismatches(), 0);
}

#[tokio::test]
async fn read_repair_replaces_an_unreadable_replica_with_the_merged_result() {
    let (a, b, _) = cluster(identical_stores(10));
    let victim = key("b", 5);
    corrupt(&b, &victim);
    // r = 1 (the test cluster's default): a's own copy answers the client;
    // b's answer, Unreadable, comes in for read repair.
    let read = a.coordinator.get(&victim, &Default::default()).await.expect("read through a");
    assert_eq!(read, a.state(&victim));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.replica().read(&victim).ok().as_ref() != Some(&read) {
        assert!(tokio::time::Instant::now() < deadline, "read repair never replaced b's corrupt record");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.root(), b.root());
}

#[tokio::test]
async fn a_partition_transfer_leaves_corrupt_records_out_and_pages_on_past_them() {
    let (a, _b, _) = cluster(identical_stores(600));
    // One inside the first page, one where the first page's scan ends.
    let rotten = [key("b", 10), key("b", 512)];
    for victim in &rotten {
        corrupt(&a, victim);
    }
    let mut after = None;
    let mut copied = Vec::new();
    let mut pages = 0;
    loop {
        let (entries, more) = a.replica().transfer_page(PARTITION, after.as_ref()).expect("a page, not an error");
        pages += 1;
        after = entries.last().map(|(key, _)| key.clone()).or(after);
        copied.extend(entries.into_iter().map(|(key, _)| key));
        if !more {
            break;
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(copied.len(), 598, "every readable record, each once");
    assert!(rotten.iter().all(|victim| !copied.contains(victim)));
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn a_corrupt_tombstone_index_entry_is_rewritten_and_every_tombstone_is_collected() {
    use dynamo_node::tombstone_collector::TombstoneCollector;
    let (a, b, _) = cluster(identical_stores(10));
    let deleted = [key("b", 1), key("b", 2)];
    for key in &deleted {
        let mut tombstone = a.state(key);
        let context = tombstone.context().clone();
        tombstone.put(&context, ActorId(9), Hlc(2), Payload::Tombstone, ConflictMode::Siblings);
        for node in [&a, &b] {
            node.replica()
                .merge_write(key, &tombstone, ConflictMode::Siblings, Durability::Buffered)
                .await
                .expect("delete");
        }
    }
    // Bit rot in a's index entry of the first tombstone.
    let engine = a.replica().store().engine().expect("engine");
    let mut entry_key = b"tomb/".to_vec();
    entry_key.extend_from_slice(&deleted[0].storage_key(Q));
    dynamo_storage::record::damage(engine.as_ref(), Namespace::Meta, &entry_key).expect("the delete was indexed");

    let collector = TombstoneCollector::new(a.services.clone(), Arc::new(SystemClock), Duration::ZERO);
    let round = collector.round().await;

    assert_eq!(round.reaped, 1, "{round:?}");
    assert!(a.state(&deleted[1]).is_empty() && b.state(&deleted[1]).is_empty(), "collected on both replicas");
    // The bad entry was rewritten from the stored tombstone, so the next
    // round collects that one too.
    let round = collector.round().await;
    assert_eq!(round.reaped, 1, "{round:?}");
    assert!(a.state(&deleted[0]).is_empty() && b.state(&deleted[0]).is_empty());
    assert!(engine.get(Namespace::Meta, &entry_key).expect("get").is_none(), "its entry went with it");
}

#[tokio::test]
async fn purging_a_partition_removes_its_corrupt_records_too() {
    let (a, _b, _) = cluster(identical_stores(10));
    corrupt(&a, &key("b", 3));
    assert_eq!(a.replica().purge_partition(PARTITION, 100).expect("purge"), 10);
    assert_eq!(a.replica().purge_partition(PARTITION, 100).expect("purge"), 0, "nothing left");
    assert_eq!(a.replica().index().keys(), 0);
}

#[tokio::test]
async fn a_write_that_would_exceed_the_storage_format_is_refused_and_the_siblings_stay() {
    let (a, _b, _) = cluster(identical_stores(0));
    let crowded = key("b", 1);
    let mut object = VersionedObject::new();
    for actor in 0..dynamo_core::codec::MAX_SIBLINGS as u64 {
        object.put(&VersionVector::new(), ActorId(1_000 + actor), Hlc(1), value("v"), ConflictMode::Siblings);
    }
    a.replica()
        .merge_write(&crowded, &object, ConflictMode::Siblings, Durability::Buffered)
        .await
        .expect("at the bound");
    let refused = a
        .replica()
        .coordinate_write(
            &crowded,
            &VersionVector::new(),
            WriteStamp::After(Hlc(0)),
            value("one too many"),
            ConflictMode::Siblings,
            Durability::Buffered,
        )
        .await
        .expect_err("a sibling past the bound would make the record undecodable");
    assert!(refused.to_string().contains("resolve its siblings"), "{refused}");
    assert_eq!(a.state(&crowded), object, "nothing was written");
}

#[tokio::test]
async fn a_record_that_passes_its_checksum_but_does_not_decode_is_never_overwritten() {
    let (a, _b, _) = cluster(identical_stores(3));
    let strange = key("b", 1);
    // Framed correctly (the checksum holds), but not an object this build
    // can decode: a newer format, say.
    let store = a.replica().store();
    store.put_buffered(Namespace::Objects, &strange.storage_key(Q), b"\xffa newer format").expect("put");
    let refused = a
        .replica()
        .coordinate_write(
            &strange,
            &VersionVector::new(),
            WriteStamp::After(Hlc(0)),
            value("would drop what it holds"),
            ConflictMode::Siblings,
            Durability::Buffered,
        )
        .await
        .expect_err("refused");
    assert!(refused.is_corruption() && !refused.is_bit_rot(), "{refused}");
    let kept = store.get(Namespace::Objects, &strange.storage_key(Q)).expect("get").expect("still there");
    assert_eq!(kept, b"\xffa newer format");
    assert!(a.replica().transfer_page(PARTITION, None).is_err(), "a transfer does not silently leave it behind");
}

#[tokio::test]
async fn a_transfer_page_goes_on_past_a_run_of_unreadable_records_longer_than_a_scan() {
    let (a, _b, _) = cluster(identical_stores(600));
    for nth in 0..520 {
        corrupt(&a, &key("b", nth));
    }
    let (entries, more) = a.replica().transfer_page(PARTITION, None).expect("a page, not an error");
    let first = entries.first().map(|(key, _)| key.clone());
    assert_eq!((entries.len(), more, first), (80, false, Some(key("b", 520))));
}
