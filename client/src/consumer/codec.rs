//! Kafka's consumer protocol: the bytes a member puts in JoinGroup (its
//! *subscription*) and the leader puts in SyncGroup (each member's
//! *assignment*), as the Java client and librdkafka write them, so members
//! of either kind and ours share one group.
//!
//! Both start with a big-endian `i16` version. Subscription v0 is the topics
//! and user data; v1 adds the partitions the member owns, v2 its generation,
//! v3 its rack. Assignment v0..v3 share one layout (partitions and user
//! data). A version newer than we know is read as the newest we know: Kafka
//! only ever appends fields, so the known prefix stays valid.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::messages::consumer_protocol_assignment::TopicPartition as AssignmentTopic;
use protocol::messages::consumer_protocol_subscription::TopicPartition as SubscriptionTopic;
use protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use protocol::{Decodable, Encodable, StrBytes};
use thiserror::Error;

/// The newest subscription and assignment version we read and write.
pub const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// The protocol type of consumer groups in JoinGroup and SyncGroup.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Why member metadata or an assignment could not be read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes end before the version.
    #[error("{what} of {length} bytes is too short for a version")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Its length in bytes.
        length: usize,
    },
    /// The version is negative.
    #[error("{what} has negative version {version}")]
    BadVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version it carried.
        version: i16,
    },
    /// The bytes do not decode at their version.
    #[error("cannot decode {what} v{version}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The version it carried.
        version: i16,
        /// What went wrong, in words.
        reason: String,
    },
}

/// A member's subscription: what it wants and what it owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    /// The assignor's own data, if any.
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now (v1+), by topic, sorted.
    pub owned_partitions: BTreeMap<String, Vec<i32>>,
    /// The generation in which it got them (v2+), -1 if none.
    pub generation_id: i32,
    /// The member's rack (v3+), if it has one.
    pub rack_id: Option<String>,
}

/// What the leader gives one member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// By topic, partitions sorted.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// The assignor's own data, if any.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// How many partitions the assignment holds.
    pub fn partition_count(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }
}

fn read_version(what: &'static str, data: &mut Bytes) -> Result<i16, CodecError> {
    if data.len() < 2 {
        return Err(CodecError::Truncated {
            what,
            length: data.len(),
        });
    }
    let version = data.get_i16();
    if version < 0 {
        return Err(CodecError::BadVersion { what, version });
    }
    Ok(version.min(CONSUMER_PROTOCOL_VERSION_MAX))
}

fn encode_versioned<M: Encodable>(message: &M, version: i16) -> Bytes {
    let size = message
        .compute_size(version)
        .expect("consumer protocol messages have a size in every known version");
    let mut out = BytesMut::with_capacity(2 + size);
    out.put_i16(version);
    message
        .encode(&mut out, version)
        .expect("consumer protocol messages encode in every known version");
    out.freeze()
}

impl Subscription {
    /// The member metadata for JoinGroup, at `version` (0..=3).
    pub fn encode(&self, version: i16) -> Bytes {
        assert!(
            (0..=CONSUMER_PROTOCOL_VERSION_MAX).contains(&version),
            "subscription version {version} is not one we write"
        );
        let message = ConsumerProtocolSubscription::default()
            .with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(
                self.owned_partitions
                    .iter()
                    .map(|(topic, partitions)| {
                        SubscriptionTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partitions(partitions.clone())
                    })
                    .collect(),
            )
            .with_generation_id(self.generation_id)
            .with_rack_id(self.rack_id.clone().map(StrBytes::from_string));
        encode_versioned(&message, version)
    }

    /// Reads member metadata written by any consumer-protocol client.
    pub fn decode(data: &Bytes) -> Result<Subscription, CodecError> {
        const WHAT: &str = "subscription";
        let mut data = data.clone();
        let version = read_version(WHAT, &mut data)?;
        let message = ConsumerProtocolSubscription::decode(&mut data, version).map_err(|e| {
            CodecError::Decode {
                what: WHAT,
                version,
                reason: e.to_string(),
            }
        })?;
        let mut owned_partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for topic in message.owned_partitions {
            owned_partitions
                .entry(topic.topic.0.to_string())
                .or_default()
                .extend(topic.partitions);
        }
        for partitions in owned_partitions.values_mut() {
            partitions.sort_unstable();
            partitions.dedup();
        }
        Ok(Subscription {
            topics: message.topics.iter().map(|t| t.to_string()).collect(),
            user_data: message.user_data,
            owned_partitions,
            generation_id: message.generation_id,
            rack_id: message.rack_id.map(|r| r.to_string()),
        })
    }
}

impl Assignment {
    /// The assignment bytes for SyncGroup, at `version` (0..=3; all share
    /// one layout).
    pub fn encode(&self, version: i16) -> Bytes {
        assert!(
            (0..=CONSUMER_PROTOCOL_VERSION_MAX).contains(&version),
            "assignment version {version} is not one we write"
        );
        let message = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(
                self.partitions
                    .iter()
                    .map(|(topic, partitions)| {
                        AssignmentTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partitions(partitions.clone())
                    })
                    .collect(),
            )
            .with_user_data(self.user_data.clone());
        encode_versioned(&message, version)
    }

