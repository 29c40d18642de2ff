//! Replication throttles, as Kafka's (KIP-73) work: a reassignment copies a
//! partition to new replicas within a rate, so that copying does not starve
//! live replication or clients.
//!
//! Two topic configs name the throttled replicas, each a list of
//! `partition:broker` pairs or `*` for every replica of the topic:
//! `leader.replication.throttled.replicas` (kafka-reassign-partitions puts
//! the replicas a partition moves from there) and
//! `follower.replication.throttled.replicas` (the replicas it moves to). A
//! broker applies each list to the pairs that name itself:
//!
//! - as a leader, it sends the partitions of its leader list to followers
//!   outside the ISR within `leader.replication.throttled.rate`;
//! - as a follower, it fetches the partitions of its follower list, while
//!   outside the ISR, within `follower.replication.throttled.rate`.
//!
//! Both rates are dynamic broker configs (`None`: unlimited, Kafka's
//! `Long.MAX_VALUE`). Every byte of a throttled partition counts against the
//! rate, in sync or not (as in Kafka); only replicas outside the ISR wait
//! once it is spent, so a caught-up replica never falls behind for it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::ids::BrokerId;

/// The topic config naming the replicas a leader throttles.
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The topic config naming the replicas a follower throttles.
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

/// What a throttled-replicas topic config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottledReplicas {
    /// `*`: every replica of the topic.
    All,
    /// `partition:broker` pairs (none for an empty value).
    Listed(Vec<(i32, BrokerId)>),
}

impl ThrottledReplicas {
    /// Parses a value as Kafka's `ThrottledReplicaListValidator` accepts it:
    /// `*`, or comma-separated `partition:broker` pairs of decimal digits,
    /// spaces around each allowed, empty entries ignored.
    pub fn parse(value: &str) -> Result<ThrottledReplicas, String> {
        let malformed = || {
            "must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                .to_string()
        };
        let entries: Vec<&str> = value.split(',').map(str::trim).collect();
        if entries.concat() == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let number = |digits: &str| {
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<i32>().ok())
                .flatten()
        };
        let mut pairs = Vec::new();
        for entry in entries.into_iter().filter(|e| !e.is_empty()) {
            let (partition, broker) = entry.split_once(':').ok_or_else(malformed)?;
            match (number(partition), number(broker)) {
                (Some(partition), Some(broker)) => pairs.push((partition, BrokerId(broker))),
                _ => return Err(malformed()),
            }
        }
        Ok(ThrottledReplicas::Listed(pairs))
    }

    /// Whether this names `broker`'s replica of `partition`.
    pub fn names(&self, partition: i32, broker: BrokerId) -> bool {
        match self {
            ThrottledReplicas::All => true,
            ThrottledReplicas::Listed(pairs) => pairs.contains(&(partition, broker)),
        }
    }
}

/// Whether topic configs `configs` throttle `broker`'s replica of
/// `partition` under `key` (one of the two lists). A value that does not
/// parse throttles nothing; the controller refuses such values.
pub fn is_throttled(
    configs: &BTreeMap<String, String>,
    key: &str,
    partition: i32,
    broker: BrokerId,
) -> bool {
    configs
        .get(key)
        .and_then(|value| ThrottledReplicas::parse(value).ok())
        .is_some_and(|listed| listed.names(partition, broker))
}

/// A token bucket of bytes: refills at `rate` bytes/s up to one second's
/// worth; a transfer may overdraw it, after which throttled replicas wait
/// until it is positive again.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    tokens: f64,
    refilled: Instant,
}

impl Throttle {
    pub fn new(bytes_per_s: u64, now: Instant) -> Throttle {
        Throttle {
            rate: bytes_per_s,
            tokens: bytes_per_s as f64,
            refilled: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.rate as f64);
        self.refilled = now;
    }

    /// Whether throttled replicas may transfer now.
    pub fn has_budget(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens > 0.0
    }

    /// Counts `bytes` of throttled partitions against the rate.
    pub fn spend(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }
}

/// A throttle that follows its rate's changes (a new rate starts a full
/// bucket), safe to share between concurrent requests: the leader side's
/// is one for every follower's fetch; each follower fetcher task has its own.
#[derive(Debug, Default)]
pub struct SharedThrottle {
    bucket: Mutex<Option<Throttle>>,
}

