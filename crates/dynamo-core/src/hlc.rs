//! Hybrid logical clock: timestamps that follow the wall clock but never go
//! backwards on one node, even when the wall clock does (NTP step, VM pause).
//! Last-write-wins buckets order writes by these timestamps; Garage's Jepsen
//! runs showed that plain wall-clock LWW loses writes under clock skew.

/// A timestamp: milliseconds since the Unix epoch in the high 48 bits, a
/// logical counter in the low 16 bits. Totally ordered; compares as a `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc(pub u64);

/// Largest wall-clock reading a timestamp can hold (48 bits of milliseconds,
/// about the year 10889). Larger readings are clamped so order is kept.
pub const MAX_WALL_MS: u64 = (1 << 48) - 1;

impl Hlc {
    /// Builds a timestamp from its parts (`logical` wraps into the next ms).
    /// `wall_ms` above [`MAX_WALL_MS`] is clamped to it.
    pub fn from_parts(wall_ms: u64, logical: u16) -> Self {
        Hlc((wall_ms.min(MAX_WALL_MS) << 16) | u64::from(logical))
    }

    /// Wall-clock milliseconds part.
    pub fn wall_ms(self) -> u64 {
        self.0 >> 16
    }

    /// Logical counter part.
    pub fn logical(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// The smallest timestamp after this one: one more logical tick, which
    /// carries into the next millisecond after 65535 ticks. Saturates at
    /// `u64::MAX` (unreachable before the year 10889).
    pub fn next(self) -> Self {
        Hlc(self.0.saturating_add(1))
    }
}

/// The per-node clock state. The caller supplies the wall clock reading, so
/// tests and the simulation can make it jump.
#[derive(Clone, Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that has issued nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a timestamp strictly greater than every timestamp issued or
    /// observed so far, and at least `wall_ms`.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        // Follow the wall clock when it is ahead; otherwise tick the logical
        // counter past the last timestamp, so a clock stepping back never
        // reorders writes.
        let issued = Hlc::from_parts(wall_ms, 0).max(self.last.next());
        self.last = issued;
        issued
    }

    /// Takes note of a timestamp seen from elsewhere so later `now` calls
    /// order after it.
    pub fn observe(&mut self, remote: Hlc) {
        self.last = self.last.max(remote);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Now(u64),
        Observe(Hlc),
    }

    fn step() -> impl Strategy<Value = Step> {
        // Wall readings cluster around one instant so they often go back.
        let base = 1_700_000_000_000u64;
        prop_oneof![
            (0..5_000u64).prop_map(move |offset| Step::Now(base + offset)),
            Just(Step::Now(0)),
            (0..5_000u64, any::<u16>()).prop_map(move |(o, l)| Step::Observe(Hlc::from_parts(base + o, l))),
        ]
    }

    #[test]
    fn parts_roundtrip_and_logical_overflow_carries_into_the_next_millisecond() {
        let stamp = Hlc::from_parts(1234, 56);
        assert_eq!((stamp.wall_ms(), stamp.logical()), (1234, 56));
        let carried = Hlc::from_parts(1234, u16::MAX).next();
        assert_eq!((carried.wall_ms(), carried.logical()), (1235, 0));
        assert_eq!(Hlc::from_parts(u64::MAX, 0).wall_ms(), MAX_WALL_MS, "clamped, not wrapped");
    }

    #[test]
    fn clock_follows_the_wall_clock_when_it_is_ahead() {
        let mut clock = HlcClock::new();
        assert_eq!(clock.now(1000), Hlc::from_parts(1000, 0));
        assert_eq!(clock.now(1000), Hlc::from_parts(1000, 1));
        assert_eq!(clock.now(900), Hlc::from_parts(1000, 2), "a step back only ticks");
        assert_eq!(clock.now(2000), Hlc::from_parts(2000, 0));
    }

    #[test]
    fn observed_timestamp_from_a_fast_node_orders_later_writes_after_it() {
        let mut clock = HlcClock::new();
        clock.observe(Hlc::from_parts(5000, 7));
        assert_eq!(clock.now(1000), Hlc::from_parts(5000, 8));
    }

    proptest! {
        #[test]
        fn timestamps_strictly_increase_whatever_the_wall_clock_does(
            steps in prop::collection::vec(step(), 1..200),
        ) {
            let mut clock = HlcClock::new();
            let mut floor = Hlc(0);
            for step in steps {
                match step {
                    Step::Now(wall_ms) => {
                        let stamp = clock.now(wall_ms);
                        prop_assert!(stamp > floor, "{stamp:?} not after {floor:?}");
                        prop_assert!(stamp >= Hlc::from_parts(wall_ms, 0));
                        floor = stamp;
                    }
                    Step::Observe(remote) => {
                        clock.observe(remote);
                        floor = floor.max(remote);
                    }
                }
            }
        }
    }
}
