//! The whole server in-process (`hermes::server::serve` on a loopback listener), for tests that
//! change its [`ServeConfig`] or read its metrics from the process's own recorder.

use std::time::{Duration, Instant};

use hermes::server::ServeConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::client;

/// A running server. Dropped without [`InProcess::stop`] (a test that panicked), its task is
/// aborted, which closes its listener and every connection it holds.
pub struct InProcess {
    pub base: String,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The served config: the defaults for the repository's bundle, as a test changes them.
pub fn config(change: impl FnOnce(&mut ServeConfig)) -> ServeConfig {
    let mut c = ServeConfig::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/minilm-wiki"));
    change(&mut c);
    c
}

impl InProcess {
    /// Serves `config` on a free loopback port and waits until `/readyz` is 200.
    pub async fn start(config: ServeConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hermes::server::serve(listener, config, async {
            let _ = rx.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(120);
        while client()
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "server not ready");
            assert!(!task.is_finished(), "server stopped during start-up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            base,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Shuts the server down and checks that `serve` returns `Ok` in time.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.task.take().unwrap())
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .expect("serve returns Ok");
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The sum of the samples of `name` (all label sets) in a Prometheus text page.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
