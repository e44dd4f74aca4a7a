//! Membership between real node internals in one process: nodes built by
//! the production `assemble` over memory engines, serving the real RPC over
//! loopback TCP, with gossip rounds driven by the test (the scheduler is
//! off), so that each step is explicit. What it proves: a join through one
//! node reaches every node by gossip rounds alone; what a node learned
//! survives its restart (it is persisted before it is used); a node of
//! another cluster is refused and never merged; the persisted state wins
//! over a different static member list, and a different partition count
//! refuses to start; a seed whose bucket props are unreadable refuses joins.

use std::sync::Arc;

use bytes::Bytes;
use dynamo_core::membership::{Announcement, MemberStatus};
use dynamo_core::messages::{Request, Response};
use dynamo_core::ring::NodeId;
use dynamo_core::version::ActorId;
use dynamo_node::clock::SystemClock;
use dynamo_node::config::{EngineKind, MemberSpec, NodeConfig, Settings};
use dynamo_node::membership::{STATE_KEY, StartupError, startup_state};
use dynamo_node::server::{NodeParts, ServerError, assemble};
use dynamo_rpc::{ClusterSecret, OsNonce, RpcClient, RpcConfig, TcpRpcListener, TcpTransport};
use dynamo_storage::{MemoryEngine, Namespace, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const SECRET: &str = "membership-test-secret-0123";
const Q: u32 = 16;

/// One in-process node: its parts and the task serving its RPC.
struct Node {
    parts: NodeParts,
    engine: MemoryEngine,
    config: NodeConfig,
    rpc: JoinHandle<()>,
}

impl Node {
    /// Assembles a node over `engine` and serves its RPC on `listener`.
    fn start(config: NodeConfig, engine: MemoryEngine, listener: TcpListener, actor: u64) -> Node {
        let parts = assemble_on(&config, &engine, actor).expect("assemble");
        let rpc = tokio::spawn(dynamo_rpc::serve(
            TcpRpcListener::from(listener),
            parts.rpc_config.clone(),
            parts.handler.clone(),
            std::future::pending::<()>(),
        ));
        Node { parts, engine, config, rpc }
    }

    fn id(&self) -> NodeId {
        NodeId::new(self.config.node_id.clone())
    }

    fn status_of(&self, node: &str) -> Option<MemberStatus> {
        let view = self.parts.membership.cluster().view();
        view.state().member(&NodeId::new(node)).map(|member| member.status)
    }

    /// Stops serving and drops everything but the engine (a restart).
    fn stop(self) -> (NodeConfig, MemoryEngine) {
        self.rpc.abort();
        self.parts.store.close().expect("close");
        (self.config, self.engine)
    }
}

fn assemble_on(config: &NodeConfig, engine: &MemoryEngine, actor: u64) -> Result<NodeParts, ServerError> {
    let store = Store::memory(engine.clone());
    assemble(config, store, Arc::new(SystemClock), TcpTransport::default(), Arc::new(OsNonce), ActorId(actor))
}

/// Settings of node `id` at `rpc`, with `members` (empty: alone).
fn config(id: &str, rpc: &str, members: &[(&str, &str)]) -> NodeConfig {
    let members: Vec<MemberSpec> = members
        .iter()
        .map(|(id, addr)| MemberSpec { id: id.to_string(), rpc_addr: addr.to_string(), capacity: None, zone: None })
        .collect();
    Settings {
        node_id: Some(id.to_string()),
        rpc_addr: Some(rpc.parse().expect("addr")),
        members: (!members.is_empty()).then_some(members),
        cluster_secret: Some(SECRET.to_string()),
        engine: Some(EngineKind::Memory),
        partitions: Some(Q),
        gossip_interval_ms: Some(0),
        anti_entropy_interval_ms: Some(0),
        request_timeout_ms: Some(2_000),
        ..Settings::default()
    }
    .resolve()
    .expect("valid settings")
}

async fn listeners(count: usize) -> Vec<(TcpListener, String)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        out.push((listener, addr));
    }
    out
}

