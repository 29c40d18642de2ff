//! The controller: the only writer of the cluster metadata. Request
//! handlers and the group runtime submit what they need (create or delete a
//! topic, add partitions, register a broker); the controller decides against
//! the current image, commits the records, and answers once this broker has
//! applied them, so the caller finds its change in the image.
//!
//! - [`topics`]: decisions on topics, requests and image in, records out.
//! - [`placement`]: where new replicas go.
//! - [`membership`]: decisions on brokers (sessions, fencing) and leader elections.
//!
//! Decisions are taken one at a time (a decision reads the image its
//! predecessor left). Each decision's records are one entry of the metadata
//! log, proposed to the [`Quorum`]; the answer comes once the entry is
//! committed and applied here through the [`MetadataLoader`]. In the
//! single-node default the quorum is this process alone.

pub mod membership;
pub mod placement;
pub mod topics;

use std::sync::Arc;

use uuid::Uuid;

use protocol::ErrorCode;

use crate::ids::{BrokerId, Offset};
use crate::metadata::records::encode_batch;
use crate::metadata::{Endpoint, MetadataImage, MetadataLoader, MetadataRecord};
use crate::quorum::{Quorum, QuorumError};
use crate::topics::TopicError;
pub use topics::{CreatedTopic, NewTopic};

/// Controller settings (Kafka's names in the docs).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `num.partitions`: partitions of a topic created without a count.
    pub default_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created without a factor.
    pub default_replication_factor: i16,
}

pub struct Controller {
    config: ControllerConfig,
    metadata: Arc<MetadataLoader>,
    quorum: Quorum,
    /// Held while deciding and committing, so that decisions are taken one at a time.
    deciding: tokio::sync::Mutex<()>,
}

impl Controller {
    pub fn new(
        config: ControllerConfig,
        metadata: Arc<MetadataLoader>,
        quorum: Quorum,
    ) -> Controller {
        Controller {
            config,
            metadata,
            quorum,
            deciding: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    pub fn metadata(&self) -> &Arc<MetadataLoader> {
        &self.metadata
    }

    /// Decides against the current image and commits the records, unless
    /// `validate_only`; answers once they are applied here.
    async fn submit<T>(
        &self,
        validate_only: bool,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), TopicError>,
    ) -> Result<T, TopicError> {
        let _deciding = self.deciding.lock().await;
        if !self.quorum.is_leader() {
            return Err(not_controller(self.quorum.leader()));
        }
        let (records, outcome) = decide(&self.metadata.image())?;
        if validate_only || records.is_empty() {
            return Ok(outcome);
        }
        self.commit(records).await?;
        Ok(outcome)
    }

    /// Commits records as one entry of the metadata log; returns its offset
    /// once it is applied here.
    pub async fn commit(&self, records: Vec<MetadataRecord>) -> Result<Offset, TopicError> {
        match self.quorum.propose(encode_batch(&records)).await {
            Ok(index) => Ok(Offset(index as i64)),
            Err(QuorumError::NotLeader { leader }) => Err(not_controller(leader)),
            Err(e) => Err(TopicError::new(
                ErrorCode::REQUEST_TIMED_OUT,
                format!("the metadata log did not commit: {e}"),
            )),
        }
    }

    pub async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<CreatedTopic, TopicError> {
        let id = Uuid::new_v4();
        self.submit(validate_only, |image| {
            topics::create_topic(image, &topic, &self.config, id)
        })
        .await
    }

    /// Deletes a topic; answers its id.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        self.submit(false, |image| topics::delete_topic(image, name))
            .await
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: Vec<Vec<BrokerId>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.submit(validate_only, |image| {
            Ok((
                topics::create_partitions(image, name, total, &assignments)?,
                (),
            ))
        })
        .await
    }

    /// Registers this broker (or a restart of it) with its client endpoint, unfenced.
    pub async fn register_broker(
        &self,
        id: BrokerId,
        endpoint: Endpoint,
    ) -> Result<(), TopicError> {
        self.submit(false, |_| {
            Ok((
                vec![MetadataRecord::RegisterBroker {
                    id,
                    incarnation: Uuid::new_v4(),
                    endpoints: vec![endpoint],
                    rack: None,
                    fenced: false,
                }],
                (),
            ))
        })
        .await
    }
}

fn not_controller(leader: Option<i32>) -> TopicError {
    TopicError::new(
        ErrorCode::NOT_CONTROLLER,
        match leader {
            Some(id) => format!("this broker is not the active controller; {id} is"),
            None => "no active controller yet".to_string(),
        },
    )
}
