//! The real binary, run with the most verbose logging, never writes a
//! secret anywhere it writes: no vendor key of any of the five vendor kinds,
//! no caller's bearer token (a call with it and one with a wrong token), no
//! user's password, password hash or salt appears in any log line (text and
//! JSON formats), in any span it exports over OTLP (as a collector receives
//! them), or in any row of any table of its audit store, after a user was
//! registered at a target of every kind.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use registrar::api::pb;

const ZIM_APP_ID: u64 = 1_234_567_001;
const ZIM_SERVER_SECRET: &str = "test-zim-server-secret-never-logged";
const VOLC_APP_ID: u64 = 2_000_001;
const VOLC_ACCESS_KEY_ID: &str = "AKLTtestVolcLOGS00000000000000000000";
const VOLC_SECRET_KEY: &str = "test-volc-secret-key-never-logged";
const CIAM_SECRET_ID: &str = "AKIDtestCIAMLOGS00000000000000000000";
const CIAM_SECRET_KEY: &str = "test-ciam-secret-key-never-logged";
const CIAM_STORE: &str = "logs-store-create";
const IMPORT_STORE: &str = "logs-store-import";
const PASSWORD: &str = "user-password-never-logged!";
const PASSWORD_HASH: &str = "0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
const SALT: &str = "user-salt-never-logged";
const BEARER_TOKEN: &str = "caller-bearer-token-never-logged";
const WRONG_TOKEN: &str = "wrong-bearer-token-never-logged";

/// Every secret the run handles: none may appear in a log line.
const SECRETS: [&str; 9] = [
    BEARER_TOKEN,
    WRONG_TOKEN,
    LCIC_SECRET_KEY,
    ZIM_SERVER_SECRET,
    VOLC_SECRET_KEY,
    CIAM_SECRET_KEY,
    PASSWORD,
    PASSWORD_HASH,
    SALT,
];

const LOG_ZIM: TestAccount = TestAccount {
    app_id: ZIM_APP_ID,
    secret_key: ZIM_SERVER_SECRET,
    ..ZIM
};
const LOG_VOLC: TestAccount = TestAccount {
    app_id: VOLC_APP_ID,
    secret_id: VOLC_ACCESS_KEY_ID,
    secret_key: VOLC_SECRET_KEY,
    ..VOLC
};
const LOG_CIAM: TestAccount = TestAccount::ciam(7_101, CIAM_STORE, CIAM_SECRET_ID, CIAM_SECRET_KEY);
const LOG_IMPORT: TestAccount =
    TestAccount::ciam(7_102, IMPORT_STORE, CIAM_SECRET_ID, CIAM_SECRET_KEY).import();

/// One target of each vendor kind, every secret taken from the environment.
fn targets(endpoint: &str) -> String {
    let env = |name: &str| format!("{{ env = \"{name}\" }}");
    [
        LCIC.target_with_secret("lcic", endpoint, &env("TEST_LCIC_SECRET_KEY"), ""),
        LOG_ZIM.target_with_secret("zim", endpoint, &env("TEST_ZIM_SECRET"), ""),
        LOG_VOLC.target_with_secret("volc", endpoint, &env("TEST_VOLC_SECRET"), ""),
        LOG_CIAM.target_with_secret("ciam", endpoint, &env("TEST_CIAM_SECRET"), ""),
        LOG_IMPORT.target_with_secret("import", endpoint, &env("TEST_CIAM_SECRET"), ""),
    ]
    .join("\n")
}

/// A user every vendor accepts: a numeric id (Volcengine), a CIAM profile
/// with a password (CreateUser) and a salted hash (import).
fn user_for_every_vendor() -> pb::User {
    pb::User {
        user_id: "7001".to_owned(),
        display_name: "Log Test".to_owned(),
        ciam: Some(pb::CiamProfile {
            user_name: "logtest".to_owned(),
            phone_number: "+86-13200007001".to_owned(),
            email: "logtest@example.com".to_owned(),
            password: PASSWORD.to_owned(),
            password_hash: PASSWORD_HASH.to_owned(),
            password_hash_type: pb::PasswordHashType::Sha1.into(),
            salt_value: SALT.to_owned(),
            salt_location: pb::SaltLocation::Tail.into(),
            ..pb::CiamProfile::default()
        }),
        ..pb::User::default()
    }
}

/// Everything one run wrote.
struct Written {
    logs: String,
    /// The OTLP export requests, as protobuf on the wire.
    spans_on_the_wire: Vec<u8>,
    span_names: Vec<String>,
    /// `sqlite3 .dump` of the audit store: every row of every table.
    audit_dump: String,
}

