//! Prints the gossip-convergence and join-move tables of
//! `docs/benchmarks.md` (see `dynamo_sim::gossip_scale`):
//!
//! ```sh
//! cargo run --release -p dynamo-sim --example gossip_scale
//! ```
//!
//! `GOSSIP_SCALE_SEEDS=<count>` changes the number of seeds per size
//! (default 10).

use std::time::Instant;

use dynamo_core::membership::SEED_ROUND_INTERVAL;
use dynamo_sim::gossip_scale::{SEEDS, SpreadRun, join_moves, spread_from, static_state};

fn main() {
    let seeds: u64 = std::env::var("GOSSIP_SCALE_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(10);
    println!("Gossip: rounds until a change taken at one node is held by every node ({seeds} seeds per row).");
    println!(
        "Seeds are the first {SEEDS} nodes, contacted every {SEED_ROUND_INTERVAL} rounds besides one random member.\n"
    );
    println!(
        "| nodes | seed rule | rounds mean | rounds max | exchanges per node per round | full-state exchanges per node (whole run) | busiest node, exchanges in one round | wall time |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for nodes in [10, 100, 1_000] {
        let start = static_state(nodes);
        for with_seeds in [true, false] {
            let started = Instant::now();
            let runs: Vec<SpreadRun> = (0..seeds).map(|seed| spread_from(&start, seed, with_seeds)).collect();
            let rounds: Vec<u32> = runs.iter().map(|run| run.rounds).collect();
            let mean = f64::from(rounds.iter().sum::<u32>()) / rounds.len() as f64;
            let max = rounds.iter().max().copied().unwrap_or(0);
            let round_total: u64 = runs.iter().map(|run| u64::from(run.rounds)).sum();
            let exchanges: u64 = runs.iter().map(|run| run.exchanges).sum();
            let full: u64 = runs.iter().map(|run| run.full_states).sum();
            let busiest = runs.iter().map(|run| run.busiest_node_exchanges).max().unwrap_or(0);
            println!(
                "| {nodes} | {} | {mean:.1} | {max} | {:.2} | {:.2} | {busiest} | {:.1} s |",
                if with_seeds { "random + seeds" } else { "random only" },
                exchanges as f64 / (round_total as f64 * nodes as f64),
                full as f64 / (runs.len() as f64 * nodes as f64),
                started.elapsed().as_secs_f64(),
            );
        }
    }
    println!(
        "\nState size (what a full-state exchange carries; a digest exchange is a 33-byte message out and 2 bytes back, plus RPC framing):\n"
    );
    println!("| nodes | Q | encoded state |");
    println!("|---:|---:|---:|");
    for nodes in [10, 100, 1_000] {
        let state = static_state(nodes);
        println!("| {nodes} | {} | {} bytes |", state.ring().partitions(), state.encode().len());
    }
    println!("\nJoin: partitions the plan moves when one equal node joins S equal nodes, against the ideal 1/(S+1).\n");
    println!(
        "| S | Q=256 moved | fraction | ideal 1/(S+1) | replica sets (n=3) changed | Q=1024 moved | fraction | replica sets (n=3) changed |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for nodes in 3..=20 {
        let small = join_moves(nodes, 256);
        let large = join_moves(nodes, 1024);
        println!(
            "| {nodes} | {} | {:.4} | {:.4} | {} ({:.1}%) | {} | {:.4} | {} ({:.1}%) |",
            small.moved,
            small.fraction(),
            small.ideal(),
            small.replica_sets_changed,
            100.0 * small.replica_sets_changed as f64 / 256.0,
            large.moved,
            large.fraction(),
            large.replica_sets_changed,
            100.0 * large.replica_sets_changed as f64 / 1024.0,
        );
    }
}
