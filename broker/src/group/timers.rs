//! Deadlines the coordinator state machine schedules: each key has at most one
//! deadline, rescheduling moves it, and the runtime asks for the earliest one
//! to know when to wake the machine. Time is milliseconds on the clock the
//! events carry, so tests drive it by hand.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Deadlines<K> {
    by_deadline: BTreeSet<(i64, K)>,
    deadline_of: HashMap<K, i64>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            by_deadline: BTreeSet::new(),
            deadline_of: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Deadlines<K> {
    /// Sets `key` to fire at `at_ms`, replacing any deadline it had.
    pub fn schedule(&mut self, key: K, at_ms: i64) {
        if let Some(previous) = self.deadline_of.insert(key.clone(), at_ms) {
            self.by_deadline.remove(&(previous, key.clone()));
        }
        self.by_deadline.insert((at_ms, key));
        assert_eq!(
            self.by_deadline.len(),
            self.deadline_of.len(),
            "every key has exactly one deadline"
        );
    }

    pub fn cancel(&mut self, key: &K) {
        if let Some(previous) = self.deadline_of.remove(key) {
            self.by_deadline.remove(&(previous, key.clone()));
        }
    }

    pub fn deadline(&self, key: &K) -> Option<i64> {
        self.deadline_of.get(key).copied()
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest key whose deadline is at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: i64) -> Option<K> {
        let (at, _) = self.by_deadline.first()?;
        if *at > now_ms {
            return None;
        }
        let (_, key) = self.by_deadline.pop_first().expect("first exists");
        self.deadline_of.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.deadline_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadline_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescheduling_moves_a_deadline_instead_of_adding_one() {
        // A key fires once, at its latest deadline, in deadline order with the others.
        let mut deadlines = Deadlines::default();
        deadlines.schedule("a", 100);
        deadlines.schedule("b", 50);
        deadlines.schedule("a", 200);
        assert_eq!(deadlines.len(), 2);
        assert_eq!(deadlines.next_deadline(), Some(50));
        assert_eq!(deadlines.pop_due(99), Some("b"));
        assert_eq!(deadlines.pop_due(199), None);
        assert_eq!(deadlines.pop_due(200), Some("a"));
        assert!(deadlines.is_empty());
    }

    #[test]
    fn cancelled_keys_never_fire() {
        // Cancelling removes the deadline entirely.
        let mut deadlines = Deadlines::default();
        deadlines.schedule(1, 10);
        deadlines.cancel(&1);
        deadlines.cancel(&2);
        assert_eq!(deadlines.pop_due(1_000), None);
        assert_eq!(deadlines.next_deadline(), None);
    }
}
