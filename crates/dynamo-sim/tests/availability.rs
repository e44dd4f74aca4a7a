//! Scripted simulations of availability (SPEC principle 1, "always
//! writeable": a put is accepted whenever W nodes of the preference list
//! are reachable).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::version::VersionVector;
use dynamo_node::cluster::Cluster;
use dynamo_sim::SimOptions;
use dynamo_sim::clock::SIM_EPOCH_MS;
use dynamo_sim::harness::{SET_BUCKET, node_configs, sim_client};
use dynamo_sim::node::{RPC_PORT, SimNode};
use dynamo_sim::protocol::WriteOptions;

#[test]
fn a_put_through_a_non_replica_succeeds_when_one_replica_is_unreachable_from_it() {
    let options = SimOptions::default();
    let configs = node_configs(&options);
    let key = ObjectKey::new(SET_BUCKET, b"k").expect("valid key");
    let cluster = Cluster::from_config(&configs[0]).expect("valid ring");
    let replicas: Vec<String> =
        cluster.preference_list(&key, options.n).iter().map(|node| node.as_str().to_string()).collect();
    let forwarder = configs
        .iter()
        .map(|config| config.node_id.clone())
        .find(|id| !replicas.contains(id))
        .expect("5 nodes, 3 replicas");
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .max_message_latency(Duration::from_millis(1))
        .epoch(UNIX_EPOCH + Duration::from_millis(SIM_EPOCH_MS))
        .rng_seed(1)
        .build();
    for (index, config) in configs.into_iter().enumerate() {
        let machine = Arc::new(SimNode::new(index, config, 0, 1));
        sim.host(machine.name.clone().as_str(), move || machine.clone().run());
    }
    sim.client("client", async move {
        let client = sim_client("client", 7, Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The forwarder cannot reach the first replica; the other two
        // replicas are reachable from it and from each other: W=2 is
        // possible.
        turmoil::hold(forwarder.as_str(), replicas[0].as_str());
        let options = WriteOptions { w: 2, dw: 0 };
        let addr = format!("{forwarder}:{RPC_PORT}");
        client
            .put(&addr, &key, &VersionVector::new(), Hlc::default(), Bytes::from("1"), options)
            .await
            .map_err(|error| format!("put via {forwarder} with {} unreachable from it: {error}", replicas[0]))?;
        Ok(())
    });
    sim.run().expect("the put is accepted");
}
