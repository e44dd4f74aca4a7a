//! Chaos test on the real binary, with a lost-write checker.
//!
//! A cluster of `dynamo server` processes (5 by default), each on its own
//! loopback address and sending its RPC from it; a bucket in `siblings`
//! mode with n=3, r=2, w=2; several clients adding unique elements to a
//! few set-valued keys by read → merge → write with the context; and a
//! nemesis that kills (`kill -9`, then restarts), pauses (SIGSTOP, then
//! SIGCONT) and partitions nodes (iptables DROP rules between their
//! addresses), and once per run adds a spare node while a partition is in
//! force (`--join`, then a commit: the membership change during a network
//! partition where Garage's Jepsen runs lost data). At the end everything
//! is healed, the clients stop, every node must see the partition
//! transfers done, the replicas (the new node's included) must converge,
//! and an R=N read of every key must hold every acknowledged element and
//! nothing that was never attempted.
//!
//! In the same run and under the same nemesis, clients of a counter bucket
//! and of a data-type set bucket (also n=3, r=2, w=2) send increments, adds
//! and removes to random nodes ([`datatypes`]); at the end their replicas
//! must converge too, every counter read at R=N must lie between the sum
//! of its acknowledged increments and that sum plus every indeterminate
//! one, and every set must hold each acknowledged add no remove was sent
//! for, and nothing never added.
//!
//! Map: [`config`] (environment variables), [`run`] (one run, start to
//! verdict), [`procs`] (node processes), [`firewall`] (iptables chain),
//! [`nemesis`] (fault schedule and the thread applying it), [`membership`]
//! (the join's commit, the transfers' end), [`workload`] (the
//! read-merge-write clients), [`datatypes`] (the counter and set clients),
//! [`checker`] (the verdict, pure and unit-tested), [`rng`] (seeded
//! randomness).
//!
//! Short form (CI): `cargo test -p dynamo --test chaos -- --nocapture`.
//! Long form: `bench/chaos.sh` (several longer runs). The README's
//! "Chaos testing" section lists the variables.

mod checker;
mod config;
mod datatypes;
mod firewall;
mod membership;
mod nemesis;
mod procs;
mod rng;
mod run;
mod workload;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};

use config::ChaosConfig;
use firewall::{Firewall, Unavailable};
use nemesis::NemesisKind;
use run::{RunResult, RunSpec, run_once};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// First SIGINT/SIGTERM: ask the run to stop, so that it heals and cleans
/// up (iptables chain, node processes) on its way out. Second: die.
extern "C" fn on_interrupt(signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: signal and raise are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

fn install_interrupt_handlers() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and async-signal-safe
    // calls.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Node `i`'s address: `127.0.<s>.<11 + i>`, with `s` derived from the
/// test's pid so that chaos runs of different worktrees on one machine
/// neither share addresses nor partition each other (override with
/// `DYNAMO_CHAOS_SUBNET=127.0.0`).
fn node_ips(nodes: usize) -> Result<Vec<Ipv4Addr>, String> {
    let prefix = match std::env::var("DYNAMO_CHAOS_SUBNET") {
        Ok(text) => {
            let octets: Vec<u8> = text.split('.').map(str::parse).collect::<Result<_, _>>().unwrap_or_default();
            match octets[..] {
                [127, b, c] => [127, b, c],
                _ => return Err(format!("DYNAMO_CHAOS_SUBNET={text:?}: give three octets of 127/8, e.g. 127.0.0")),
            }
        }
        Err(_) => [127, 0, 1 + (std::process::id() % 250) as u8],
    };
    Ok((0..nodes).map(|index| Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 11 + index as u8)).collect())
}

