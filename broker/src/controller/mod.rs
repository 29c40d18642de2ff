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
//! predecessor left). The records are committed to the metadata log and
//! applied through the [`MetadataLoader`]; in the single-node default the
//! log is this process's own.

pub mod membership;
pub mod placement;
pub mod topics;

use std::sync::Arc;

use uuid::Uuid;

use crate::ids::{BrokerId, Offset};
use crate::metadata::{Endpoint, MetadataImage, MetadataLoader, MetadataRecord};
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
    /// The offset the next committed record takes; held while deciding and
    /// committing, so that decisions are taken one at a time.
    next_offset: tokio::sync::Mutex<Offset>,
}

impl Controller {
    pub fn new(config: ControllerConfig, metadata: Arc<MetadataLoader>) -> Controller {
        let next_offset = metadata.image().offset().next();
        Controller {
            config,
            metadata,
            next_offset: tokio::sync::Mutex::new(next_offset),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Decides against the current image and commits the records, unless
    /// `validate_only`; answers once they are applied here.
    async fn submit<T>(
        &self,
        validate_only: bool,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), TopicError>,
    ) -> Result<T, TopicError> {
        let mut next_offset = self.next_offset.lock().await;
        let (records, outcome) = decide(&self.metadata.image())?;
        if validate_only || records.is_empty() {
            return Ok(outcome);
        }
        let first = *next_offset;
        let count = records.len() as i64;
        let metadata = self.metadata.clone();
        // Applying creates and deletes logs: blocking work.
        tokio::task::spawn_blocking(move || metadata.apply(first, &records))
            .await
            .expect("applying metadata records panicked");
        *next_offset = Offset(first.0 + count);
        Ok(outcome)
    }

    /// Applies records decided at startup, before anything else can submit
    /// (the bootstrap of a data dir, this broker's registration); blocking.
    pub fn commit_at_startup(&self, records: Vec<MetadataRecord>) {
        let mut next_offset = self
            .next_offset
            .try_lock()
            .expect("nothing else submits before startup is over");
        if records.is_empty() {
            return;
        }
        let first = *next_offset;
        self.metadata.apply(first, &records);
        *next_offset = Offset(first.0 + records.len() as i64);
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
    pub async fn register_broker(&self, id: BrokerId, endpoint: Endpoint) {
        let _ = self
            .submit(false, |_| {
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
            .await;
    }
}
