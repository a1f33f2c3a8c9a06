//! [`Offsets`]: which Kafka offsets are done, per partition, and the offset that may be
//! committed: the lowest one not done yet (or one past the highest fetched when all are),
//! so a commit never skips an input that has no output. Pure bookkeeping behind a mutex; the
//! Kafka fetch thread commits what it says, and waits on it when partitions are revoked.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A topic and partition.
pub type Partition = (String, i32);

#[derive(Debug, Default)]
struct State {
    /// Fetched and not yet done.
    pending: BTreeSet<i64>,
    /// Fetched and never to be done by this process (their batch failed, the job stops): a
    /// commit stops below them, and nothing waits for them.
    abandoned: BTreeSet<i64>,
    /// One past the highest offset fetched.
    next: i64,
    /// The last offset committed (or -1 before any).
    committed: i64,
}

impl State {
    fn committable(&self) -> i64 {
        let first = |set: &BTreeSet<i64>| set.first().copied().unwrap_or(self.next);
        first(&self.pending).min(first(&self.abandoned))
    }
}

#[derive(Default)]
pub struct Offsets {
    parts: Mutex<HashMap<Partition, State>>,
    /// Signalled on every `done`, for [`Offsets::wait_done`].
    changed: Condvar,
}

impl Offsets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, State>> {
        // A panic elsewhere while holding the lock leaves the map consistent (each method
        // changes it in one step), so a poisoned lock is still usable.
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fetched(&self, part: &Partition, offset: i64) {
        let mut parts = self.lock();
        let s = parts.entry(part.clone()).or_insert_with(|| State {
            committed: -1,
            ..State::default()
        });
        s.pending.insert(offset);
        s.next = s.next.max(offset + 1);
    }

    /// Marks `offset` done. A partition revoked meanwhile is not known any more: ignored
    /// (its new owner reads it again from the last commit).
    pub fn done(&self, part: &Partition, offset: i64) {
        if let Some(s) = self.lock().get_mut(part) {
            s.pending.remove(&offset);
        }
        self.changed.notify_all();
    }

    /// Marks `offset` as one this process will not write (a fatal error stops the job): a
    /// commit never passes it, and [`Offsets::wait_done`] no longer waits for it.
    pub fn abandon(&self, part: &Partition, offset: i64) {
        if let Some(s) = self.lock().get_mut(part)
            && s.pending.remove(&offset)
        {
            s.abandoned.insert(offset);
        }
        self.changed.notify_all();
    }

    /// Offsets to commit now: per partition where it moved, the next offset to read.
    pub fn to_commit(&self, only: Option<&[Partition]>) -> Vec<(Partition, i64)> {
        let parts = self.lock();
        parts
            .iter()
            .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
            .filter(|(_, s)| s.committable() > s.committed && s.next > 0)
            .map(|(p, s)| (p.clone(), s.committable()))
            .collect()
    }

    /// Records a successful commit.
    pub fn committed(&self, done: &[(Partition, i64)]) {
        let mut parts = self.lock();
        for (p, o) in done {
            if let Some(s) = parts.get_mut(p) {
                s.committed = s.committed.max(*o);
            }
        }
    }

    /// Waits until every fetched offset of `only` (all partitions when `None`) is done, at
    /// most `timeout`; true when they all are.
    pub fn wait_done(&self, only: Option<&[Partition]>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut parts = self.lock();
        loop {
            let busy = parts
                .iter()
                .any(|(p, s)| only.is_none_or(|o| o.contains(p)) && !s.pending.is_empty());
            if !busy {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            parts = self
                .changed
                .wait_timeout(parts, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Forgets revoked partitions: what they still have in flight will not be committed here.
    pub fn forget(&self, revoked: &[Partition]) {
        let mut parts = self.lock();
        for p in revoked {
            parts.remove(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("docs".to_string(), n)
    }

    #[test]
    fn the_commit_stops_below_the_first_offset_not_done() {
        let o = Offsets::default();
        for off in 10..15 {
            o.fetched(&p(0), off);
        }
        o.fetched(&p(1), 0);
        let mut first = o.to_commit(None);
        first.sort();
        assert_eq!(
            first,
            vec![(p(0), 10), (p(1), 0)],
            "nothing done: where they started"
        );
        for off in [10, 11, 13] {
            o.done(&p(0), off);
        }
        // 12 is not done: 13 must not be committed past it.
        assert_eq!(o.to_commit(Some(&[p(0)])), vec![(p(0), 12)]);
        o.committed(&[(p(0), 12)]);
        assert!(o.to_commit(Some(&[p(0)])).is_empty(), "nothing moved since");
        o.done(&p(0), 12);
        o.done(&p(0), 14);
        assert_eq!(o.to_commit(Some(&[p(0)])), vec![(p(0), 15)]);
        assert!(
            !o.wait_done(None, Duration::from_millis(10)),
            "p1 offset 0 is pending"
        );
        assert!(o.wait_done(Some(&[p(0)]), Duration::ZERO));
        o.forget(&[p(1)]);
        o.done(&p(1), 0);
        assert!(o.wait_done(None, Duration::ZERO));
    }

    #[test]
    fn an_abandoned_offset_is_not_waited_for_and_never_passed() {
        let o = Offsets::default();
        for off in 0..4 {
            o.fetched(&p(0), off);
        }
        o.done(&p(0), 0);
        o.abandon(&p(0), 1);
        o.done(&p(0), 2);
        assert!(!o.wait_done(None, Duration::ZERO), "3 is still pending");
        o.done(&p(0), 3);
        assert!(o.wait_done(None, Duration::ZERO), "1 will never be done");
        assert_eq!(
            o.to_commit(None),
            vec![(p(0), 1)],
            "not past the abandoned 1"
        );
    }

    #[test]
    fn a_waiter_wakes_when_another_thread_finishes() {
        let o = std::sync::Arc::new(Offsets::default());
        o.fetched(&p(0), 5);
        let other = o.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.done(&p(0), 5);
        });
        assert!(o.wait_done(None, Duration::from_secs(10)));
        t.join().unwrap();
        assert_eq!(o.to_commit(None), vec![(p(0), 6)]);
    }
}
