//! A scripted simulation of one last-write-wins scenario, the smallest form
//! of what the random simulation found (seeds 2000 and 10118 of
//! `tests/simulation.rs`): a write whose context has seen the current value
//! must replace it, even when its coordinator's clock lags and its own copy
//! of the key lacks that value (SPEC 4.4; `VersionedObject::put` promises
//! "a write that saw the current value always replaces it, even when the
//! coordinator's clock lags").

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::version::VersionVector;
use dynamo_sim::SimOptions;
use dynamo_sim::clock::SIM_EPOCH_MS;
use dynamo_sim::harness::{node_configs, sim_client};
use dynamo_sim::node::{LWW_BUCKET, SimNode};
use dynamo_sim::protocol::WriteOptions;
use dynamo_sim::workload::{describe, value_id};

#[test]
fn lww_write_that_saw_the_current_value_wins_over_a_lagging_clock() {
    let options = SimOptions { nodes: 3, ..SimOptions::default() };
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .max_message_latency(Duration::from_millis(1))
        .epoch(UNIX_EPOCH + Duration::from_millis(SIM_EPOCH_MS))
        .rng_seed(1)
        .build();
    // With three nodes and N=3 every node is a replica of every key; node2's
    // clock is 5 s behind the others.
    let skews_ms = [0, 0, -5_000];
    for (index, config) in node_configs(&options).into_iter().enumerate() {
        let machine = Arc::new(SimNode::new(index, config, skews_ms[index], 1));
        sim.host(machine.name.clone().as_str(), move || machine.clone().run());
    }
    sim.client("client", async {
        let client = sim_client("client", 7, Duration::from_secs(5));
        let key = ObjectKey::new(LWW_BUCKET, b"x")?;
        let options = WriteOptions { w: 2, dw: 0 };
        tokio::time::sleep(Duration::from_millis(500)).await;

        // node0 and node2 cannot talk (their messages wait).
        turmoil::hold("node0", "node2");
        // Version 1, coordinated by node0, acknowledged by node0 and node1.
        let seen =
            client.put("node0:9000", &key, &VersionVector::new(), Hlc::default(), Bytes::from("1"), options).await?;
        // Version 2, with the context of version 1: it supersedes it.
        // Coordinated by node2, which has not received version 1 and whose
        // clock lags; acknowledged by node2 and node1.
        client.put("node2:9000", &key, &seen.0, seen.1, Bytes::from("2"), options).await?;
        turmoil::release("node0", "node2");
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Every replica answers and read repair runs.
        let object = client.get("node1:9000", &key, Some(3)).await?;
        let values: Vec<Option<u64>> = object.siblings().iter().map(|sibling| value_id(&sibling.payload)).collect();
        if values != [Some(2)] {
            return Err(format!(
                "the key holds {} (value@timestamp) after an acknowledged write of 2 that had seen 1",
                describe(&object)
            )
            .into());
        }
        Ok(())
    });
    sim.run().expect("version 2 wins");
}
