//! Real network partitions with iptables. Each node has its own loopback
//! address and sends its RPC from it, so a partition is a set of DROP rules
//! `-s A -d B` for every pair of addresses on different sides, both ways.
//!
//! All rules live in one dedicated chain, `DYNAMO_CHAOS_<pid>_<n>`, jumped to
//! from OUTPUT and INPUT: healing flushes the chain, cleanup deletes the
//! jumps and the chain. Cleanup runs when the [`Firewall`] is dropped (on
//! success, on failure, on panic); the test's SIGINT/SIGTERM handler turns
//! an interrupt into an orderly failure so the drop runs. Chains left by a
//! test process that died without cleaning up (SIGKILL) are removed at the
//! start of the next run: a chain whose pid is no longer alive is stale.
//! Chains of other live test processes are left alone (they use other
//! addresses, see `main.rs`).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every chain this test creates (iptables allows 28 characters:
/// prefix + pid fits).
const CHAIN_PREFIX: &str = "DYNAMO_CHAOS_";
/// The built-in chains that jump to ours. On loopback a packet crosses
/// OUTPUT then INPUT; dropping in either is enough, both make the rules
/// hold whichever way the kernel routes.
const HOOKS: [&str; 2] = ["OUTPUT", "INPUT"];

/// Numbers the chains of this process (the chaos run and the firewall's
/// own test run in parallel in one test binary).
static NEXT_CHAIN: AtomicU32 = AtomicU32::new(0);

/// Why partitions cannot be used, and what would fix it.
#[derive(Debug)]
pub struct Unavailable(pub String);

/// The test's iptables chain.
pub struct Firewall {
    chain: String,
    installed: bool,
}

