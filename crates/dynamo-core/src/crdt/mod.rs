//! Convergent replicated data types (CRDTs, Shapiro et al. 2011): values
//! whose replicas merge themselves, so a data-type bucket never shows the
//! client siblings (SPEC section 3, issue 12).
//!
//! They are **delta-state** CRDTs (Almeida, Shoker and Baquero, 2018): an
//! update at a replica returns a *delta*, itself a small value of the same
//! type, and replication ships the delta instead of the whole state. The
//! receiver merges it like any other state. Why not ship whole states, as
//! Riak does: a large set would cost its whole size on every add. Why not
//! ship operations: an operation applied twice (a retry, a hint delivered
//! after anti-entropy copied the same change) would count twice, whereas a
//! merge is idempotent.
//!
//! The types: [`counter::Counter`], a PN-counter; [`set::OrSet`], an
//! add-wins observed-remove set over a [`context::CausalContext`]; and
//! [`map::Map`], named registers, flags, counters, sets and nested maps
//! sharing one such context, with Riak's reset-remove semantics.

pub mod context;
pub mod counter;
pub mod map;
pub mod set;
pub mod value;

/// A convergent type. Its laws, which the property tests of each type
/// prove, are those of a join semilattice:
///
/// - `merge` is **commutative**: `a ⊔ b == b ⊔ a`;
/// - **associative**: `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`;
/// - **idempotent**: `a ⊔ a == a`, so a change delivered twice (a retry, a
///   hint and an anti-entropy repair of the same write) changes nothing
///   the second time;
/// - **deltas compose**: merging the delta an update returned into any
///   state that had seen the update's base gives what merging the whole
///   updated state would give;
/// - **nothing is lost**: a merge never undoes an update either side had,
///   in any order of delivery.
///
/// Each type documents any precondition its deltas need (the counter's
/// need none: any delta merges into any state).
pub trait Crdt: Clone + PartialEq + std::fmt::Debug {
    /// Merges `other` (a whole state or a delta) into this state.
    fn merge(&mut self, other: &Self);
}
