//! Rebuilding a partition's groups from its `__consumer_offsets` records.
//!
//! Records are replayed in log order and only the latest record of each key
//! is kept (a tombstone removes the key), which is exactly what a compacted
//! log would hold. A group with a metadata record comes back as Kafka loads
//! it: Stable with its members and their assignments (their sessions start
//! at load time), or Empty; offsets without group metadata form a "simple"
//! group. Pure: the runtime reads the log and hands each record to
//! [`Loader::replay`].

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use crate::group::coordinator::{Coordinator, MemberIds};
use crate::group::messages::Protocol;
use crate::group::records::{self, GroupMetadataValue, RecordError, RecordKey};
use crate::group::state::{CommittedOffset, Group, GroupState, Member};
use crate::group::GroupConfig;
use crate::storage::TopicPartition;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("record at offset {offset} has no key")]
    MissingKey { offset: i64 },
    #[error("record at offset {offset}: {source}")]
    Record { offset: i64, source: RecordError },
    #[error("group {group} has members but no selected protocol")]
    Inconsistent { group: String },
}

/// The latest record of every key seen so far.
#[derive(Default)]
pub struct Loader {
    offsets: HashMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    metadata: HashMap<String, GroupMetadataValue>,
    /// Records of types this broker does not know (Kafka's newer group kinds).
    pub skipped: usize,
    pub replayed: usize,
}

impl Loader {
    /// Applies one record; `offset` is its log offset, for error messages.
    pub fn replay(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), LoadError> {
        let key = key.ok_or(LoadError::MissingKey { offset })?;
        let key =
            records::decode_key(key).map_err(|source| LoadError::Record { offset, source })?;
        self.replayed += 1;
        match key {
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            } => {
                let tp = TopicPartition::new(topic, partition);
                match value {
                    Some(value) => {
                        let value = records::decode_offset_commit_value(value)
                            .map_err(|source| LoadError::Record { offset, source })?;
                        self.offsets
                            .entry(group)
                            .or_default()
                            .insert(tp, CommittedOffset::from_value(value));
                    }
                    None => {
                        if let Some(offsets) = self.offsets.get_mut(&group) {
                            offsets.remove(&tp);
                            if offsets.is_empty() {
                                self.offsets.remove(&group);
                            }
                        }
                    }
                }
            }
            RecordKey::GroupMetadata { group } => match value {
                Some(value) => {
                    let value = records::decode_group_metadata_value(value)
                        .map_err(|source| LoadError::Record { offset, source })?;
                    self.metadata.insert(group, value);
                }
                None => {
                    self.metadata.remove(&group);
                }
            },
            RecordKey::Unknown { version } => {
                tracing::debug!(
                    offset,
                    version,
                    "skipping a __consumer_offsets record of an unknown type"
                );
                self.skipped += 1;
            }
        }
        Ok(())
    }

    /// The groups as the log leaves them, installed in a fresh state machine.
    pub fn finish<R>(
        self,
        config: GroupConfig,
        member_ids: MemberIds,
        now_ms: i64,
    ) -> Result<Coordinator<R>, LoadError> {
        let Loader {
            mut offsets,
            metadata,
            ..
        } = self;
        let mut coordinator = Coordinator::new(config, member_ids);
        for (group_id, value) in metadata {
            let group_offsets = offsets.remove(&group_id).unwrap_or_default();
            let group = loaded_group(group_id, Some(value), group_offsets, now_ms)?;
            coordinator.install_loaded_group(group, now_ms);
        }
        for (group_id, group_offsets) in offsets {
            let group = loaded_group(group_id, None, group_offsets, now_ms)?;
            coordinator.install_loaded_group(group, now_ms);
        }
        Ok(coordinator)
    }
}

fn loaded_group<R>(
    group_id: String,
    value: Option<GroupMetadataValue>,
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
    now_ms: i64,
) -> Result<Group<R>, LoadError> {
    let mut group = Group::new(group_id.clone(), now_ms);
    group.offsets = offsets;
    let Some(value) = value else {
        // Offsets only: a simple group, Empty since its first commit.
        let first_commit = group.offsets.values().map(|o| o.commit_timestamp_ms).min();
        group.set_loaded_state(GroupState::Empty, first_commit);
        return Ok(group);
    };
    group.generation_id = value.generation;
    group.protocol_type = (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
    group.protocol_name = value.protocol.clone();
    if !value.members.is_empty() && (value.protocol.is_none() || group.protocol_type.is_none()) {
        return Err(LoadError::Inconsistent { group: group_id });
    }
    let protocol_name = value.protocol.clone().unwrap_or_default();
    for member in value.members {
        group.add_member(Member {
            member_id: member.member_id,
            group_instance_id: member.group_instance_id,
            client_id: member.client_id,
            client_host: member.client_host,
            rebalance_timeout_ms: member.rebalance_timeout_ms,
            session_timeout_ms: member.session_timeout_ms,
            protocol_type: value.protocol_type.clone(),
            protocols: vec![Protocol {
                name: protocol_name.clone(),
                metadata: member.subscription,
            }],
            assignment: member.assignment,
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
        });
    }
    if let Some(leader) = value.leader.filter(|l| group.has_member(l)) {
        group.leader_id = Some(leader);
    }
    let state = if group.has_members() {
        GroupState::Stable
    } else {
        GroupState::Empty
    };
    let timestamp =
        (value.current_state_timestamp_ms >= 0).then_some(value.current_state_timestamp_ms);
    group.set_loaded_state(state, timestamp);
    group.subscribed_topics = group.compute_subscribed_topics();
    Ok(group)
}
