//! The group coordinator: consumer groups (Kafka's classic rebalance
//! protocol) and committed offsets, kept as records in the internal topic
//! `__consumer_offsets`. The coordinator of a group is the leader of
//! partition [`partition_for`]`(group)` of that topic.
//!
//! - [`records`]: the keys and values of `__consumer_offsets`, byte for byte as Kafka writes them.
//! - [`state`]: one group: state, generation, members, selected protocol, committed offsets.
//! - [`coordinator`]: the state machine of one offsets partition's groups: events in
//!   (requests, append completions, time), commands out (responses, appends). No I/O.
//! - [`load`]: rebuilds a partition's groups from its records.
//! - [`timers`]: the deadlines the state machine schedules.
//! - [`messages`]: requests and results in the state machine's terms.
//! - [`runtime`]: [`GroupCoordinator`], the thin runtime: creates the topic, loads each
//!   partition, routes requests, performs appends, delivers responses, drives timers.
//!
//! `docs/groups.md` describes the protocol, the record formats and the timeouts.

pub mod coordinator;
pub mod load;
pub mod messages;
pub mod records;
pub mod runtime;
pub mod state;
pub mod timers;

#[cfg(test)]
mod tests;

pub use runtime::GroupCoordinator;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;
/// Kafka's `offsets.topic.segment.bytes` default: small segments, so that
/// compaction (once the storage engine offers it) finds sealed ones to clean.
pub const OFFSETS_TOPIC_SEGMENT_BYTES_DEFAULT: u64 = 100 * 1024 * 1024;
/// Kafka's `offsets.retention.minutes` default: 7 days.
pub const OFFSETS_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `offsets.retention.check.interval.ms` default.
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 600_000;
/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_BYTES_MAX_DEFAULT: usize = 4096;
/// Kafka's `group.min.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MIN_DEFAULT: i32 = 6000;
/// Kafka's `group.max.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MAX_DEFAULT: i32 = 1_800_000;
/// `group.initial.rebalance.delay.ms`: Kafka's default is 3000, which makes
/// every new group wait 3 s before its first generation. A single broker
/// typically serves development and tests, where that wait only slows
/// things down; set it higher when many consumers start together.
pub const INITIAL_REBALANCE_DELAY_MS_DEFAULT: i32 = 0;
/// `group.max.size`: Kafka's default is unlimited; every map here has a bound.
pub const GROUP_MEMBERS_MAX_DEFAULT: usize = 1000;

/// The coordinator's settings (Kafka's names in `config.rs`).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` when this broker creates it.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor`: replicas of `__consumer_offsets`,
    /// capped by the brokers alive when it is created.
    pub offsets_topic_replication_factor: i16,
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.commit.timeout.ms`: how long an offset commit (or a group's
    /// assignment) waits to be replicated to the ISR before it is answered
    /// `COORDINATOR_NOT_AVAILABLE`.
    pub offsets_commit_timeout_ms: u64,
    /// How long an empty group's offsets are kept.
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offset_metadata_bytes_max: usize,
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    pub initial_rebalance_delay_ms: i32,
    pub group_members_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            offsets_topic_replication_factor: 3,
            offsets_commit_timeout_ms: 5_000,
            offsets_topic_segment_bytes: OFFSETS_TOPIC_SEGMENT_BYTES_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MS_DEFAULT,
            offsets_retention_check_interval_ms: OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            offset_metadata_bytes_max: OFFSET_METADATA_BYTES_MAX_DEFAULT,
            session_timeout_ms_min: SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: SESSION_TIMEOUT_MS_MAX_DEFAULT,
            initial_rebalance_delay_ms: INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            group_members_max: GROUP_MEMBERS_MAX_DEFAULT,
        }
    }
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16
/// code units, wrapping. Kafka places groups with it, so we must too for a
/// group to land on the same partition as in Kafka.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, where `abs(i32::MIN)` is 0.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "the offsets topic has partitions");
    let hash = java_string_hash(group_id);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn group_hash_is_javas_string_hash_code() {
        // Values of "".hashCode(), "abc".hashCode(), "hello".hashCode() and a surrogate pair in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash("hello"), 99162322);
        // U+1F600 is the UTF-16 pair D83D DE00: 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        // Overflow wraps as Java's int arithmetic does.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn partition_is_the_absolute_hash_modulo_the_partition_count() {
        // abs(hash) % N, with Kafka's abs(Integer.MIN_VALUE) == 0.
        assert_eq!(partition_for("abc", 50), 96354 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // "console-consumer-..." style ids with a negative hash land in range.
        for group in [
            "my-group",
            "g",
            "Aa",
            "BB",
            "consumer-group-with-a-long-name",
        ] {
            let p = partition_for(group, 50);
            assert!((0..50).contains(&p), "{group} -> {p}");
            assert_eq!(p, java_string_hash(group).unsigned_abs() as i32 % 50);
        }
    }
}
