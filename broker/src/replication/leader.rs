//! The leader side of one partition's replication.
//!
//! The leader knows each replica's log end offset (LEO) from the fetches it
//! receives: a follower fetching from offset `o` holds everything below `o`.
//! The high watermark (HW) is the smallest LEO across the ISR (the leader's
//! included) and never moves backwards. A follower that has not caught up
//! with the leader's LEO for `replica_lag_time_max_ms` is proposed out of
//! the ISR; one that reaches the HW is proposed back in. ISR changes take
//! effect only when the controller commits them (`IsrCommitted`), guarded
//! by the partition epoch: a proposal carries the epoch it was made from.
//! `acks=all` produce requests wait until the HW covers their last offset.

use std::collections::{BTreeMap, BTreeSet};

use protocol::ErrorCode;

use crate::ids::{BrokerId, PartitionEpoch};
use crate::metadata::PartitionRegistration;

/// Settings of the leader side (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct LeaderConfig {
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// Bound on `acks=all` requests waiting at once.
    pub waiting_produces_max: usize,
}

/// An `acks=all` request waiting for the high watermark.
pub type ProduceId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The leader appended locally; its LEO is now `log_end_offset`.
    Appended { log_end_offset: i64 },
    /// A follower fetched from `fetch_offset` (it holds everything below).
    FollowerFetch {
        replica: BrokerId,
        fetch_offset: i64,
        now_ms: i64,
    },
    /// An `acks=all` request whose batch ends at `last_offset` waits until `deadline_ms`.
    Park {
        id: ProduceId,
        last_offset: i64,
        deadline_ms: i64,
    },
    /// The controller refused the outstanding ISR proposal, or it could not
    /// be sent: another may be made.
    IsrRefused,
    /// The controller committed an ISR (ours or its own) at `partition_epoch`,
    /// with the partition's replicas then (a reassignment changes them).
    IsrCommitted {
        isr: Vec<BrokerId>,
        replicas: Vec<BrokerId>,
        partition_epoch: PartitionEpoch,
        now_ms: i64,
    },
    /// Time passed: lagging followers and expired waits are looked at.
    Tick { now_ms: i64 },
    /// This broker stopped leading: every wait is answered.
    Resigned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The high watermark moved forward to `offset`.
    AdvanceHighWatermark { offset: i64 },
    /// Propose this ISR to the controller (Kafka's AlterPartition), made from `partition_epoch`.
    ProposeIsr {
        isr: Vec<BrokerId>,
        partition_epoch: PartitionEpoch,
    },
    /// Answer a waiting `acks=all` request.
    Complete { id: ProduceId, error: ErrorCode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    log_end_offset: i64,
    /// When the replica last held the leader's whole log (ms).
    last_caught_up_ms: i64,
    /// The time of the replica's previous fetch and the leader's LEO then:
    /// a fetch that reaches that LEO was caught up at that time.
    last_fetch_ms: i64,
    last_fetch_leader_log_end: i64,
}

#[derive(Debug)]
struct Waiting {
    last_offset: i64,
    deadline_ms: i64,
}

/// Why an `acks=all` request is refused before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas,
    /// Too many requests are waiting already.
    TooManyWaiting,
}

pub struct LeaderState {
    config: LeaderConfig,
    me: BrokerId,
    log_end_offset: i64,
    high_watermark: i64,
    /// Where this leader's epoch starts: a follower that has not reached it
    /// holds nothing of this epoch and does not rejoin the ISR yet.
    epoch_start_offset: i64,
    isr: BTreeSet<BrokerId>,
    partition_epoch: PartitionEpoch,
    /// Every replica but this one.
    followers: BTreeMap<BrokerId, Progress>,
    /// A proposal made and not answered by a commit yet: no other is made meanwhile.
    pending_isr: Option<Vec<BrokerId>>,
    waiting: BTreeMap<ProduceId, Waiting>,
}

