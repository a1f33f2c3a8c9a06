//! [`InFlight`]: the `--max-in-flight` cap on inputs between fetch and commit, shared by the
//! fetcher (which stops fetching when it is reached) and the committer (which frees room).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

pub struct InFlight {
    count: AtomicUsize,
    /// `--max-in-flight`.
    pub max: usize,
    /// Woken when room is freed, so an async fetcher waits without polling.
    freed: Notify,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
        }
    }

    /// Inputs fetched and not yet committed.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// How many more inputs may be fetched now.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.count())
    }

    /// Counts `n` fetched inputs.
    pub fn take(&self, n: usize) {
        let now = self.count.fetch_add(n, Ordering::AcqRel) + n;
        metrics::gauge!("hermes_consume_in_flight").set(now as f64);
    }

    /// Frees the room of `n` committed inputs.
    pub fn give(&self, n: usize) {
        let now = self.count.fetch_sub(n, Ordering::AcqRel) - n;
        metrics::gauge!("hermes_consume_in_flight").set(now as f64);
        self.freed.notify_waiters();
    }

    /// Waits until there is room, or `timeout` passed (so a fetcher still sees its stop flag).
    pub async fn wait_room(&self, timeout: Duration) {
        let freed = self.freed.notified();
        if self.room() > 0 {
            return;
        }
        let _ = tokio::time::timeout(timeout, freed).await;
    }

    /// Waits until nothing is in flight or `timeout` passed; true when nothing is.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let freed = self.freed.notified();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}
