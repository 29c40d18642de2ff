//! Producer ids for InitProducerId. A broker hands out ids from blocks the
//! active controller allocates (Kafka's AllocateProducerIds): each block is
//! committed to the metadata log before any id in it is given out, so ids
//! are unique across the cluster and across restarts (a restart abandons
//! the rest of its block).

use protocol::ErrorCode;

use crate::Broker;

/// Ids per block, as Kafka's controller allocates them: one metadata
/// commit per this many producers.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// The file an older broker kept its next block in; read once, when the
/// data dir is adopted into the metadata log.
pub const LEGACY_BLOCK_FILE: &str = "producer-id-block";

#[derive(Default)]
pub struct ProducerIdAllocator {
    block: tokio::sync::Mutex<Block>,
}

#[derive(Default)]
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIdAllocator {
    /// A producer id never handed out before in this cluster.
    pub async fn allocate(&self, broker: &Broker) -> Result<i64, ErrorCode> {
        let mut block = self.block.lock().await;
        if block.next == block.end {
            let (start, len) = broker
                .controller
                .allocate_producer_ids(broker.node_id(), broker.broker_epoch())
                .await?;
            assert!(len > 0, "the controller hands out non-empty blocks");
            *block = Block {
                next: start,
                end: start + i64::from(len),
            };
        }
        let id = block.next;
        block.next += 1;
        assert!(
            block.next <= block.end,
            "ids stay inside the allocated block"
        );
        Ok(id)
    }
}

/// The next producer id an older broker's data dir recorded, if any.
pub fn legacy_next_producer_id(data_dir: &std::path::Path) -> anyhow::Result<Option<i64>> {
    let path = data_dir.join(LEGACY_BLOCK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let next = text
                .trim()
                .parse::<i64>()
                .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
            anyhow::ensure!(next >= 0, "{} holds a negative id", path.display());
            Ok(Some(next))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
