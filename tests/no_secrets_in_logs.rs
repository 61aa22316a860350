//! The real binary, run with the most verbose logging, never writes a
//! credential to its logs: the vendor key stays out of every line, in text
//! and JSON formats.

mod common;

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

async fn run_and_collect_logs(log_format: &str) -> String {
    let simulator = start_simulator(vec![lcic_account(20)]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("registrar.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\n\
             [audit]\ndatabase_url = {{ env = \"TEST_DATABASE_URL\" }}\n\
             [telemetry]\nlog_format = \"{log_format}\"\n\n{}",
            lcic_target("lcic", &simulator.endpoint(), "").replace(
                &format!("secret_key = \"{LCIC_SECRET_KEY}\""),
                "secret_key = { env = \"TEST_LCIC_SECRET_KEY\" }"
            )
        ),
    )
    .unwrap();
    // logs go to a file: a pipe nobody reads would fill and stall the server
    let log_path = dir.path().join("registrar.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .env("TEST_LCIC_SECRET_KEY", LCIC_SECRET_KEY)
        .env(
            "TEST_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("audit.db").display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut client = connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
    let mut bad = user("");
    bad.display_name = "x".to_owned();
    let collected = batch_register(
        &mut client,
        request(&["lcic"], vec![user("log-1"), user("log-2"), bad]),
    )
    .await
    .unwrap();
    assert_eq!(collected.results.len(), 3);
    assert_eq!(simulator.calls().len(), 1);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "registrar did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logs = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    logs
}

#[tokio::test]
async fn trace_level_text_logs_hold_no_secret() {
    let logs = run_and_collect_logs("text").await;
    assert!(
        logs.contains("serving registrar.v1.RegistrationService"),
        "the logs were captured"
    );
    assert!(logs.contains("vendor_call"), "vendor calls were traced");
    assert!(!logs.contains(LCIC_SECRET_KEY), "the vendor key was logged");
}

#[tokio::test]
async fn trace_level_json_logs_hold_no_secret() {
    let logs = run_and_collect_logs("json").await;
    assert!(
        logs.lines().any(|line| line.starts_with('{')),
        "json lines were written"
    );
    assert!(!logs.contains(LCIC_SECRET_KEY), "the vendor key was logged");
}