    /// Reads an assignment. Empty bytes are an empty assignment: that is
    /// what the coordinator sends a member the leader left out.
    pub fn decode(data: &Bytes) -> Result<Assignment, CodecError> {
        const WHAT: &str = "assignment";
        if data.is_empty() {
            return Ok(Assignment::default());
        }
        let mut data = data.clone();
        let version = read_version(WHAT, &mut data)?;
        let message = ConsumerProtocolAssignment::decode(&mut data, version).map_err(|e| {
            CodecError::Decode {
                what: WHAT,
                version,
                reason: e.to_string(),
            }
        })?;
        let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for topic in message.assigned_partitions {
            partitions
                .entry(topic.topic.0.to_string())
                .or_default()
                .extend(topic.partitions);
        }
        for list in partitions.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        Ok(Assignment {
            partitions,
            user_data: message.user_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> Subscription {
        Subscription {
            topics: vec!["orders".into(), "payments".into()],
            user_data: Some(Bytes::from_static(&[0, 0, 0, 7])),
            owned_partitions: BTreeMap::from([
                ("orders".to_string(), vec![0, 2]),
                ("payments".to_string(), vec![1]),
            ]),
            generation_id: 7,
            rack_id: Some("rack-a".into()),
        }
    }

    #[test]
    fn subscription_round_trips_in_every_version_keeping_the_fields_it_has() {
        // decode(encode(x, v)) keeps what version v carries and defaults the rest.
        let full = subscription();
        for version in 0..=3 {
            let decoded = Subscription::decode(&full.encode(version)).unwrap();
            assert_eq!(decoded.topics, full.topics, "v{version}");
            assert_eq!(decoded.user_data, full.user_data, "v{version}");
            let expected_owned = if version >= 1 {
                full.owned_partitions.clone()
            } else {
                BTreeMap::new()
            };
            assert_eq!(decoded.owned_partitions, expected_owned, "v{version}");
            assert_eq!(
                decoded.generation_id,
                if version >= 2 { 7 } else { -1 },
                "v{version}"
            );
            assert_eq!(
                decoded.rack_id.as_deref(),
                (version >= 3).then_some("rack-a"),
                "v{version}"
            );
        }
    }

    #[test]
    fn subscription_v0_bytes_are_exactly_the_java_layout() {
        // i16 version, i32 topic count, i16-length topic names, i32-length user data (-1 = null).
        let subscription = Subscription {
            topics: vec!["ab".into()],
            ..Subscription::default()
        };
        let bytes = subscription.encode(0);
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff][..]
        );
    }

    #[test]
    fn a_newer_version_is_read_as_the_newest_known_one() {
        // A v4 subscription with trailing fields we do not know still yields its topics.
        let mut bytes = BytesMut::from(&subscription().encode(3)[..]);
        bytes[0..2].copy_from_slice(&4i16.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        let decoded = Subscription::decode(&bytes.freeze()).unwrap();
        assert_eq!(decoded, subscription());
    }

    #[test]
    fn assignment_round_trips_and_empty_bytes_mean_no_partitions() {
        // decode(encode(x)) == x in every version; a member left out gets empty bytes.
        let assignment = Assignment {
            partitions: BTreeMap::from([
                ("orders".to_string(), vec![1, 3, 5]),
                ("payments".to_string(), vec![0]),
            ]),
            user_data: None,
        };
        for version in 0..=3 {
            assert_eq!(
                Assignment::decode(&assignment.encode(version)).unwrap(),
                assignment
            );
        }
        assert_eq!(
            Assignment::decode(&Bytes::new()).unwrap(),
            Assignment::default()
        );
        assert_eq!(assignment.partition_count(), 4);
    }

    #[test]
    fn assignment_bytes_match_what_the_test_harness_parses() {
        // The layout: i16 version, [topic string, [i32 partition]], user data bytes.
        let assignment = Assignment {
            partitions: BTreeMap::from([("t".to_string(), vec![0, 2])]),
            user_data: None,
        };
        let bytes = assignment.encode(0);
        assert_eq!(
            &bytes[..],
            &[
                0, 0, // version
                0, 0, 0, 1, // one topic
                0, 1, b't', // "t"
                0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, // [0, 2]
                0xff, 0xff, 0xff, 0xff // null user data
            ][..]
        );
    }

    #[test]
    fn truncated_or_garbage_metadata_is_an_error_not_a_panic() {
        // Member metadata comes from other clients over the network: never trust it.
        assert!(Subscription::decode(&Bytes::from_static(&[0])).is_err());
        assert!(Subscription::decode(&Bytes::from_static(&[0xff, 0xff])).is_err());
        assert!(Subscription::decode(&Bytes::from_static(&[0, 0, 0, 0, 0, 9, 0])).is_err());
        assert!(Assignment::decode(&Bytes::from_static(&[0, 1, 0x7f, 0, 0, 0])).is_err());
        let full = subscription().encode(3);
        for cut in 0..full.len() {
            let _ = Subscription::decode(&full.slice(..cut));
        }
    }
}
