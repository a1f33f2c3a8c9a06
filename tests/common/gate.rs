//! A loopback TCP gate in front of a broker. Closing it drops every connection through it and
//! refuses new ones, which is what a client sees of a broker that died; opening it again on the
//! same port is the broker coming back, with everything it held (topics, groups, producer
//! state), as a real Kafka broker comes back from its log. tansu keeps its state in memory, so
//! a killed and restarted tansu is a broker that lost everything: see the Kafka readiness tests
//! in `tests/consume.rs` for why that matters.
//!
//! The gate is a task of the test's runtime (no process of its own); dropping it closes it.

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::redis::free_port;

pub struct Gate {
    /// Where clients connect.
    pub port: u16,
    /// Where the broker listens.
    target: u16,
    task: Option<JoinHandle<()>>,
}

impl Gate {
    /// A gate on a free port to `target`, open. Needs a Tokio runtime.
    pub fn to(target: u16) -> Gate {
        let mut g = Gate {
            port: free_port(),
            target,
            task: None,
        };
        g.open();
        g
    }

    /// Accepts connections again (on the same port) and forwards each to the broker.
    pub fn open(&mut self) {
        if self.task.is_some() {
            return;
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("gate: bind 127.0.0.1:{}: {e}", self.port));
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task (at `close`): every connection through the gate ends.
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Drops every connection through the gate and refuses new ones.
    pub async fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
