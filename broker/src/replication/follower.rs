//! The follower side of one partition's replication.
//!
//! A follower fetches from its leader at its own log end offset (LEO),
//! telling the leader the epoch of its last batch. The leader either sends
//! the batches that follow, or, when that epoch ends earlier in its own log
//! than the follower's log does, answers with a diverging epoch (KIP-320):
//! the follower then truncates to the end of the last epoch both logs share
//! and fetches again, so it never keeps a suffix the leader does not have.
//! The follower's high watermark is the leader's, capped by its own LEO.
//!
//! The runtime reads the local log for the machine (the end offset of an
//! epoch, the LEO after an append or a truncation) and carries out its
//! commands; the machine decides.

use bytes::Bytes;
use protocol::ErrorCode;

use crate::ids::{BrokerId, LeaderEpoch};

/// Settings of the follower side (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct FollowerConfig {
    /// `replica.fetch.backoff.ms`: the pause after a failed fetch.
    pub fetch_backoff_ms: i64,
}

/// The pause after a leader answered that it does not lead in this
/// follower's epoch yet (`UNKNOWN_LEADER_EPOCH`, `NOT_LEADER_OR_FOLLOWER`),
/// or does not know the topic yet (`UNKNOWN_TOPIC_ID`,
/// `UNKNOWN_TOPIC_OR_PARTITION`): its metadata is a moment behind ours, and
/// the controller's records reach every broker within milliseconds, so it
/// asks again soon rather than after the whole `replica.fetch.backoff.ms`
/// (1 s by default). A leader's `acks=all` writes wait for this fetch, so
/// the full backoff added a second to every failover in which the follower
/// heard of the election first, and held the first writes to a new topic
/// for a second whenever a follower heard of the topic first.
pub const LEADER_CATCH_UP_BACKOFF_MS: i64 = 50;

/// What to ask the leader for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub fetch_offset: i64,
    /// The epoch of the last batch in the local log; -1 when the log holds none.
    pub last_fetched_epoch: i32,
    /// The leader epoch this follower knows: a leader in another epoch refuses.
    pub current_leader_epoch: LeaderEpoch,
}

/// The leader's answer to a fetch of this partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAnswer {
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// `(epoch, end offset)` when the follower's log diverges from the leader's.
    pub diverging_epoch: Option<(i32, i64)>,
    pub records: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The leader answered a fetch made from [`FollowerState::fetch_position`].
    /// `local_epoch_end` is the local log's end offset for the diverging epoch
    /// (as `PartitionLog::end_offset_for_epoch` gives it), when there is one.
    Fetched {
        answer: FetchAnswer,
        local_epoch_end: Option<(i32, i64)>,
        now_ms: i64,
    },
    /// The local log changed (an append or a truncation the machine asked for):
    /// it now ends at `log_end_offset`, its last batch in `last_epoch`.
    LogChanged {
        log_end_offset: i64,
        last_epoch: Option<i32>,
    },
    /// The local log refused what the leader sent.
    AppendFailed { now_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Append the leader's batches, keeping their offsets and epochs.
    Append { records: Bytes },
    /// Drop everything at and after `offset`.
    Truncate { offset: i64 },
    /// Empty the log and restart it at `offset` (the leader no longer has ours).
    TruncateFullyAndStartAt { offset: i64 },
    /// The high watermark moved to `offset`.
    UpdateHighWatermark { offset: i64 },
}

pub struct FollowerState {
    config: FollowerConfig,
    leader: BrokerId,
    leader_epoch: LeaderEpoch,
    log_end_offset: i64,
    last_epoch: Option<i32>,
    high_watermark: i64,
    /// The leader's high watermark in its last answer.
    leader_high_watermark: i64,
    /// No fetch before this time (after an error).
    backoff_until_ms: i64,
    /// A command was given whose `LogChanged` has not come back yet.
    awaiting_log: bool,
}