impl Firewall {
    /// Makes sure iptables can be used (installing it with apt-get when
    /// running as root and it is missing), removes stale chains of dead
    /// test processes, and creates this process's chain and its jumps.
    pub fn prepare() -> Result<Firewall, Unavailable> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable(
                "not running as root: iptables rules need root (or CAP_NET_ADMIN); run the test as root".to_string(),
            ));
        }
        if !iptables_present() {
            install_iptables()?;
        }
        remove_stale_chains();
        let chain = format!("{CHAIN_PREFIX}{}_{}", std::process::id(), NEXT_CHAIN.fetch_add(1, Ordering::SeqCst));
        // A chain named with our own pid can only be left over from a dead
        // process that had the same pid.
        remove_chain(&chain);
        iptables(&["-N", &chain]).map_err(|error| Unavailable(format!("creating a chain failed: {error}")))?;
        let mut firewall = Firewall { chain, installed: true };
        for hook in HOOKS {
            if let Err(error) = iptables(&["-I", hook, "1", "-j", &firewall.chain]) {
                firewall.remove();
                return Err(Unavailable(format!("jumping from {hook} failed: {error}")));
            }
        }
        Ok(firewall)
    }

    /// The chain's name.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Replaces the current partition: traffic between any two addresses in
    /// different `sides` is dropped, both directions. Addresses in no side
    /// are not affected.
    pub fn partition(&mut self, sides: &[Vec<Ipv4Addr>]) -> Result<(), String> {
        self.heal()?;
        for (index, side) in sides.iter().enumerate() {
            for other in &sides[index + 1..] {
                for a in side {
                    for b in other {
                        for (source, destination) in [(a, b), (b, a)] {
                            iptables(&[
                                "-A",
                                &self.chain,
                                "-s",
                                &source.to_string(),
                                "-d",
                                &destination.to_string(),
                                "-j",
                                "DROP",
                            ])?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&mut self) -> Result<(), String> {
        iptables(&["-F", &self.chain])
    }

    /// How many DROP rules are in force.
    pub fn rule_count(&self) -> usize {
        list_rules().lines().filter(|line| line.starts_with(&format!("-A {} ", self.chain))).count()
    }

    /// Deletes the jumps and the chain. Idempotent; errors are ignored
    /// (there is nothing better to do during cleanup) except that a chain
    /// still present afterwards is reported on stderr.
    pub fn remove(&mut self) {
        if !self.installed {
            return;
        }
        remove_chain(&self.chain);
        if list_rules().lines().any(|line| line == format!("-N {}", self.chain)) {
            eprintln!("chaos: WARNING: could not remove iptables chain {}; remove it by hand", self.chain);
        }
        self.installed = false;
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.remove();
    }
}

fn remove_chain(chain: &str) {
    for hook in HOOKS {
        // Delete every jump, however many an interrupted run left.
        for _ in 0..16 {
            if iptables(&["-D", hook, "-j", chain]).is_err() {
                break;
            }
        }
    }
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

/// Chains `DYNAMO_CHAOS_<pid>` whose process is gone.
fn remove_stale_chains() {
    for line in list_rules().lines() {
        let Some(chain) = line.strip_prefix("-N ") else { continue };
        let Some(pid) = stale_candidate_pid(chain) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            println!("chaos: removing stale iptables chain {chain} (its test process {pid} is gone)");
            remove_chain(chain);
        }
    }
}

/// The pid in a chain name `DYNAMO_CHAOS_<pid>_<n>` (or the older
/// `DYNAMO_CHAOS_<pid>`).
fn stale_candidate_pid(chain: &str) -> Option<u32> {
    let rest = chain.strip_prefix(CHAIN_PREFIX)?;
    rest.split('_').next()?.parse().ok()
}

fn list_rules() -> String {
    Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs `iptables -w ARGS` (wait for the xtables lock).
fn iptables(args: &[&str]) -> Result<(), String> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|error| format!("running iptables {}: {error}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn iptables_present() -> bool {
    Command::new("iptables").arg("--version").output().is_ok_and(|output| output.status.success())
}

/// `apt-get install -y iptables`, with an `apt-get update` first if the
/// package is unknown. Prints what it does.
fn install_iptables() -> Result<(), Unavailable> {
    let apt = |args: &[&str]| -> bool {
        println!("chaos: iptables is missing; running apt-get {}", args.join(" "));
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    let installed = apt(&["install", "-y", "iptables"]) || (apt(&["update"]) && apt(&["install", "-y", "iptables"]));
    if installed && iptables_present() {
        Ok(())
    } else {
        Err(Unavailable(
            "the iptables command is missing and apt-get could not install it: install the iptables package"
                .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether a TCP connection from `from` to `to` opens within a second.
    fn connects(from: Ipv4Addr, to: std::net::SocketAddr) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind((from, 0).into()).expect("bind the source address");
            matches!(tokio::time::timeout(Duration::from_secs(1), socket.connect(to)).await, Ok(Ok(_)))
        })
    }

    #[test]
    fn chain_names_carry_the_pid_that_owns_them() {
        assert_eq!(stale_candidate_pid("DYNAMO_CHAOS_4242_3"), Some(4242));
        assert_eq!(stale_candidate_pid("DYNAMO_CHAOS_4242"), Some(4242));
        assert_eq!(stale_candidate_pid("DOCKER_USER"), None);
    }

    #[test]
    fn a_partition_drops_exactly_the_chosen_links_until_healed_and_the_chain_goes_away_on_drop() {
        let mut firewall = match Firewall::prepare() {
            Ok(firewall) => firewall,
            Err(Unavailable(why)) => {
                eprintln!("chaos: WARNING: firewall test skipped: {why}");
                return;
            }
        };
        let subnet = 1 + (std::process::id() % 250) as u8;
        let [a, b, c] = [101, 102, 103].map(|host| Ipv4Addr::new(127, 0, subnet, host));
        let listener = std::net::TcpListener::bind((b, 0)).expect("listen");
        let target = listener.local_addr().expect("address");
        assert!(connects(a, target), "no rules yet");
        firewall.partition(&[vec![a], vec![b, c]]).expect("partition");
        assert_eq!(firewall.rule_count(), 4, "a-b and a-c, both ways");
        assert!(!connects(a, target), "a is cut off from b");
        assert!(connects(c, target), "c and b are on the same side");
        firewall.heal().expect("heal");
        assert_eq!(firewall.rule_count(), 0);
        assert!(connects(a, target), "healed");
        let chain = firewall.chain().to_string();
        drop(firewall);
        let rules = list_rules();
        assert!(!rules.contains(&chain), "chain {chain} left behind:\n{rules}");
    }
}