/// A static cluster of `size` nodes, node0.., ready.
async fn static_cluster(size: usize) -> Vec<Node> {
    let bound = listeners(size).await;
    let names: Vec<String> = (0..size).map(|index| format!("node{index}")).collect();
    let addrs: Vec<String> = bound.iter().map(|(_, addr)| addr.clone()).collect();
    let members: Vec<(&str, &str)> =
        names.iter().zip(&addrs).map(|(name, addr)| (name.as_str(), addr.as_str())).collect();
    bound
        .into_iter()
        .enumerate()
        .map(|(index, (listener, addr))| {
            Node::start(config(&names[index], &addr, &members), MemoryEngine::new(), listener, index as u64 + 1)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_reaches_every_node_by_gossip_rounds_and_survives_a_restart() {
    let mut nodes = static_cluster(4).await;
    let (listener, addr) = listeners(1).await.pop().expect("one");
    let joiner = Node::start(config("node9", &addr, &[]), MemoryEngine::new(), listener, 99);
    let seed = nodes[0].config.rpc_addr.to_string();
    let view = joiner.parts.membership.join(&seed).await.expect("join");
    assert_eq!(view.state().member(&joiner.id()).map(|member| member.status), Some(MemberStatus::Joining));
    assert_eq!(view.ring().nodes().count(), 4, "the joiner owns nothing");
    nodes.push(joiner);

    // Until every node holds the same state (the join, and each node's
    // own record with its HTTP address, which only it announced).
    let digests = |nodes: &[Node]| -> Vec<_> {
        nodes.iter().map(|node| node.parts.membership.cluster().view().digest()).collect()
    };
    let mut rounds = 0;
    while !digests(&nodes).windows(2).all(|pair| pair[0] == pair[1]) {
        rounds += 1;
        assert!(rounds <= 30, "states still differ after 30 rounds");
        for node in &nodes {
            node.parts.gossip.round().await;
        }
    }
    println!("all five nodes hold the same state after {rounds} gossip rounds");
    assert!(nodes.iter().all(|node| node.status_of("node9") == Some(MemberStatus::Joining)));
    let digests = digests(&nodes);
    let stats = nodes[3].parts.gossip.stats();
    assert!(stats.exchanges >= 1 && stats.failed == 0, "{stats:?}");

    // node3 learned node9 by gossip; after a restart it still knows it.
    let node3 = nodes.remove(3);
    let (config, engine) = node3.stop();
    let restarted = assemble_on(&config, &engine, 7).expect("restart");
    let view = restarted.membership.cluster().view();
    assert_eq!(view.state().member(&NodeId::new("node9")).map(|member| member.status), Some(MemberStatus::Joining));
    assert_eq!(view.state().digest(), digests[0], "the same state as before the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_and_never_merged() {
    let nodes = static_cluster(2).await;
    let before = nodes[0].parts.membership.cluster().view().digest();
    // Configured with another member list that names node0 (so node0 is
    // one of its seeds): another cluster.
    let (listener, addr) = listeners(1).await.pop().expect("one");
    let node0 = nodes[0].config.rpc_addr.to_string();
    let stray =
        Node::start(config("stray", &addr, &[("stray", &addr), ("node0", &node0)]), MemoryEngine::new(), listener, 50);
    for _ in 0..8 {
        stray.parts.gossip.round().await;
    }
    let stats = stray.parts.gossip.stats();
    assert!(stats.failed >= 1, "{stats:?}");
    assert!(stats.last_failure.as_deref().is_some_and(|failure| failure.contains("another cluster")), "{stats:?}");
    assert_eq!(nodes[0].parts.membership.cluster().view().digest(), before, "node0 merged nothing");
    assert!(nodes[0].status_of("stray").is_none());
}

#[tokio::test]
async fn the_persisted_state_wins_over_the_configuration_and_another_q_refuses_to_start() {
    let engine = MemoryEngine::new();
    let alone = config("a", "127.0.0.1:1", &[]);
    let parts = assemble_on(&alone, &engine, 1).expect("first start");
    parts.store.close().expect("close");

    // Restarted with a member list: the persisted cluster (of one) wins.
    let listed = config("a", "127.0.0.1:1", &[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
    let store = Store::memory(engine.clone());
    let startup = startup_state(&listed, &store).expect("startup");
    assert!(startup.persisted && !startup.changed);
    assert_eq!(startup.state.members().count(), 1);

    // Another partition count would change every key's partition.
    let other_q = NodeConfig { partitions: Q * 2, ..alone.clone() };
    let error = startup_state(&other_q, &store).err().expect("refused");
    assert!(matches!(error, StartupError::PartitionMismatch { persisted: Q, configured } if configured == Q * 2));
    assert!(error.to_string().contains("--partitions 16"), "{error}");

    // A new HTTP address is announced at the next record version.
    let moved = NodeConfig { http_addr: "127.0.0.1:18999".parse().expect("addr"), ..alone.clone() };
    let startup = startup_state(&moved, &store).expect("startup");
    let record = startup.state.member(&NodeId::new("a")).expect("record").clone();
    assert!(startup.changed);
    assert_eq!((record.http_addr.as_deref(), record.version), (Some("127.0.0.1:18999"), 3));

    // A corrupt state is not guessed at.
    store.put(Namespace::Meta, STATE_KEY, b"\x01garbage", dynamo_storage::Durability::Durable).await.expect("put");
    let error = startup_state(&alone, &store).err().expect("refused");
    assert!(error.to_string().contains("unreadable"), "{error}");
}

/// Asks `seed` over RPC, authenticated as `authenticated_as`, to admit
/// a node named `id`; returns the seed's answer.
async fn ask_to_join(seed: &Node, authenticated_as: &str, id: &str) -> Response {
    let secret = ClusterSecret::new(SECRET.as_bytes().to_vec()).expect("secret");
    let config = RpcConfig::new(authenticated_as.to_string(), secret, Arc::new(OsNonce)).expect("config");
    let client = RpcClient::new(TcpTransport::default(), config);
    let node = Announcement {
        id: NodeId::new(id),
        rpc_addr: "127.0.0.1:1".to_string(),
        http_addr: None,
        capacity: 1,
        zone: None,
    };
    let request = Request::Join { node, partitions: Q };
    let addr = seed.config.rpc_addr.to_string();
    let reply = client
        .call(&addr, request.method(), Bytes::from(request.encode()), std::time::Duration::from_secs(2))
        .await
        .expect("the call itself succeeds");
    Response::decode(&reply).expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_under_another_name_than_the_authenticated_one_is_refused() {
    let nodes = static_cluster(1).await;
    match ask_to_join(&nodes[0], "mallory", "node7").await {
        Response::Failed { reason } => assert!(reason.contains("authenticated as mallory"), "{reason}"),
        other => panic!("admitted: {other:?}"),
    }
    assert!(nodes[0].status_of("node7").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_refused_while_the_seeds_bucket_props_are_unreadable() {
    use dynamo_core::props::{BucketProps, ConflictMode};
    let nodes = static_cluster(1).await;
    let props = BucketProps { n: 5, r: 3, w: 3, dw: 0, conflict: ConflictMode::Siblings, ..BucketProps::default() };
    nodes[0].parts.services.buckets.apply("wide", props, 1).await.expect("props");
    // Bit rot in the stored props: the joiner would get none and use n = 3.
    dynamo_storage::record::damage(&nodes[0].engine, Namespace::Meta, b"bucket-props/wide").expect("damage");
    match ask_to_join(&nodes[0], "node7", "node7").await {
        Response::Failed { reason } => {
            assert!(
                reason.contains("props of bucket wide are unreadable") && reason.contains("every field"),
                "{reason}"
            )
        }
        other => panic!("admitted: {other:?}"),
    }
    assert!(nodes[0].status_of("node7").is_none());
}

/// A source on an older ring than the transfer's refuses to serve a copy
/// (it would keep coordinating writes by the old ring alone after its
/// copy was taken); at the transfer's epoch it serves pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_behind_the_transfers_epoch_refuses_to_serve_a_copy() {
    use dynamo_rpc::Handler;
    let nodes = static_cluster(2).await;
    let handler = nodes[0].parts.handler.clone();
    let page = |epoch: u64| Request::TransferPage { partition: 3, epoch, after: None };
    let ask = |request: Request| {
        let handler = handler.clone();
        async move {
            let answer = handler.handle("node1", request.method(), Bytes::from(request.encode())).await;
            Response::decode(&answer.expect("answered")).expect("decodes")
        }
    };
    match ask(page(2)).await {
        Response::Failed { reason } => assert!(reason.contains("behind the transfer's epoch 2"), "{reason}"),
        other => panic!("served a copy of epoch 2 at epoch 1: {other:?}"),
    }
    match ask(page(1)).await {
        Response::TransferPage { entries, more } => assert!(entries.is_empty() && !more),
        other => panic!("{other:?}"),
    }
}
