//! The records of `__consumer_offsets`, byte for byte as Apache Kafka writes them, so
//! a log written here reads the same to Kafka's tools and the other way round.
//!
//! Every key and value starts with an `i16` schema version, then the fields of
//! that version (big-endian; strings are `i16` length + UTF-8, `-1` for null;
//! bytes are `i32` length + data; arrays an `i32` count). The key version says
//! what the record is:
//!
//! | key version | key fields | value (null value = tombstone) |
//! |---|---|---|
//! | 0, 1 | group, topic, partition (`OffsetCommitKey`) | `OffsetCommitValue` v0-v4; we write v1 when the commit carried an explicit retention, v3 otherwise |
//! | 2 | group (`GroupMetadataKey`) | `GroupMetadataValue` v0-v4; we write v3 |
//!
//! Versions 4 of both values are "flexible" (compact strings and arrays,
//! tagged fields); they are read so that a log written by Kafka 4.x loads, and
//! never written. Other key versions (Kafka's share-group and consumer-group
//! records) are reported as [`RecordKey::Unknown`] and skipped by the loader,
//! as Kafka does with record types it does not know.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Key version Kafka writes for committed offsets (0 is the legacy form of the same key).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of group metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// `OffsetCommitValue` version for a commit with an explicit expire timestamp.
pub const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
/// `OffsetCommitValue` version for every other commit (carries the leader epoch).
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// `GroupMetadataValue` version written (static members, rebalance timeouts, state timestamp).
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;
/// Leader epoch of a commit that did not name one.
pub const NO_LEADER_EPOCH: i32 = -1;

/// Why a key or value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("{what} is truncated: needed {needed} bytes at position {position}, {available} left")]
    Truncated {
        what: &'static str,
        position: usize,
        needed: usize,
        available: usize,
    },
    #[error("{what} has a negative length {length} at position {position}")]
    BadLength {
        what: &'static str,
        position: usize,
        length: i64,
    },
    #[error("{what} is not valid UTF-8 at position {position}")]
    BadUtf8 { what: &'static str, position: usize },
    #[error("{what} field {field} is null but may not be")]
    UnexpectedNull {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what} version {version} is not known")]
    UnknownVersion { what: &'static str, version: i16 },
}

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    GroupMetadata {
        group: String,
    },
    /// A record type this broker does not use; skipped when loading.
    Unknown {
        version: i16,
    },
}

impl RecordKey {
    /// The group the record belongs to, if it is one we understand.
    pub fn group(&self) -> Option<&str> {
        match self {
            RecordKey::OffsetCommit { group, .. } | RecordKey::GroupMetadata { group } => {
                Some(group)
            }
            RecordKey::Unknown { .. } => None,
        }
    }
}

/// A committed offset as stored (`OffsetCommitValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// [`NO_LEADER_EPOCH`] when the client gave none.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only commits through OffsetCommit v2-v4 with an explicit retention have one.
    pub expire_timestamp_ms: Option<i64>,
}

/// A group's membership as of its last completed rebalance (`GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Empty for a group that never had members.
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state; -1 if unknown.
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    match key {
        RecordKey::OffsetCommit {
            group,
            topic,
            partition,
        } => {
            out.put_i16(OFFSET_COMMIT_KEY_VERSION);
            put_string(&mut out, group);
            put_string(&mut out, topic);
            out.put_i32(*partition);
        }
        RecordKey::GroupMetadata { group } => {
            out.put_i16(GROUP_METADATA_KEY_VERSION);
            put_string(&mut out, group);
        }
        RecordKey::Unknown { version } => {
            // Only the version is known of such a key; it is never written by us.
            out.put_i16(*version);
        }
    }
    out.freeze()
}

pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut reader = Reader::new(bytes, "record key");
    let version = reader.i16()?;
    match version {
        0 | 1 => Ok(RecordKey::OffsetCommit {
            group: reader.string()?,
            topic: reader.string()?,
            partition: reader.i32()?,
        }),
        2 => Ok(RecordKey::GroupMetadata {
            group: reader.string()?,
        }),
        version => Ok(RecordKey::Unknown { version }),
    }
}

