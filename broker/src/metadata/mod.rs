//! How a broker knows the cluster: committed metadata records are applied to
//! an immutable [`MetadataImage`]; the [`MetadataDelta`] between two images
//! drives the local actions of each [`MetadataPublisher`] (the replica
//! manager, the group coordinator).
//!
//! ```text
//! committed records --apply--> MetadataImage --diff--> MetadataDelta --> publishers
//! ```
//!
//! - [`records`]: the records of the metadata log (Kafka's KRaft records).
//! - [`image`]: the image and how a record changes it.
//! - [`delta`]: what changed between two images.
//! - [`MetadataLoader`]: applies batches in log order, publishes, and then
//!   makes the new image the one request handlers read.

pub mod delta;
pub mod image;
pub mod records;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::watch;

pub use delta::{MetadataDelta, PartitionDelta};
pub use image::{ApplyError, ImageSnapshot, MetadataImage, TopicImage};
pub use records::{
    BrokerRegistration, Endpoint, MetadataRecord, PartitionRegistration, Reassignment,
};

use crate::ids::Offset;

/// Something that acts on metadata changes. Called in log order, one batch
/// at a time, before handlers can see the new image: what a handler finds
/// in the image is already acted on locally (a topic's logs exist).
pub trait MetadataPublisher: Send + Sync {
    fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta);
}

/// Holds the current image and applies committed batches to it.
pub struct MetadataLoader {
    current: RwLock<Arc<MetadataImage>>,
    publishers: OnceLock<Vec<Arc<dyn MetadataPublisher>>>,
    /// Serialises applies: batches apply one at a time, in log order.
    applying: Mutex<()>,
    /// The offset of the last batch applied and published.
    applied: watch::Sender<Offset>,
}

impl Default for MetadataLoader {
    fn default() -> Self {
        MetadataLoader {
            current: RwLock::new(Arc::new(MetadataImage::empty())),
            publishers: OnceLock::new(),
            applying: Mutex::new(()),
            applied: watch::Sender::new(Offset::NONE),
        }
    }
}

impl MetadataLoader {
    /// Sets who acts on changes; once, before the first batch is applied.
    pub fn set_publishers(&self, publishers: Vec<Arc<dyn MetadataPublisher>>) {
        assert!(
            self.publishers.set(publishers).is_ok(),
            "publishers are set once"
        );
    }

    /// The image as of the last batch published.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.current.read().expect("image lock").clone()
    }

    /// Applies a batch committed at `offset`, publishes the delta, then
    /// installs the new image. Blocking: publishers create and delete logs.
    pub fn apply(&self, offset: Offset, records: &[MetadataRecord]) -> Arc<MetadataImage> {
        let _applying = self.applying.lock().expect("apply lock");
        let old = self.image();
        if offset <= old.offset() {
            // Already in the image (a snapshot restored at start covered it).
            return old;
        }
        let (next, errors) = old.apply(offset, records);
        for error in errors {
            // The controller checks every record against the image before
            // committing it, so this is a bug or a damaged log.
            tracing::error!(%offset, %error, "skipped a metadata record that does not fit the image");
        }
        self.publish(old, next)
    }

    /// Replaces the image with a snapshot's, publishing what changed.
    pub fn install(&self, image: MetadataImage) -> Arc<MetadataImage> {
        let _applying = self.applying.lock().expect("apply lock");
        let old = self.image();
        self.publish(old, image)
    }

    fn publish(&self, old: Arc<MetadataImage>, next: MetadataImage) -> Arc<MetadataImage> {
        let next = Arc::new(next);
        let delta = MetadataDelta::between(&old, &next);
        if !delta.is_empty() {
            for publisher in self.publishers.get().map(Vec::as_slice).unwrap_or(&[]) {
                publisher.publish(&next, &delta);
            }
        }
        *self.current.write().expect("image lock") = next.clone();
        self.applied.send_replace(next.offset());
        next
    }

    /// Sees the offset of each batch applied.
    pub fn watch_applied(&self) -> watch::Receiver<Offset> {
        self.applied.subscribe()
    }
}

/// The metadata log's entries are record batches; the loader is the state
/// machine the quorum applies them to, and its image is what snapshots hold.
impl crate::quorum::StateMachine for MetadataLoader {
    fn apply(&self, index: u64, payload: &[u8]) {
        let records = records::decode_batch(payload).unwrap_or_else(|error| {
            // The storage engine checks each entry's CRC, so this is a bug.
            tracing::error!(index, %error, "skipped a metadata log entry that does not decode");
            Vec::new()
        });
        MetadataLoader::apply(self, Offset(index as i64), &records);
    }

    fn snapshot(&self) -> (u64, Vec<u8>) {
        let image = self.image();
        let bytes = bincode::serialize(&image.to_snapshot()).expect("an image always encodes");
        (image.offset().0.max(0) as u64, bytes)
    }

    fn restore(&self, index: u64, snapshot: &[u8]) {
        match ImageSnapshot::decode(snapshot) {
            Ok(snapshot) => {
                let mut image = MetadataImage::from_snapshot(snapshot);
                image.set_offset(Offset(index as i64));
                self.install(image);
            }
            // Snapshot files are checksummed by the quorum, so this is a bug.
            Err(error) => tracing::error!(index, %error, "cannot restore a metadata snapshot"),
        }
    }
}
