//! Producer id allocation for InitProducerId. Ids are handed out from blocks;
//! the end of the current block is persisted before any id in it is given
//! out, so ids stay unique across restarts (a restart skips the rest of the
//! block). The shape matches Kafka's AllocateProducerIds, so the controller
//! can take over handing out blocks without changing callers.

use std::path::PathBuf;
use std::sync::Mutex;

/// Ids per persisted block: one fsync per this many producers.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
const BLOCK_FILE: &str = "producer-id-block";

pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<Block>,
}

struct Block {
    next: i64,
    end: i64,
}

impl ProducerIdAllocator {
    pub fn open(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = data_dir.join(BLOCK_FILE);
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        anyhow::ensure!(next >= 0, "{} holds a negative id", path.display());
        Ok(ProducerIdAllocator {
            path,
            state: Mutex::new(Block { next, end: next }),
        })
    }

    /// A producer id never handed out before, on this data dir.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut block = self.state.lock().expect("producer id lock");
        if block.next == block.end {
            let end = block.end + PRODUCER_ID_BLOCK_SIZE;
            crate::fsutil::write_atomically(&self.path, format!("{end}\n").as_bytes())?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        assert!(
            block.next <= block.end,
            "ids stay inside the persisted block"
        );
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_unique_across_restarts() {
        // A restarted allocator never hands out an id the previous one did.
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIdAllocator::open(dir.path()).unwrap();
        let a: Vec<i64> = (0..3).map(|_| first.allocate().unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2]);
        drop(first);
        let second = ProducerIdAllocator::open(dir.path()).unwrap();
        let b = second.allocate().unwrap();
        assert!(b > 2, "{b}");
        assert_eq!(b, PRODUCER_ID_BLOCK_SIZE);
    }
}