impl LeaderState {
    /// This broker starts leading the partition `registration` describes
    /// (replicas, ISR, partition epoch); its log ends at `log_end_offset`
    /// and its high watermark is `high_watermark` (the checkpointed one).
    /// Followers get a full `replica.lag.time.max.ms` from `now_ms` to fetch.
    pub fn new(
        config: LeaderConfig,
        me: BrokerId,
        registration: &PartitionRegistration,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> LeaderState {
        let (replicas, isr) = (&registration.replicas, &registration.isr);
        let partition_epoch = registration.partition_epoch;
        assert!(replicas.contains(&me), "the leader is a replica");
        assert!(high_watermark <= log_end_offset, "the HW is within the log");
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    *r,
                    Progress {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: now_ms,
                        last_fetch_leader_log_end: log_end_offset,
                    },
                )
            })
            .collect();
        LeaderState {
            config,
            me,
            log_end_offset,
            high_watermark,
            epoch_start_offset: log_end_offset,
            isr: isr.iter().copied().collect(),
            partition_epoch,
            followers,
            pending_isr: None,
            waiting: BTreeMap::new(),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn isr(&self) -> Vec<BrokerId> {
        self.isr.iter().copied().collect()
    }

    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// `min.insync.replicas` changed (a topic config).
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) {
        self.config.min_insync_replicas = min_insync_replicas;
    }

    /// Whether an `acks=all` request may be appended now.
    pub fn check_acks_all(&self) -> Result<(), Refusal> {
        if self.isr.len() < self.config.min_insync_replicas {
            return Err(Refusal::NotEnoughReplicas);
        }
        if self.waiting.len() >= self.config.waiting_produces_max {
            return Err(Refusal::TooManyWaiting);
        }
        Ok(())
    }

    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Appended { log_end_offset } => {
                // Appends on several connections report their log ends
                // without a common lock, so an older report may come last:
                // the log end is the largest reported.
                if log_end_offset < self.log_end_offset {
                    return out;
                }
                self.log_end_offset = log_end_offset;
                self.advance(&mut out);
            }
            Event::FollowerFetch {
                replica,
                fetch_offset,
                now_ms,
            } => {
                let Some(progress) = self.followers.get_mut(&replica) else {
                    // Not a replica (any more): its fetches count for nothing.
                    return out;
                };
                progress.log_end_offset = fetch_offset.min(self.log_end_offset);
                // Under steady appends a fetch rarely reaches the current LEO;
                // reaching the LEO of the previous fetch's time shows the
                // follower was caught up then (Kafka's rule).
                if fetch_offset >= self.log_end_offset {
                    progress.last_caught_up_ms = now_ms;
                } else if fetch_offset >= progress.last_fetch_leader_log_end {
                    progress.last_caught_up_ms =
                        progress.last_caught_up_ms.max(progress.last_fetch_ms);
                }
                progress.last_fetch_ms = now_ms;
                progress.last_fetch_leader_log_end = self.log_end_offset;
                let rejoins = !self.isr.contains(&replica)
                    && progress.log_end_offset >= self.high_watermark
                    && progress.log_end_offset >= self.epoch_start_offset;
                self.advance(&mut out);
                if rejoins {
                    let mut isr = self.isr.clone();
                    isr.insert(replica);
                    self.propose(isr, &mut out);
                }
            }
            Event::Park {
                id,
                last_offset,
                deadline_ms,
            } => {
                if last_offset < self.high_watermark {
                    out.push(self.completion(id));
                } else {
                    self.waiting.insert(
                        id,
                        Waiting {
                            last_offset,
                            deadline_ms,
                        },
                    );
                }
            }
            Event::IsrRefused => self.pending_isr = None,
            Event::IsrCommitted {
                isr,
                replicas,
                partition_epoch,
                now_ms,
            } => {
                if partition_epoch < self.partition_epoch {
                    return out;
                }
                self.partition_epoch = partition_epoch;
                // New replicas (a reassignment) get a full lag allowance to catch up.
                self.followers.retain(|r, _| replicas.contains(r));
                for replica in replicas.iter().filter(|r| **r != self.me) {
                    self.followers.entry(*replica).or_insert(Progress {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: now_ms,
                        last_fetch_leader_log_end: self.log_end_offset,
                    });
                }
                self.isr = isr.into_iter().collect();
                assert!(self.isr.contains(&self.me), "a leader is in its own ISR");
                self.pending_isr = None;
                self.advance(&mut out);
            }
            Event::Tick { now_ms } => {
                let lagging: Vec<BrokerId> = self
                    .isr
                    .iter()
                    .filter(|r| **r != self.me)
                    .filter(|r| {
                        self.followers.get(r).is_some_and(|p| {
                            now_ms - p.last_caught_up_ms > self.config.replica_lag_time_max_ms
                        })
                    })
                    .copied()
                    .collect();
                if !lagging.is_empty() {
                    let isr = self
                        .isr
                        .iter()
                        .filter(|r| !lagging.contains(r))
                        .copied()
                        .collect();
                    self.propose(isr, &mut out);
                }
                let expired: Vec<ProduceId> = self
                    .waiting
                    .iter()
                    .filter(|(_, w)| w.deadline_ms <= now_ms)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    self.waiting.remove(&id);
                    out.push(Command::Complete {
                        id,
                        error: ErrorCode::REQUEST_TIMED_OUT,
                    });
                }
            }
            Event::Resigned => {
                for id in std::mem::take(&mut self.waiting).into_keys() {
                    out.push(Command::Complete {
                        id,
                        error: ErrorCode::NOT_LEADER_OR_FOLLOWER,
                    });
                }
            }
        }
        out
    }

    /// An ISR proposal, unless one is outstanding or it changes nothing.
    fn propose(&mut self, isr: BTreeSet<BrokerId>, out: &mut Vec<Command>) {
        let isr: Vec<BrokerId> = isr.into_iter().collect();
        if self.pending_isr.is_some() || isr == self.isr() {
            return;
        }
        self.pending_isr = Some(isr.clone());
        out.push(Command::ProposeIsr {
            isr,
            partition_epoch: self.partition_epoch,
        });
    }

    /// The answer to a request whose offsets the HW covers.
    fn completion(&self, id: ProduceId) -> Command {
        let error = if self.isr.len() < self.config.min_insync_replicas {
            ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        } else {
            ErrorCode::NONE
        };
        Command::Complete { id, error }
    }

    /// Moves the HW to the smallest LEO in the ISR, if that is forward, and
    /// answers the requests it now covers.
    fn advance(&mut self, out: &mut Vec<Command>) {
        // KIP-497's maximal ISR: a member being added counts from the moment
        // it is proposed, so that once committed (and eligible to lead) it
        // holds everything below the HW; one being removed counts until the
        // removal is committed.
        let pending = self.pending_isr.iter().flatten();
        let smallest = self
            .isr
            .iter()
            .chain(pending)
            .map(|r| {
                if *r == self.me {
                    self.log_end_offset
                } else {
                    self.followers.get(r).map_or(-1, |p| p.log_end_offset)
                }
            })
            .min()
            .unwrap_or(self.log_end_offset);
        if smallest <= self.high_watermark {
            return;
        }
        self.high_watermark = smallest;
        assert!(
            self.high_watermark <= self.log_end_offset,
            "the HW never passes the leader's log end"
        );
        out.push(Command::AdvanceHighWatermark {
            offset: self.high_watermark,
        });
        let covered: Vec<ProduceId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.last_offset < self.high_watermark)
            .map(|(id, _)| *id)
            .collect();
        for id in covered {
            self.waiting.remove(&id);
            out.push(self.completion(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LeaderConfig = LeaderConfig {
        replica_lag_time_max_ms: 30_000,
        min_insync_replicas: 2,
        waiting_produces_max: 2,
    };
    const ME: BrokerId = BrokerId(1);
    const F2: BrokerId = BrokerId(2);
    const F3: BrokerId = BrokerId(3);

    fn registration(replicas: &[BrokerId], isr: &[BrokerId], epoch: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader: ME,
            leader_epoch: crate::ids::LeaderEpoch(0),
            partition_epoch: PartitionEpoch(epoch),
        }
    }

    fn leader() -> LeaderState {
        LeaderState::new(
            CONFIG,
            ME,
            &registration(&[ME, F2, F3], &[ME, F2, F3], 4),
            0,
            0,
            0,
        )
    }

    fn fetch(replica: BrokerId, fetch_offset: i64, now_ms: i64) -> Event {
        Event::FollowerFetch {
            replica,
            fetch_offset,
            now_ms,
        }
    }

    #[test]
    fn high_watermark_is_the_smallest_log_end_in_the_isr_and_never_moves_back() {
        // Appending alone moves nothing; each follower's fetch moves the HW to the slowest.
        let mut l = leader();
        assert!(l.handle(Event::Appended { log_end_offset: 10 }).is_empty());
        assert!(l.handle(fetch(F2, 10, 1)).is_empty());
        assert_eq!(
            l.handle(fetch(F3, 6, 1)),
            vec![Command::AdvanceHighWatermark { offset: 6 }]
        );
        // A follower fetching from an older offset (a retried fetch) does not move it back.
        assert!(l.handle(fetch(F3, 3, 2)).is_empty());
        assert_eq!(l.high_watermark(), 6);
    }

    #[test]
    fn acks_all_waits_for_the_high_watermark_and_times_out_otherwise() {
        // A request completes once the HW passes its last offset; an uncovered one times out.
        let mut l = leader();
        l.handle(Event::Appended { log_end_offset: 5 });
        assert!(l
            .handle(Event::Park {
                id: 1,
                last_offset: 4,
                deadline_ms: 100
            })
            .is_empty());
        l.handle(fetch(F2, 5, 1));
        let out = l.handle(fetch(F3, 5, 1));
        assert_eq!(
            out,
            vec![
                Command::AdvanceHighWatermark { offset: 5 },
                Command::Complete {
                    id: 1,
                    error: ErrorCode::NONE
                }
            ]
        );
        l.handle(Event::Appended { log_end_offset: 9 });
        l.handle(Event::Park {
            id: 2,
            last_offset: 8,
            deadline_ms: 100,
        });
        assert_eq!(
            l.handle(Event::Tick { now_ms: 100 }),
            vec![Command::Complete {
                id: 2,
                error: ErrorCode::REQUEST_TIMED_OUT
            }]
        );
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_the_hw_moves_once_the_shrink_is_committed() {
        // F3 never catches up: after replica.lag.time.max.ms the leader proposes the ISR without it.
        let mut l = leader();
        l.handle(Event::Appended { log_end_offset: 5 });
        l.handle(Event::Park {
            id: 7,
            last_offset: 4,
            deadline_ms: 60_000,
        });
        l.handle(fetch(F2, 5, 20_000));
        l.handle(fetch(F3, 0, 20_000));
        assert_eq!(
            l.handle(Event::Tick { now_ms: 30_001 }),
            vec![Command::ProposeIsr {
                isr: vec![ME, F2],
                partition_epoch: PartitionEpoch(4)
            }]
        );
        // Proposed, not committed: the HW still waits for F3, and no second proposal is made.
        assert_eq!(l.high_watermark(), 0);
        assert!(l.handle(Event::Tick { now_ms: 30_002 }).is_empty());
        let out = l.handle(Event::IsrCommitted {
            isr: vec![ME, F2],
            replicas: vec![ME, F2, F3],
            partition_epoch: PartitionEpoch(5),
            now_ms: 0,
        });
        assert_eq!(
            out,
            vec![
                Command::AdvanceHighWatermark { offset: 5 },
                Command::Complete {
                    id: 7,
                    error: ErrorCode::NONE
                }
            ]
        );
    }

    #[test]
    fn a_follower_a_little_behind_under_steady_appends_stays_in_the_isr() {
        // Each fetch reaches the LEO the leader had at the previous fetch, never the current one.
        let mut l = leader();
        for round in 1..=40i64 {
            let now_ms = round * 1_000;
            l.handle(Event::Appended {
                log_end_offset: round * 10,
            });
            l.handle(fetch(F2, (round - 1) * 10, now_ms));
            l.handle(fetch(F3, (round - 1) * 10, now_ms));
            assert!(
                l.handle(Event::Tick { now_ms }).is_empty(),
                "no shrink in round {round}"
            );
        }
        assert_eq!(l.isr(), vec![ME, F2, F3]);
    }

    #[test]
    fn a_follower_that_reaches_the_high_watermark_is_proposed_back_in() {
        // Out of the ISR, F3 rejoins once its fetch offset reaches the HW.
        let mut l = LeaderState::new(
            CONFIG,
            ME,
            &registration(&[ME, F2, F3], &[ME, F2], 5),
            5,
            5,
            0,
        );
        assert!(l.handle(fetch(F3, 2, 1)).is_empty());
        assert_eq!(
            l.handle(fetch(F3, 5, 2)),
            vec![Command::ProposeIsr {
                isr: vec![ME, F2, F3],
                partition_epoch: PartitionEpoch(5)
            }]
        );
        // A commit from an older partition epoch (a stale view) changes nothing.
        assert!(l
            .handle(Event::IsrCommitted {
                isr: vec![ME],
                replicas: vec![ME, F2, F3],
                partition_epoch: PartitionEpoch(3),
                now_ms: 0,
            })
            .is_empty());
        assert_eq!(l.isr(), vec![ME, F2]);
    }

    #[test]
    fn a_leader_alone_in_its_isr_commits_its_whole_log_on_taking_over() {
        // After a crash the checkpointed HW lags the log; with no other ISR
        // member the log end, reported again on taking over, is committed.
        let mut l = LeaderState::new(CONFIG, ME, &registration(&[ME], &[ME], 0), 7, 2, 0);
        assert_eq!(
            l.handle(Event::Appended { log_end_offset: 7 }),
            vec![Command::AdvanceHighWatermark { offset: 7 }]
        );
    }

    #[test]
    fn an_append_reported_after_a_later_one_changes_nothing() {
        // Two connections append concurrently; the first one's report arrives second.
        let mut l = LeaderState::new(CONFIG, ME, &registration(&[ME], &[ME], 0), 0, 0, 0);
        assert_eq!(
            l.handle(Event::Appended { log_end_offset: 8 }),
            vec![Command::AdvanceHighWatermark { offset: 8 }]
        );
        assert!(l.handle(Event::Appended { log_end_offset: 5 }).is_empty());
        assert_eq!(l.high_watermark(), 8);
    }

    #[test]
    fn a_member_being_added_holds_the_high_watermark_back_until_it_has_the_data() {
        // Proposed back in at LEO 5, F3 must have every record below the HW
        // once it may lead: the HW waits for it from the proposal on.
        let mut l = LeaderState::new(
            CONFIG,
            ME,
            &registration(&[ME, F2, F3], &[ME, F2], 5),
            5,
            5,
            0,
        );
        assert_eq!(l.handle(fetch(F3, 5, 1)).len(), 1, "the proposal");
        l.handle(Event::Appended { log_end_offset: 9 });
        l.handle(fetch(F2, 9, 2));
        assert_eq!(l.high_watermark(), 5, "F3 is still at 5");
        assert_eq!(
            l.handle(fetch(F3, 9, 3)),
            vec![Command::AdvanceHighWatermark { offset: 9 }]
        );
    }

    #[test]
    fn acks_all_is_refused_below_min_insync_replicas_and_past_the_waiting_bound() {
        // min.insync.replicas 2 with the leader alone: NOT_ENOUGH_REPLICAS before appending.
        let alone = LeaderState::new(CONFIG, ME, &registration(&[ME, F2], &[ME], 0), 0, 0, 0);
        assert_eq!(alone.check_acks_all(), Err(Refusal::NotEnoughReplicas));
        let mut l = leader();
        l.handle(Event::Appended { log_end_offset: 3 });
        l.handle(Event::Park {
            id: 1,
            last_offset: 0,
            deadline_ms: 10,
        });
        l.handle(Event::Park {
            id: 2,
            last_offset: 1,
            deadline_ms: 10,
        });
        assert_eq!(l.check_acks_all(), Err(Refusal::TooManyWaiting));
    }

    #[test]
    fn a_request_covered_after_the_isr_shrank_below_the_minimum_is_not_enough_after_append() {
        // The write reached every remaining ISR member, but they are too few.
        let mut l = LeaderState::new(CONFIG, ME, &registration(&[ME, F2], &[ME, F2], 0), 0, 0, 0);
        l.handle(Event::Appended { log_end_offset: 1 });
        l.handle(Event::Park {
            id: 9,
            last_offset: 0,
            deadline_ms: 60_000,
        });
        let out = l.handle(Event::IsrCommitted {
            isr: vec![ME],
            replicas: vec![ME, F2, F3],
            partition_epoch: PartitionEpoch(1),
            now_ms: 0,
        });
        assert_eq!(
            out,
            vec![
                Command::AdvanceHighWatermark { offset: 1 },
                Command::Complete {
                    id: 9,
                    error: ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                }
            ]
        );
    }

    #[test]
    fn resigning_answers_every_waiting_request_with_a_retriable_error() {
        // A leader change must not leave acks=all requests hanging.
        let mut l = leader();
        l.handle(Event::Appended { log_end_offset: 2 });
        l.handle(Event::Park {
            id: 1,
            last_offset: 1,
            deadline_ms: 60_000,
        });
        let out = l.handle(Event::Resigned);
        assert_eq!(
            out,
            vec![Command::Complete {
                id: 1,
                error: ErrorCode::NOT_LEADER_OR_FOLLOWER
            }]
        );
        assert!(ErrorCode::NOT_LEADER_OR_FOLLOWER.is_retriable());
    }
}
