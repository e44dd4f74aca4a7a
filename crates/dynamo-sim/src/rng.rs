//! The simulation's only source of randomness: the project's SplitMix64
//! ([`dynamo_core::rng`]), seeded from the run's seed.
//!
//! Every component that needs randomness gets its own generator, forked
//! from the run's root generator in a fixed order (see [`crate::harness`]),
//! so adding a draw in one component does not shift the others' streams.

pub use dynamo_core::rng::{SplitMix64, mix};
