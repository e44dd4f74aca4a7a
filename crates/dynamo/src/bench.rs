//! Load generator: placeholder until implemented.

use std::process::ExitCode;

/// Arguments of `dynamo bench`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("dynamo bench is not implemented yet")
}
