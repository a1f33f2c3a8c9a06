//! `hermes serve`: a runtime, the listener, signals; the server itself is `server::serve`.

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use super::args::ServeArgs;
use crate::ops::signal_then_deadline;
use crate::server::{ServeConfig, serve};

pub fn run(args: ServeArgs) -> Result<()> {
    let (host, port) = (args.host.clone(), args.port);
    let grace = args.shutdown.grace();
    let config = ServeConfig::from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to find a port chosen with --port 0.
        println!("hermes listening on http://{addr}");
        serve(listener, config, signal_then_deadline(grace)).await
    })
}
