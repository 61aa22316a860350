//! A throwaway Redis server from the Debian package (`redis-server`), on a
//! free loopback port, with no persistence, stopped when dropped; it can be
//! killed and started again on the same port, as a Redis outage would go.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct TestRedis {
    pub url: String,
    pub port: u16,
    child: Child,
}

impl TestRedis {
    pub async fn start() -> TestRedis {
        let port = super::postgres::free_loopback_port();
        let redis = TestRedis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            child: spawn(port),
        };
        redis.wait_until_answering().await;
        redis
    }

    /// Kills the server, as a crash or a lost node would (its keys are gone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh, empty server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port);
        self.wait_until_answering().await;
    }

    /// Up once it answers PING, within 10 s.
    async fn wait_until_answering(&self) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        for _ in 0..200 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }
}

fn spawn(port: u16) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            // DEBUG SLEEP, from loopback: a Redis that stops answering for a while
            "--enable-debug-command",
            "local",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (Debian package redis-server)")
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
