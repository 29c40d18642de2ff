//! KIP-951: a Produce or Fetch answered `NOT_LEADER_OR_FOLLOWER` or
//! `FENCED_LEADER_EPOCH` names the partition's current leader and epoch, and
//! the response carries those leaders' endpoints, so a client redirects at
//! once instead of refreshing its metadata first.

use std::collections::BTreeSet;

use protocol::ErrorCode;

use crate::ids::{BrokerId, LeaderEpoch};
use crate::metadata::{MetadataImage, TopicImage};

/// Whether an answer with `code` should name the current leader.
pub fn redirects(code: i16) -> bool {
    code == ErrorCode::NOT_LEADER_OR_FOLLOWER.code()
        || code == ErrorCode::FENCED_LEADER_EPOCH.code()
}

/// The leader and leader epoch of `topic`'s partition `index`, when it has a leader.
pub fn current_leader(topic: &TopicImage, index: i32) -> Option<(BrokerId, LeaderEpoch)> {
    let registration = topic.partition(index)?;
    (!registration.leader.is_none()).then_some((registration.leader, registration.leader_epoch))
}

/// A leader's client endpoint: `(id, host, port, rack)`.
pub type NodeEndpoint = (i32, String, i32, Option<String>);

/// The client endpoints of `leaders`, from the image (unknown ones left out).
pub fn endpoints(image: &MetadataImage, leaders: &BTreeSet<BrokerId>) -> Vec<NodeEndpoint> {
    leaders
        .iter()
        .filter_map(|id| {
            let broker = image.broker(*id)?;
            let endpoint = broker.client_endpoint()?;
            Some((
                id.0,
                endpoint.host.clone(),
                i32::from(endpoint.port),
                broker.rack.clone(),
            ))
        })
        .collect()
}
