//! DescribeLogDirs and AlterReplicaLogDirs (KIP-113). A broker keeps every
//! partition in its one data directory, so that directory is its one log dir:
//! DescribeLogDirs reports it (its volume's total and usable bytes, and each
//! hosted replica's size and lag), and AlterReplicaLogDirs can only be asked
//! to move a replica to where it already is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, TopicName,
};
use protocol::{ErrorCode, StrBytes};

use crate::partition::Partition;
use crate::server::dispatch::{DispatchError, Reply, Request};
use crate::Broker;

/// Kafka names a replica being moved `<topic>-<partition>.<32 hex digits>-future`,
/// and refuses a move whose name would exceed a file name's 255 bytes.
const FUTURE_DIR_NAME_BYTES_MAX: usize = 255;
/// The part of a future replica's directory name after `<topic>-<partition>`.
const FUTURE_DIR_SUFFIX_BYTES: usize = ".".len() + 32 + "-future".len();

/// The broker's log dir as clients see it: its data dir's absolute path.
pub fn log_dir(broker: &Broker) -> String {
    let dir = broker.logs.data_dir();
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: DescribeLogDirsRequest = request.decode(&mut body)?;
    // Null asks for every replica here; a list asks for those of its partitions
    // hosted here, and the others are left out, as Kafka leaves them out.
    let wanted: Option<BTreeMap<&str, BTreeSet<i32>>> = req.topics.as_ref().map(|topics| {
        let mut wanted: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
        for topic in topics {
            wanted
                .entry(topic.topic.0.as_str())
                .or_default()
                .extend(topic.partitions.iter().copied());
        }
        wanted
    });
    let mut by_topic: BTreeMap<String, Vec<Arc<Partition>>> = BTreeMap::new();
    for partition in broker.replicas.all() {
        let asked = match &wanted {
            None => true,
            Some(wanted) => wanted
                .get(partition.topic.as_str())
                .is_some_and(|indexes| indexes.contains(&partition.index)),
        };
        if asked {
            by_topic
                .entry(partition.topic.clone())
                .or_default()
                .push(partition);
        }
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions.iter().map(|p| describe_replica(p)).collect())
        })
        .collect();
    let dir = log_dir(broker);
    let (total_bytes, usable_bytes) = volume_bytes(broker.logs.data_dir());
    let result = DescribeLogDirsResult::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_log_dir(StrBytes::from_string(dir))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    let response = DescribeLogDirsResponse::default()
        .with_error_code(ErrorCode::NONE.code())
        .with_results(vec![result]);
    Ok(Reply::Now(request.respond(&response)?))
}

fn describe_replica(partition: &Partition) -> DescribeLogDirsPartition {
    // Kafka's lag is how far this replica's log end is behind its high
    // watermark: 0 on a leader, and on a follower the committed records it
    // has still to fetch.
    let offset_lag = (partition.high_watermark() - partition.log_end_offset()).max(0);
    DescribeLogDirsPartition::default()
        .with_partition_index(partition.index)
        .with_partition_size(i64::try_from(partition.size_bytes()).unwrap_or(i64::MAX))
        .with_offset_lag(offset_lag)
        .with_is_future_key(false)
}

/// The total and usable bytes of the volume `dir` is on; -1 (Kafka's
/// "unknown") when the file system cannot say.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(stats) => {
            let bytes = |blocks: u64| {
                i64::try_from(blocks.saturating_mul(stats.f_frsize)).unwrap_or(i64::MAX)
            };
            (bytes(stats.f_blocks), bytes(stats.f_bavail))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the log dir's volume size");
            (-1, -1)
        }
    }
}

pub fn alter_replica_log_dirs(
    broker: &Arc<Broker>,
    request: &Request,
    mut body: Bytes,
) -> Result<Reply, DispatchError> {
    let req: AlterReplicaLogDirsRequest = request.decode(&mut body)?;
    let dir = log_dir(broker);
    let image = broker.image();
    // A partition named twice is answered once, for the last dir naming it
    // (Kafka reads the request into a map).
    let mut results: BTreeMap<String, BTreeMap<i32, ErrorCode>> = BTreeMap::new();
    for wanted in &req.dirs {
        for topic in &wanted.topics {
            let name = topic.name.0.as_str();
            for &index in &topic.partitions {
                let code = replica_move(broker, &image, &dir, wanted.path.as_str(), name, index);
                results
                    .entry(name.to_string())
                    .or_default()
                    .insert(index, code);
            }
        }
    }
    let results = results
        .into_iter()
        .map(|(name, partitions)| {
            AlterReplicaLogDirTopicResult::default()
                .with_topic_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, code)| {
                            AlterReplicaLogDirPartitionResult::default()
                                .with_partition_index(index)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    let response = AlterReplicaLogDirsResponse::default().with_results(results);
    Ok(Reply::Now(request.respond(&response)?))
}

/// The answer to moving replica `topic`-`index` on this broker to `path`, in
/// the order Kafka checks: the name, the dir, then the replica. The replica is
/// always in the one log dir already, so a move that can be made is done.
fn replica_move(
    broker: &Broker,
    image: &crate::metadata::MetadataImage,
    log_dir: &str,
    path: &str,
    topic: &str,
    index: i32,
) -> ErrorCode {
    let replica_dir_name_bytes = topic.len() + 1 + index.to_string().len();
    if replica_dir_name_bytes + FUTURE_DIR_SUFFIX_BYTES > FUTURE_DIR_NAME_BYTES_MAX {
        return ErrorCode::INVALID_TOPIC_EXCEPTION;
    }
    if path != log_dir {
        return ErrorCode::LOG_DIR_NOT_FOUND;
    }
    match broker.replicas.get(topic, index) {
        Some(partition) if partition.is_offline() => ErrorCode::KAFKA_STORAGE_ERROR,
        Some(_) => ErrorCode::NONE,
        // A partition of the cluster that is not hosted here: Kafka keeps
        // `REPLICA_NOT_AVAILABLE` for this API, where others say NOT_LEADER_OR_FOLLOWER.
        None if image
            .topic(topic)
            .and_then(|t| t.partition(index))
            .is_some() =>
        {
            ErrorCode::REPLICA_NOT_AVAILABLE
        }
        None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
    }
}