pub fn encode_offset_commit_value(value: &OffsetCommitValue) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + value.metadata.len());
    match value.expire_timestamp_ms {
        Some(expire_timestamp_ms) => {
            out.put_i16(OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY);
            out.put_i64(value.offset);
            put_string(&mut out, &value.metadata);
            out.put_i64(value.commit_timestamp_ms);
            out.put_i64(expire_timestamp_ms);
        }
        None => {
            out.put_i16(OFFSET_COMMIT_VALUE_VERSION);
            out.put_i64(value.offset);
            out.put_i32(value.leader_epoch);
            put_string(&mut out, &value.metadata);
            out.put_i64(value.commit_timestamp_ms);
        }
    }
    out.freeze()
}

pub fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut reader = Reader::new(bytes, "offset commit value");
    let version = reader.i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "offset commit value",
            version,
        });
    }
    let flexible = version >= 4;
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 {
        reader.i32()?
    } else {
        NO_LEADER_EPOCH
    };
    let metadata = if flexible {
        reader.compact_string()?
    } else {
        reader.string()?
    };
    let commit_timestamp_ms = reader.i64()?;
    let expire_timestamp_ms = if version == 1 {
        Some(reader.i64()?).filter(|t| *t >= 0)
    } else {
        None
    };
    if flexible {
        reader.skip_tagged_fields()?;
    }
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

pub fn encode_group_metadata_value(value: &GroupMetadataValue) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut out, &value.protocol_type);
    out.put_i32(value.generation);
    put_nullable_string(&mut out, value.protocol.as_deref());
    put_nullable_string(&mut out, value.leader.as_deref());
    out.put_i64(value.current_state_timestamp_ms);
    out.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut out, &member.member_id);
        put_nullable_string(&mut out, member.group_instance_id.as_deref());
        put_string(&mut out, &member.client_id);
        put_string(&mut out, &member.client_host);
        out.put_i32(member.rebalance_timeout_ms);
        out.put_i32(member.session_timeout_ms);
        put_bytes(&mut out, &member.subscription);
        put_bytes(&mut out, &member.assignment);
    }
    out.freeze()
}