impl FollowerState {
    /// This broker follows `leader` in `leader_epoch`; its log ends at
    /// `log_end_offset` with a last batch of epoch `last_epoch`, and its high
    /// watermark is `high_watermark` (the checkpointed one).
    pub fn new(
        config: FollowerConfig,
        leader: BrokerId,
        leader_epoch: LeaderEpoch,
        log_end_offset: i64,
        last_epoch: Option<i32>,
        high_watermark: i64,
    ) -> FollowerState {
        let high_watermark = high_watermark.min(log_end_offset);
        FollowerState {
            config,
            leader,
            leader_epoch,
            log_end_offset,
            last_epoch,
            high_watermark,
            leader_high_watermark: high_watermark,
            backoff_until_ms: i64::MIN,
            awaiting_log: false,
        }
    }

    pub fn leader(&self) -> BrokerId {
        self.leader
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Where to fetch from, or `None` while backing off or while a change
    /// to the local log is still being made.
    pub fn fetch_position(&self, now_ms: i64) -> Option<FetchPosition> {
        if self.awaiting_log || now_ms < self.backoff_until_ms {
            return None;
        }
        Some(FetchPosition {
            fetch_offset: self.log_end_offset,
            last_fetched_epoch: self.last_epoch.unwrap_or(-1),
            current_leader_epoch: self.leader_epoch,
        })
    }

    /// When a fetch may be made again after an error.
    pub fn backoff_until_ms(&self) -> i64 {
        self.backoff_until_ms
    }

    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Fetched {
                answer,
                local_epoch_end,
                now_ms,
            } => self.fetched(answer, local_epoch_end, now_ms, &mut out),
            Event::LogChanged {
                log_end_offset,
                last_epoch,
            } => {
                self.awaiting_log = false;
                self.log_end_offset = log_end_offset;
                self.last_epoch = last_epoch;
                if self.high_watermark > log_end_offset {
                    // A truncation below the high watermark: only an unclean
                    // election can ask for it, and the HW follows the log.
                    self.high_watermark = log_end_offset;
                }
                self.follow_leader_high_watermark(&mut out);
            }
            Event::AppendFailed { now_ms } => {
                self.awaiting_log = false;
                self.backoff_until_ms = now_ms + self.config.fetch_backoff_ms;
            }
        }
        assert!(
            self.high_watermark <= self.log_end_offset,
            "a follower's high watermark lies within its log"
        );
        out
    }

    fn fetched(
        &mut self,
        answer: FetchAnswer,
        local_epoch_end: Option<(i32, i64)>,
        now_ms: i64,
        out: &mut Vec<Command>,
    ) {
        match answer.error {
            ErrorCode::NONE => {}
            ErrorCode::OFFSET_OUT_OF_RANGE => {
                self.awaiting_log = true;
                if self.log_end_offset < answer.log_start_offset {
                    // The leader deleted what we lack (retention): start at its log start.
                    out.push(Command::TruncateFullyAndStartAt {
                        offset: answer.log_start_offset,
                    });
                } else {
                    // Past the leader's log end, with no epoch to compare: the
                    // leader's high watermark is a point both logs share.
                    out.push(Command::Truncate {
                        offset: answer.high_watermark.max(0),
                    });
                }
                return;
            }
            ErrorCode::UNKNOWN_LEADER_EPOCH
            | ErrorCode::NOT_LEADER_OR_FOLLOWER
            | ErrorCode::UNKNOWN_TOPIC_ID
            | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
                // The leader has not heard of its election or of the topic
                // yet (or we lag, and our own metadata replaces this state
                // soon).
                self.backoff_until_ms =
                    now_ms + self.config.fetch_backoff_ms.min(LEADER_CATCH_UP_BACKOFF_MS);
                return;
            }
            _ => {
                // A stale epoch of ours, an unknown partition, a failing log:
                // wait for the metadata to catch up, then try again.
                self.backoff_until_ms = now_ms + self.config.fetch_backoff_ms;
                return;
            }
        }
        self.leader_high_watermark = answer.high_watermark;
        if let Some((epoch, end_offset)) = answer.diverging_epoch {
            // KIP-320: keep the part of the log the leader agrees with. When
            // this log has the leader's epoch, the shorter of the two ends is
            // shared; when it has not, its own last epoch below that one ends
            // where the logs may start to differ, and the next fetch asks again.
            let offset = match local_epoch_end {
                // An undefined end (the leader knows no such epoch): the
                // high watermark is the last point both logs surely share.
                _ if end_offset < 0 || epoch < 0 => self.high_watermark,
                Some((_, local_end)) => local_end.min(end_offset),
                None => end_offset.min(self.high_watermark),
            };
            self.awaiting_log = true;
            out.push(Command::Truncate {
                offset: offset.min(self.log_end_offset),
            });
            return;
        }
        if answer.records.is_empty() {
            self.follow_leader_high_watermark(out);
        } else {
            self.awaiting_log = true;
            out.push(Command::Append {
                records: answer.records,
            });
        }
    }

    /// Takes the leader's high watermark, capped by the local log end; never back.
    fn follow_leader_high_watermark(&mut self, out: &mut Vec<Command>) {
        let offset = self.leader_high_watermark.min(self.log_end_offset);
        if offset > self.high_watermark {
            self.high_watermark = offset;
            out.push(Command::UpdateHighWatermark { offset });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: FollowerConfig = FollowerConfig {
        fetch_backoff_ms: 100,
    };
    const LEADER: BrokerId = BrokerId(2);

    fn follower(log_end_offset: i64, last_epoch: Option<i32>, hw: i64) -> FollowerState {
        FollowerState::new(
            CONFIG,
            LEADER,
            LeaderEpoch(3),
            log_end_offset,
            last_epoch,
            hw,
        )
    }

    fn answer(hw: i64, records: &'static [u8]) -> FetchAnswer {
        FetchAnswer {
            error: ErrorCode::NONE,
            high_watermark: hw,
            log_start_offset: 0,
            diverging_epoch: None,
            records: Bytes::from_static(records),
        }
    }

    fn fetched(answer: FetchAnswer, local_epoch_end: Option<(i32, i64)>) -> Event {
        Event::Fetched {
            answer,
            local_epoch_end,
            now_ms: 0,
        }
    }

    #[test]
    fn a_follower_appends_what_it_fetched_and_takes_the_leaders_high_watermark_up_to_its_log_end() {
        // The HW arrives with the records, but a follower never exposes more than it holds.
        let mut f = follower(0, None, 0);
        assert_eq!(
            f.fetch_position(0),
            Some(FetchPosition {
                fetch_offset: 0,
                last_fetched_epoch: -1,
                current_leader_epoch: LeaderEpoch(3)
            })
        );
        assert_eq!(
            f.handle(fetched(answer(8, b"batches"), None)),
            vec![Command::Append {
                records: Bytes::from_static(b"batches")
            }]
        );
        // No second fetch while the append is being made.
        assert_eq!(f.fetch_position(0), None);
        assert_eq!(
            f.handle(Event::LogChanged {
                log_end_offset: 5,
                last_epoch: Some(3)
            }),
            vec![Command::UpdateHighWatermark { offset: 5 }]
        );
        let next = f.fetch_position(0).unwrap();
        assert_eq!((next.fetch_offset, next.last_fetched_epoch), (5, 3));
        // An empty answer still brings the leader's HW, up to our log end.
        assert_eq!(
            f.handle(fetched(answer(9, b""), None)),
            Vec::<Command>::new()
        );
        assert_eq!(f.high_watermark(), 5);
    }

    #[test]
    fn follower_with_diverging_epoch_truncates_before_fetching() {
        // The leader's epoch 3 ends at 7 while ours runs to 10: offsets 7.. go first.
        let mut f = follower(10, Some(3), 6);
        let diverging = FetchAnswer {
            diverging_epoch: Some((3, 7)),
            ..answer(6, b"")
        };
        assert_eq!(
            f.handle(fetched(diverging, Some((3, 10)))),
            vec![Command::Truncate { offset: 7 }]
        );
        assert_eq!(f.fetch_position(0), None);
        f.handle(Event::LogChanged {
            log_end_offset: 7,
            last_epoch: Some(3),
        });
        assert_eq!(f.fetch_position(0).unwrap().fetch_offset, 7);
    }

    #[test]
    fn a_follower_without_the_leaders_epoch_truncates_to_its_own_earlier_epoch_and_asks_again() {
        // We wrote epoch 4 (as a deposed leader) that the leader never had;
        // the leader answers its epoch 2 ending at 12; our epoch 2 ends at 9.
        let mut f = follower(15, Some(4), 5);
        let diverging = FetchAnswer {
            diverging_epoch: Some((2, 12)),
            ..answer(5, b"")
        };
        assert_eq!(
            f.handle(fetched(diverging, Some((1, 9)))),
            vec![Command::Truncate { offset: 9 }]
        );
        f.handle(Event::LogChanged {
            log_end_offset: 9,
            last_epoch: Some(1),
        });
        let next = f.fetch_position(0).unwrap();
        assert_eq!((next.fetch_offset, next.last_fetched_epoch), (9, 1));
    }

    #[test]
    fn a_follower_behind_the_leaders_log_start_restarts_empty_there() {
        // Retention on the leader removed offsets we still need: we start over at its log start.
        let mut f = follower(3, Some(0), 3);
        let out_of_range = FetchAnswer {
            error: ErrorCode::OFFSET_OUT_OF_RANGE,
            log_start_offset: 100,
            ..answer(150, b"")
        };
        assert_eq!(
            f.handle(fetched(out_of_range, None)),
            vec![Command::TruncateFullyAndStartAt { offset: 100 }]
        );
        f.handle(Event::LogChanged {
            log_end_offset: 100,
            last_epoch: None,
        });
        assert_eq!(f.fetch_position(0).unwrap().fetch_offset, 100);
    }

    #[test]
    fn a_refused_fetch_backs_off_before_the_next() {
        // A fenced epoch means our metadata is stale: no fetch until the backoff passes.
        let mut f = follower(0, None, 0);
        let fenced = FetchAnswer {
            error: ErrorCode::FENCED_LEADER_EPOCH,
            ..answer(-1, b"")
        };
        assert!(f
            .handle(Event::Fetched {
                answer: fenced,
                local_epoch_end: None,
                now_ms: 1_000
            })
            .is_empty());
        assert_eq!(f.fetch_position(1_050), None);
        assert!(f.fetch_position(1_100).is_some());
    }

    #[test]
    fn a_leader_that_has_not_heard_of_its_election_or_topic_is_asked_again_soon() {
        // The follower learned the new epoch (or the new topic) first: the
        // leader answers UNKNOWN_LEADER_EPOCH or NOT_LEADER_OR_FOLLOWER
        // (UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION) until its metadata
        // catches up, a few milliseconds later; the follower must not wait
        // the whole backoff (acks=all writes wait for its next fetch).
        for error in [
            ErrorCode::UNKNOWN_LEADER_EPOCH,
            ErrorCode::NOT_LEADER_OR_FOLLOWER,
            ErrorCode::UNKNOWN_TOPIC_ID,
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        ] {
            let config = FollowerConfig {
                fetch_backoff_ms: 1_000,
            };
            let mut f = FollowerState::new(config, LEADER, LeaderEpoch(3), 0, None, 0);
            let refused = FetchAnswer {
                error,
                ..answer(-1, b"")
            };
            f.handle(Event::Fetched {
                answer: refused,
                local_epoch_end: None,
                now_ms: 1_000,
            });
            assert_eq!(
                f.fetch_position(1_000 + LEADER_CATCH_UP_BACKOFF_MS - 1),
                None
            );
            assert!(f
                .fetch_position(1_000 + LEADER_CATCH_UP_BACKOFF_MS)
                .is_some());
        }
    }

    #[test]
    fn the_high_watermark_follows_a_truncation_below_it() {
        // Only an unclean election asks for it; the HW must still lie within the log.
        let mut f = follower(10, Some(1), 10);
        let diverging = FetchAnswer {
            diverging_epoch: Some((1, 4)),
            ..answer(4, b"")
        };
        f.handle(fetched(diverging, Some((1, 10))));
        f.handle(Event::LogChanged {
            log_end_offset: 4,
            last_epoch: Some(1),
        });
        assert_eq!(f.high_watermark(), 4);
    }
}
