//! The runtime around the replication state machines besides the fetchers:
//! a timer that ticks every leader (lagging followers, expired `acks=all`
//! waits) and checkpoints the high watermarks, and the sender of ISR
//! proposals to the controller (Kafka's AlterPartition).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use protocol::messages::AlterPartitionRequest;
use protocol::ErrorCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::partition::IsrProposal;
use crate::Broker;

/// How often leaders look at their followers' lag and their waiting requests.
const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// How often the high watermarks are checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`).
const HIGH_WATERMARK_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on proposals in one AlterPartition request.
const PROPOSALS_PER_REQUEST_MAX: usize = 1_000;
/// The pause before a refused or unsent proposal may be made again.
const PROPOSAL_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Starts the replication runtime: replica fetchers, the leaders' timer and
/// the ISR proposer. The tasks end on `shutdown`.
pub fn spawn(broker: Arc<Broker>, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(super::fetcher::run(broker.clone(), shutdown.clone())),
        tokio::spawn(tick(broker.clone(), shutdown.clone())),
    ];
    if let Some(proposals) = broker.replicas.take_isr_proposals() {
        tasks.push(tokio::spawn(propose(broker, proposals, shutdown)));
    }
    tasks
}

async fn tick(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoint = tokio::time::interval(HIGH_WATERMARK_CHECKPOINT_INTERVAL);
    checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now_ms = crate::now_ms();
                for partition in broker.replicas.all() {
                    partition.tick(now_ms);
                }
            }
            _ = checkpoint.tick() => {
                let replicas = broker.replicas.clone();
                let written = tokio::task::spawn_blocking(move || replicas.write_high_watermarks()).await;
                if let Ok(Err(e)) = written {
                    tracing::error!(error = %e, "cannot checkpoint the high watermarks");
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Sends ISR proposals to the controller, several partitions per request.
async fn propose(
    broker: Arc<Broker>,
    mut proposals: mpsc::Receiver<IsrProposal>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            first = proposals.recv() => first,
            _ = shutdown.cancelled() => return,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < PROPOSALS_PER_REQUEST_MAX {
            match proposals.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let request = alter_partition_request(&broker, &batch);
        let answered = broker.controller.alter_partition(request).await;
        let mut refused: Vec<&IsrProposal> = Vec::new();
        match answered {
            Ok(response) if response.error_code == 0 => {
                for topic in &response.topics {
                    for data in &topic.partitions {
                        if data.error_code == 0 {
                            continue;
                        }
                        if let Some(proposal) = batch.iter().find(|p| {
                            p.topic_id == topic.topic_id && p.partition == data.partition_index
                        }) {
                            tracing::info!(topic = %proposal.topic, partition = proposal.partition, code = %ErrorCode(data.error_code), "ISR change refused");
                            refused.push(proposal);
                        }
                    }
                }
            }
            Ok(response) => {
                tracing::warn!(code = %ErrorCode(response.error_code), "AlterPartition refused");
                refused.extend(batch.iter());
            }
            Err(code) => {
                tracing::warn!(%code, "AlterPartition failed");
                refused.extend(batch.iter());
            }
        }
        if !refused.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(PROPOSAL_RETRY_BACKOFF) => {}
                _ = shutdown.cancelled() => return,
            }
            for proposal in refused {
                if let Some(partition) = broker.replicas.get(&proposal.topic, proposal.partition) {
                    partition.isr_refused();
                }
            }
        }
    }
}

fn alter_partition_request(broker: &Broker, batch: &[IsrProposal]) -> AlterPartitionRequest {
    let image = broker.image();
    let mut topics: BTreeMap<uuid::Uuid, Vec<PartitionData>> = BTreeMap::new();
    for proposal in batch {
        let members = proposal
            .isr
            .iter()
            .map(|member| {
                BrokerState::default()
                    .with_broker_id(protocol::messages::BrokerId(member.0))
                    .with_broker_epoch(image.broker(*member).map_or(-1, |b| b.epoch))
            })
            .collect();
        topics.entry(proposal.topic_id).or_default().push(
            PartitionData::default()
                .with_partition_index(proposal.partition)
                .with_leader_epoch(proposal.leader_epoch.0)
                .with_partition_epoch(proposal.partition_epoch.0)
                .with_new_isr_with_epochs(members),
        );
    }
    AlterPartitionRequest::default()
        .with_broker_id(protocol::messages::BrokerId(broker.node_id().0))
        .with_broker_epoch(broker.broker_epoch())
        .with_topics(
            topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    TopicData::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
}