pub fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    const WHAT: &str = "group metadata value";
    let mut reader = Reader::new(bytes, WHAT);
    let version = reader.i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: WHAT,
            version,
        });
    }
    let flexible = version >= 4;
    let string = |reader: &mut Reader<'_>| {
        if flexible {
            reader.compact_string()
        } else {
            reader.string()
        }
    };
    let nullable_string = |reader: &mut Reader<'_>| {
        if flexible {
            reader.compact_nullable_string()
        } else {
            reader.nullable_string()
        }
    };
    let protocol_type = string(&mut reader)?;
    let generation = reader.i32()?;
    let protocol = nullable_string(&mut reader)?;
    let leader = nullable_string(&mut reader)?;
    let current_state_timestamp_ms = if version >= 2 { reader.i64()? } else { -1 };
    let count = if flexible {
        reader.compact_count()?
    } else {
        reader.count()?
    };
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = string(&mut reader)?;
        let group_instance_id = if version >= 3 {
            nullable_string(&mut reader)?
        } else {
            None
        };
        let client_id = string(&mut reader)?;
        let client_host = string(&mut reader)?;
        let session_timeout_first = version == 0;
        let (rebalance_timeout_ms, session_timeout_ms) = if session_timeout_first {
            let session = reader.i32()?;
            (session, session)
        } else {
            (reader.i32()?, reader.i32()?)
        };
        let (subscription, assignment) = if flexible {
            (reader.compact_bytes()?, reader.compact_bytes()?)
        } else {
            (reader.bytes()?, reader.bytes()?)
        };
        if flexible {
            reader.skip_tagged_fields()?;
        }
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if flexible {
        reader.skip_tagged_fields()?;
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// The topics a consumer-protocol subscription names. Every version of
/// Kafka's `ConsumerProtocolSubscription` starts with `version: i16` and
/// `topics: [string]`, so reading that prefix works for all of them, as the
/// coordinator in Kafka does it.
pub fn subscription_topics(subscription: &[u8]) -> Result<Vec<String>, RecordError> {
    let mut reader = Reader::new(subscription, "consumer protocol subscription");
    let _version = reader.i16()?;
    let count = reader.count()?;
    let mut topics = Vec::new();
    for _ in 0..count {
        topics.push(reader.string()?);
    }
    Ok(topics)
}

fn put_string(out: &mut BytesMut, value: &str) {
    // Kafka's strings are at most i16::MAX bytes; longer ones are refused
    // before they reach a record (group ids and metadata are bounded).
    assert!(
        value.len() <= i16::MAX as usize,
        "string of {} bytes does not fit a record field",
        value.len()
    );
    out.put_i16(value.len() as i16);
    out.put_slice(value.as_bytes());
}

fn put_nullable_string(out: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(out, value),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, value: &[u8]) {
    out.put_i32(value.len() as i32);
    out.put_slice(value);
}

/// A bounds-checked reader: every length is checked against the bytes left
/// before anything is allocated, so no input can panic or over-allocate.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            bytes,
            position: 0,
            what,
        }
    }

    fn take(&mut self, needed: usize) -> Result<&'a [u8], RecordError> {
        let available = self.bytes.len() - self.position;
        if needed > available {
            return Err(RecordError::Truncated {
                what: self.what,
                position: self.position,
                needed,
                available,
            });
        }
        let out = &self.bytes[self.position..self.position + needed];
        self.position += needed;
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn unsigned_varint(&mut self) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::BadLength {
            what: self.what,
            position: self.position,
            length: -1,
        })
    }

    fn utf8(&mut self, length: usize) -> Result<String, RecordError> {
        let position = self.position;
        let raw = self.take(length)?;
        String::from_utf8(raw.to_vec()).map_err(|_| RecordError::BadUtf8 {
            what: self.what,
            position,
        })
    }

    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let position = self.position;
        let length = self.i16()?;
        match length {
            -1 => Ok(None),
            n if n < 0 => Err(RecordError::BadLength {
                what: self.what,
                position,
                length: i64::from(n),
            }),
            n => self.utf8(n as usize).map(Some),
        }
    }

    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?.ok_or(RecordError::UnexpectedNull {
            what: self.what,
            field: "string",
        })
    }

    fn compact_nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.unsigned_varint()? {
            0 => Ok(None),
            n => self.utf8(n as usize - 1).map(Some),
        }
    }

    fn compact_string(&mut self) -> Result<String, RecordError> {
        self.compact_nullable_string()?
            .ok_or(RecordError::UnexpectedNull {
                what: self.what,
                field: "string",
            })
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let position = self.position;
        let length = self.i32()?;
        if length < 0 {
            return Err(RecordError::BadLength {
                what: self.what,
                position,
                length: i64::from(length),
            });
        }
        Ok(Bytes::copy_from_slice(self.take(length as usize)?))
    }

    fn compact_bytes(&mut self) -> Result<Bytes, RecordError> {
        match self.unsigned_varint()? {
            0 => Err(RecordError::UnexpectedNull {
                what: self.what,
                field: "bytes",
            }),
            n => Ok(Bytes::copy_from_slice(self.take(n as usize - 1)?)),
        }
    }

    /// An array count, checked against the bytes left (each element takes at least one).
    fn count(&mut self) -> Result<usize, RecordError> {
        let position = self.position;
        let count = self.i32()?;
        self.checked_count(position, i64::from(count))
    }

    fn compact_count(&mut self) -> Result<usize, RecordError> {
        let position = self.position;
        let raw = self.unsigned_varint()?;
        if raw == 0 {
            return Err(RecordError::UnexpectedNull {
                what: self.what,
                field: "array",
            });
        }
        self.checked_count(position, i64::from(raw) - 1)
    }

    fn checked_count(&self, position: usize, count: i64) -> Result<usize, RecordError> {
        let available = self.bytes.len() - self.position;
        if count < 0 || count as u64 > available as u64 {
            return Err(RecordError::BadLength {
                what: self.what,
                position,
                length: count,
            });
        }
        Ok(count as usize)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()?;
            self.take(size as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_commit_key_matches_kafkas_bytes() {
        // Key version 1, then group, topic (i16-length strings) and partition, as Kafka writes it.
        let key = RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 5,
        };
        let bytes = encode_key(&key);
        assert_eq!(
            bytes.as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 5][..]
        );
        assert_eq!(decode_key(&bytes).unwrap(), key);
        // Version 0 is the legacy form of the same key.
        let legacy = [0, 0, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 5];
        assert_eq!(decode_key(&legacy).unwrap(), key);
    }

    #[test]
    fn group_metadata_key_is_version_2() {
        // The group metadata key is version 2 with the group id only.
        let key = RecordKey::GroupMetadata {
            group: "orders".into(),
        };
        let bytes = encode_key(&key);
        assert_eq!(&bytes[..4], &[0, 2, 0, 6]);
        assert_eq!(decode_key(&bytes).unwrap(), key);
    }

    #[test]
    fn unknown_key_versions_are_reported_not_failed() {
        // Kafka's newer record types (e.g. consumer-group records, key version 3+) load as Unknown.
        assert_eq!(
            decode_key(&[0, 3, 0, 1, b'g']).unwrap(),
            RecordKey::Unknown { version: 3 }
        );
    }

    #[test]
    fn offset_commit_value_version_follows_the_expire_timestamp() {
        // A commit without explicit retention is v3 (with leader epoch); with one, v1 (with expire timestamp).
        let mut value = OffsetCommitValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: None,
        };
        let v3 = encode_offset_commit_value(&value);
        assert_eq!(&v3[..2], &[0, 3]);
        assert_eq!(v3.len(), 2 + 8 + 4 + 2 + 4 + 8);
        assert_eq!(decode_offset_commit_value(&v3).unwrap(), value);
        value.expire_timestamp_ms = Some(1_700_000_100_000);
        let v1 = encode_offset_commit_value(&value);
        assert_eq!(&v1[..2], &[0, 1]);
        let decoded = decode_offset_commit_value(&v1).unwrap();
        assert_eq!(decoded.expire_timestamp_ms, value.expire_timestamp_ms);
        assert_eq!(
            decoded.leader_epoch, NO_LEADER_EPOCH,
            "v1 has no leader epoch"
        );
    }

    #[test]
    fn flexible_offset_commit_value_v4_is_read() {
        // Kafka 4.x may write v4 (compact metadata string, tagged fields such as the topic id).
        let mut raw = vec![0, 4];
        raw.extend_from_slice(&9i64.to_be_bytes());
        raw.extend_from_slice(&3i32.to_be_bytes());
        raw.push(3); // compact string of 2 bytes
        raw.extend_from_slice(b"md");
        raw.extend_from_slice(&11i64.to_be_bytes());
        raw.extend_from_slice(&[1, 0, 16]); // one tagged field: tag 0, 16 bytes (a topic id)
        raw.extend_from_slice(&[0xab; 16]);
        let value = decode_offset_commit_value(&raw).unwrap();
        assert_eq!(
            value,
            OffsetCommitValue {
                offset: 9,
                leader_epoch: 3,
                metadata: "md".into(),
                commit_timestamp_ms: 11,
                expire_timestamp_ms: None,
            }
        );
    }

    #[test]
    fn subscription_topics_are_read_from_the_version_prefix() {
        // The consumer protocol subscription names its topics right after the version.
        let mut raw = BytesMut::new();
        raw.put_i16(1);
        raw.put_i32(2);
        put_string(&mut raw, "a");
        put_string(&mut raw, "bb");
        raw.put_i32(-1); // user data, and fields of later versions, follow
        assert_eq!(subscription_topics(&raw).unwrap(), vec!["a", "bb"]);
        assert!(subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }

    fn member_strategy() -> impl Strategy<Value = MemberMetadataValue> {
        (
            "[a-z0-9-]{0,20}",
            proptest::option::of("[a-z]{1,10}"),
            "[a-z-]{0,10}",
            "[0-9./]{0,15}",
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..50),
            proptest::collection::vec(any::<u8>(), 0..50),
        )
            .prop_map(
                |(member_id, instance, client_id, host, rebalance, session, sub, assign)| {
                    MemberMetadataValue {
                        member_id,
                        group_instance_id: instance,
                        client_id,
                        client_host: host,
                        rebalance_timeout_ms: rebalance,
                        session_timeout_ms: session,
                        subscription: Bytes::from(sub),
                        assignment: Bytes::from(assign),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn keys_round_trip(group in "\\PC{0,30}", topic in "[a-zA-Z0-9._-]{1,40}", partition in any::<i32>(), metadata_key in any::<bool>()) {
            // decode(encode(key)) == key for both key kinds, with any Unicode group id.
            let key = if metadata_key {
                RecordKey::GroupMetadata { group }
            } else {
                RecordKey::OffsetCommit { group, topic, partition }
            };
            prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }

        #[test]
        fn offset_commit_values_round_trip(
            offset in any::<i64>(),
            leader_epoch in any::<i32>(),
            metadata in "\\PC{0,40}",
            commit in any::<i64>(),
            expire in proptest::option::of(0i64..i64::MAX),
        ) {
            // decode(encode(value)) == value; v1 values drop the leader epoch, as Kafka's v1 has none.
            let value = OffsetCommitValue { offset, leader_epoch, metadata, commit_timestamp_ms: commit, expire_timestamp_ms: expire };
            let decoded = decode_offset_commit_value(&encode_offset_commit_value(&value)).unwrap();
            let expected = OffsetCommitValue {
                leader_epoch: if expire.is_some() { NO_LEADER_EPOCH } else { leader_epoch },
                ..value
            };
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn group_metadata_values_round_trip(
            protocol_type in "[a-z]{0,10}",
            generation in any::<i32>(),
            protocol in proptest::option::of("[a-z-]{1,20}"),
            leader in proptest::option::of("[a-z0-9-]{1,20}"),
            timestamp in any::<i64>(),
            members in proptest::collection::vec(member_strategy(), 0..5),
        ) {
            // decode(encode(value)) == value, and the size is what the fields add up to.
            let value = GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp_ms: timestamp, members };
            let bytes = encode_group_metadata_value(&value);
            let expected_size = 2 + 2 + value.protocol_type.len() + 4
                + 2 + value.protocol.as_ref().map_or(0, String::len)
                + 2 + value.leader.as_ref().map_or(0, String::len)
                + 8 + 4
                + value.members.iter().map(|m| 2 + m.member_id.len()
                    + 2 + m.group_instance_id.as_ref().map_or(0, String::len)
                    + 2 + m.client_id.len() + 2 + m.client_host.len() + 4 + 4
                    + 4 + m.subscription.len() + 4 + m.assignment.len()).sum::<usize>();
            prop_assert_eq!(bytes.len(), expected_size);
            prop_assert_eq!(decode_group_metadata_value(&bytes).unwrap(), value);
        }

        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..120)) {
            // Bytes from the disk never cause a panic, only an error.
            let _ = decode_key(&raw);
            let _ = decode_offset_commit_value(&raw);
            let _ = decode_group_metadata_value(&raw);
            let _ = subscription_topics(&raw);
        }
    }
}
