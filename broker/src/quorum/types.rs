//! The openraft type configuration of the metadata quorum.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// openraft's node id. Kafka's node ids are `i32`; the quorum's API takes
/// and gives `i32` and converts at its edge (ids are never negative).
pub type NodeId = u64;

/// An opaque application payload: one entry of the metadata log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(pub Vec<u8>);

openraft::declare_raft_types!(
    /// The quorum's openraft types: opaque payloads, nodes addressed by
    /// their controller listener, snapshots held in memory.
    pub TypeConfig:
        D = Payload,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