async fn run_and_collect(log_format: &str) -> Written {
    let otlp = otlp::OtlpReceiver::start().await;
    let simulator = start_simulator(vec![
        lcic_account(20),
        LOG_ZIM.sim(20),
        LOG_VOLC.sim(20),
        LOG_CIAM.sim(20),
        LOG_IMPORT.sim(20),
    ])
    .await;
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
             [telemetry]\nlog_format = \"{log_format}\"\notlp_endpoint = \"{}\"\n\n{}\n\
             [[callers]]\nname = \"logs\"\ntoken_sha256 = \"{}\"\ntargets = [\"*\"]\n",
            otlp.endpoint,
            targets(&simulator.endpoint()),
            sha256_hex(BEARER_TOKEN)
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
        .env("TEST_ZIM_SECRET", ZIM_SERVER_SECRET)
        .env("TEST_VOLC_SECRET", VOLC_SECRET_KEY)
        .env("TEST_CIAM_SECRET", CIAM_SECRET_KEY)
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
    bad.ciam = user_for_every_vendor().ciam;
    let refused = batch_register(
        &mut client,
        with_token(
            request(&["lcic"], vec![user_for_every_vendor()]),
            WRONG_TOKEN,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let collected = batch_register(
        &mut client,
        with_token(
            request(
                &["lcic", "zim", "volc", "ciam", "import"],
                vec![user_for_every_vendor(), bad],
            ),
            BEARER_TOKEN,
        ),
    )
    .await
    .unwrap();
    // the valid user registered at every target, the invalid one at none
    assert_eq!(collected.results.len(), 10);
    let mut registered: Vec<&str> = collected
        .with_outcome(pb::Outcome::Registered)
        .iter()
        .map(|result| result.target.as_str())
        .collect();
    registered.sort_unstable();
    assert_eq!(
        registered,
        ["ciam", "import", "lcic", "volc", "zim"],
        "{collected:?}"
    );
    assert_eq!(collected.with_outcome(pb::Outcome::Rejected).len(), 5);

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
    let dump = Command::new("sqlite3")
        .arg(dir.path().join("audit.db"))
        .arg(".dump")
        .output()
        .expect("the sqlite3 shell runs (.ci/run installs it)");
    assert!(dump.status.success(), "{dump:?}");
    Written {
        logs,
        spans_on_the_wire: otlp.wire_bytes(),
        span_names: otlp.spans().into_iter().map(|span| span.name).collect(),
        audit_dump: String::from_utf8_lossy(&dump.stdout).into_owned(),
    }
}

#[tokio::test]
async fn trace_level_text_logs_exported_spans_and_audit_rows_hold_no_secret() {
    let written = run_and_collect("text").await;
    assert!(
        written
            .logs
            .contains("serving registrar.v1.RegistrationService"),
        "the logs were captured"
    );
    assert!(
        written.logs.contains("vendor_call"),
        "vendor calls were traced"
    );
    assert_no_secret_in_everything_written(&written);
}

#[tokio::test]
async fn trace_level_json_logs_exported_spans_and_audit_rows_hold_no_secret() {
    let written = run_and_collect("json").await;
    assert!(
        written.logs.lines().any(|line| line.starts_with('{')),
        "json lines were written"
    );
    assert_no_secret_in_everything_written(&written);
}

fn assert_no_secret_in_everything_written(written: &Written) {
    // what was checked is real: spans of vendor calls, rows of every table
    for name in ["vendor_call", "vendor_attempt"] {
        assert!(
            written.span_names.iter().any(|span| span == name),
            "{name} spans were exported: {:?}",
            written.span_names
        );
    }
    for table in ["batches", "vendor_calls", "registrations"] {
        assert!(
            written
                .audit_dump
                .contains(&format!("INSERT INTO {table} "))
                || written
                    .audit_dump
                    .contains(&format!("INSERT INTO \"{table}\"")),
            "the dump holds rows of {table}"
        );
    }
    assert!(
        written.audit_dump.contains("7001"),
        "the user's rows were dumped"
    );
    for secret in SECRETS {
        assert!(!written.logs.contains(secret), "{secret} was logged");
        assert!(
            !written.audit_dump.contains(secret),
            "{secret} is in the audit store"
        );
        assert!(
            !written
                .spans_on_the_wire
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret} was exported in a span"
        );
    }
}
