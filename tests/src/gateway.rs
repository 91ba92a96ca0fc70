//! A Sluice gateway running in-process on 127.0.0.1 and a free port.

use std::net::SocketAddr;

use sluice::config::Config;
use sluice::gateway::Gateway;
use sluice::server::Server;
use sluice::traces::Traces;
use tokio::sync::oneshot;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub tls: bool,
    traces: Traces,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway for `config`, listening on a free port whatever the
    /// config says.
    pub async fn start(mut config: Config) -> TestGateway {
        config.gateway.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let gateway = Gateway::new(config.gateway).expect("gateway builds");
        let traces = gateway.traces.clone();
        let server = Server::bind(gateway).await.expect("gateway binds");
        let addr = server.local_addr();
        let tls = server.is_tls();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestGateway { addr, tls, traces, stop: Some(stop), task: Some(task) }
    }

    /// A gateway forwarding every model to `upstream_base_url` (OpenAI kind),
    /// as `sluice serve --upstream URL` does.
    pub async fn passthrough(upstream_base_url: &str) -> TestGateway {
        Self::start(Config::default().with_upstream(upstream_base_url, sluice::upstream::UpstreamKind::OpenAi, None))
            .await
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Exports the spans of the requests that have ended (with tracing on).
    pub async fn flush_traces(&self) {
        let traces = self.traces.clone();
        tokio::task::spawn_blocking(move || traces.flush()).await.expect("flush");
    }

    /// Stops accepting and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
