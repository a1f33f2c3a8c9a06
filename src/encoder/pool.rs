//! A fixed pool of ONNX Runtime sessions.
//!
//! `ort` sessions need `&mut self` to run. Rather than one lock held across every request,
//! the pool hands a session to one caller at a time and takes it back when the guard drops;
//! with several sessions, that many batches run at once. Callers block only while every
//! session is busy, which is the natural back-pressure point for inference.

use std::ops::{Deref, DerefMut};

use crossbeam_channel::{Receiver, Sender};
use ort::session::Session;

pub struct SessionPool {
    give: Sender<Session>,
    take: Receiver<Session>,
}

impl SessionPool {
    pub fn new(sessions: Vec<Session>) -> Self {
        let (give, take) = crossbeam_channel::bounded(sessions.len());
        for s in sessions {
            give.send(s)
                .expect("the pool's channel has room for every session");
        }
        Self { give, take }
    }

    /// Waits for a free session.
    pub fn checkout(&self) -> PooledSession<'_> {
        // The pool holds both ends of the channel, so it can never be disconnected.
        let session = self
            .take
            .recv()
            .expect("session pool channel is never disconnected");
        PooledSession {
            session: Some(session),
            pool: self,
        }
    }
}

/// A session borrowed from the pool; returned on drop.
pub struct PooledSession<'a> {
    session: Option<Session>,
    pool: &'a SessionPool,
}

impl Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("present until drop")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            // Capacity equals the number of sessions, so there is always room to return one.
            let _ = self.pool.give.send(s);
        }
    }
}