#[test]
fn acknowledged_writes_survive_kills_pauses_and_partitions() {
    install_interrupt_handlers();
    let config = ChaosConfig::from_env().unwrap_or_else(|error| panic!("chaos: bad configuration: {error}"));
    let mut kinds = config.nemeses.clone();
    let mut firewall = None;
    if kinds.contains(&NemesisKind::Partition) {
        match Firewall::prepare() {
            Ok(prepared) => {
                println!("chaos: partitions through iptables chain {}", prepared.chain());
                firewall = Some(prepared);
            }
            Err(Unavailable(why)) if config.require_partitions => {
                panic!("chaos: partitions are required (DYNAMO_CHAOS_REQUIRE_PARTITIONS=1) but impossible: {why}")
            }
            Err(Unavailable(why)) => {
                eprintln!("chaos: ==================================================================");
                eprintln!("chaos: WARNING: THE PARTITION NEMESIS IS DISABLED: {why}");
                kinds.retain(|kind| *kind != NemesisKind::Partition);
                eprintln!(
                    "chaos: only [{}] will run, a join on a whole network (DYNAMO_CHAOS_REQUIRE_PARTITIONS=1 makes \
                     this fatal)",
                    kinds.iter().map(|kind| kind.name()).collect::<Vec<_>>().join(",")
                );
                eprintln!("chaos: ==================================================================");
            }
        }
    }
    // The join nemesis starts one spare node.
    let spares = usize::from(kinds.contains(&NemesisKind::Join));
    let ips = node_ips(config.nodes + spares).unwrap_or_else(|error| panic!("chaos: {error}"));
    println!(
        "chaos: {} run(s) of {} s, {} nodes + {spares} spare on {}..{}, {} clients + {} counter + {} set, {} keys \
         per bucket, nemeses [{}], repair by reads {}, seed {:#x}",
        config.runs,
        config.workload.as_secs(),
        config.nodes,
        ips[0],
        ips[ips.len() - 1],
        config.clients,
        config.counter_clients,
        config.set_clients,
        config.keys,
        kinds.iter().map(|kind| kind.name()).collect::<Vec<_>>().join(","),
        if config.repair_by_reads { "on" } else { "off" },
        config.seed
    );
    println!("chaos: replay a run's faults with DYNAMO_CHAOS_SEED=<its seed> DYNAMO_CHAOS_RUNS=1");
    let mut summaries = Vec::new();
    for run in 0..config.runs {
        let seed = config.seed.wrapping_add(u64::from(run));
        let dir = tempfile::Builder::new().prefix("dynamo-chaos-").tempdir().expect("temporary directory");
        println!("chaos: run {}/{} seed {seed:#x} in {}", run + 1, config.runs, dir.path().display());
        let outcome = run_once(RunSpec {
            config: &config,
            seed,
            kinds: &kinds,
            ips: &ips,
            dir: dir.path(),
            firewall: firewall.as_mut(),
            interrupted: &interrupted,
        });
        let label = format!("chaos run {}/{} seed={seed:#x}", run + 1, config.runs);
        match outcome {
            Ok(result) if result.passed() => {
                let line = summary(&label, "PASS", &result, config.repair_by_reads);
                println!("{line}");
                summaries.push(line);
                if config.keep_dir {
                    println!("chaos: kept {}", dir.keep().display());
                }
            }
            Ok(result) => {
                let line = summary(&label, "FAIL", &result, config.repair_by_reads);
                let kept = dir.keep();
                print_node_logs(&kept);
                panic!(
                    "{line}\n{}\ncounters: {}\nsets: {}\nanomalies: {:?}\nnode data and logs kept in {}\nreplay: \
                     DYNAMO_CHAOS_SEED={seed:#x} DYNAMO_CHAOS_RUNS=1",
                    result.report.examples(20),
                    result.counters.details(),
                    result.orsets.examples(20),
                    result.anomalies.iter().take(20).collect::<Vec<_>>(),
                    kept.display()
                );
            }
            Err(error) => {
                let kept = dir.keep();
                print_node_logs(&kept);
                panic!(
                    "{label} FAIL: {error}\nnode data and logs kept in {}\nreplay: DYNAMO_CHAOS_SEED={seed:#x} DYNAMO_CHAOS_RUNS=1",
                    kept.display()
                );
            }
        }
    }
    drop(firewall);
    println!("chaos: all {} run(s) passed:", config.runs);
    for line in summaries {
        println!("  {line}");
    }
}

/// The one-line result of a run.
fn summary(label: &str, verdict: &str, result: &RunResult, repair_by_reads: bool) -> String {
    format!(
        "{label} {verdict}: {} heal->transfers-done={:.2}s (epoch {}) heal->convergence={:.2}s (workload stopped \
         {}, repair by reads {}) nemeses: {} | reads ok/failed {}/{} writes ok/failed {}/{} reads with siblings {} \
         (max {}) | {} | {} | set reads ok/failed {}/{} removes refused {}",
        result.report.counts(),
        result.heal_to_transfers_done.as_secs_f64(),
        result.epoch,
        result.heal_to_convergence.as_secs_f64(),
        result.heal_to_quiet.map_or("before the heal".to_string(), |quiet| format!("at +{:.2}s", quiet.as_secs_f64())),
        if repair_by_reads { "on" } else { "off" },
        result.nemeses.describe(),
        result.clients.reads_ok,
        result.clients.reads_failed,
        result.clients.writes_ok,
        result.clients.writes_failed,
        result.clients.reads_with_siblings,
        result.clients.max_siblings,
        result.counters.counts(),
        result.orsets.counts(),
        result.datatype_clients.reads_ok,
        result.datatype_clients.reads_failed,
        result.datatype_clients.removes_refused
    )
}

/// The last lines of every node's log, to explain a failure.
fn print_node_logs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<_> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("chaos: --- last lines of {} ---", log.display());
        for line in &lines[lines.len().saturating_sub(15)..] {
            eprintln!("  {line}");
        }
    }
}
