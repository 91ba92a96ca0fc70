//! A private Redis server for a test: `redis-server` started on a free port
//! with nothing kept on disk, killed when dropped. Tests that need to stop
//! Redis mid-run (outages) own theirs this way and never touch a shared one.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// Whether `redis-server` can be started here.
pub fn available() -> bool {
    Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Skips a test (returns from it) when Redis cannot be started, unless
/// `SLUICE_REQUIRE_REDIS` is set (CI), where that is a failure.
#[macro_export]
macro_rules! require_redis {
    () => {
        if !$crate::redis::available() {
            assert!(std::env::var_os("SLUICE_REQUIRE_REDIS").is_none(), "redis-server is required but not installed");
            eprintln!("skipped: redis-server is not installed");
            return;
        }
    };
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub async fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        Self::start_on(port).await
    }

    /// Starts a server on `port` (a restart after [`RedisServer::kill`]).
    pub async fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer { port, child: Some(child) };
        for _ in 0..200 {
            if server.ping().await {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server on port {port} did not answer");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server at once (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
