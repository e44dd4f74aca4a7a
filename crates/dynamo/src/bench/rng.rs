//! The load generator's randomness: the project's SplitMix64
//! ([`dynamo_core::rng`]). Fast, reproducible choices (same `--seed`, same
//! keys and operations per worker), not cryptographic quality.

pub use dynamo_core::rng::SplitMix64;