impl SharedThrottle {
    /// Whether throttled replicas may transfer now at `rate` (`None`: unlimited).
    pub fn has_budget(&self, rate: Option<u64>) -> bool {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().expect("throttle lock");
        Self::follow(&mut bucket, rate, now);
        bucket.as_mut().is_none_or(|b| b.has_budget(now))
    }

    /// Counts `bytes` of throttled partitions against `rate`.
    pub fn spend(&self, rate: Option<u64>, bytes: u64) {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().expect("throttle lock");
        Self::follow(&mut bucket, rate, now);
        if let Some(b) = bucket.as_mut() {
            b.spend(bytes, now);
        }
    }

    /// A changed rate starts a new bucket, full.
    fn follow(bucket: &mut Option<Throttle>, rate: Option<u64>, now: Instant) {
        if bucket.as_ref().map(Throttle::rate) != rate {
            *bucket = rate.map(|r| Throttle::new(r, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttled_replica_lists_parse_as_kafka_validates_them() {
        // '*', pairs with spaces and empty entries, and an empty value are valid; anything else is not.
        assert_eq!(ThrottledReplicas::parse("*"), Ok(ThrottledReplicas::All));
        assert_eq!(ThrottledReplicas::parse(" * "), Ok(ThrottledReplicas::All));
        assert_eq!(
            ThrottledReplicas::parse("0:1, 1:2,,"),
            Ok(ThrottledReplicas::Listed(vec![
                (0, BrokerId(1)),
                (1, BrokerId(2))
            ]))
        );
        assert_eq!(
            ThrottledReplicas::parse(""),
            Ok(ThrottledReplicas::Listed(vec![]))
        );
        for bad in [
            "0",
            "0:",
            ":1",
            "a:1",
            "0:1:2",
            "-1:1",
            "*,0:1",
            "0:99999999999",
        ] {
            assert!(ThrottledReplicas::parse(bad).is_err(), "{bad:?} refused");
        }
    }

    #[test]
    fn a_list_throttles_only_the_pairs_that_name_the_broker() {
        // Partition 0 on broker 2 is throttled; partition 0 on broker 1 and partition 1 on 2 are not.
        let configs: BTreeMap<String, String> = [(
            FOLLOWER_THROTTLED_REPLICAS.to_string(),
            "0:2,1:3".to_string(),
        )]
        .into();
        assert!(is_throttled(
            &configs,
            FOLLOWER_THROTTLED_REPLICAS,
            0,
            BrokerId(2)
        ));
        assert!(!is_throttled(
            &configs,
            FOLLOWER_THROTTLED_REPLICAS,
            0,
            BrokerId(1)
        ));
        assert!(!is_throttled(
            &configs,
            FOLLOWER_THROTTLED_REPLICAS,
            1,
            BrokerId(2)
        ));
        assert!(!is_throttled(
            &configs,
            LEADER_THROTTLED_REPLICAS,
            0,
            BrokerId(2)
        ));
    }

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_one_second_of_burst() {
        // 1,000 B/s: spent down to -500 it has no budget until half a second has passed.
        let start = Instant::now();
        let mut throttle = Throttle::new(1_000, start);
        assert!(throttle.has_budget(start));
        throttle.spend(1_500, start);
        assert!(!throttle.has_budget(start + Duration::from_millis(400)));
        assert!(throttle.has_budget(start + Duration::from_millis(600)));
        // Ten idle seconds leave one second's worth, not ten.
        let later = start + Duration::from_secs(10);
        throttle.spend(1_000, later);
        assert!(!throttle.has_budget(later));
    }

    #[test]
    fn a_shared_throttle_follows_its_rate_and_is_open_when_unlimited() {
        // Unlimited never closes; a new rate starts a full bucket.
        let shared = SharedThrottle::default();
        shared.spend(None, u64::MAX);
        assert!(shared.has_budget(None));
        shared.spend(Some(100), 1_000);
        assert!(!shared.has_budget(Some(100)));
        assert!(shared.has_budget(Some(1_000_000)));
    }
}
