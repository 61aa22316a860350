//! The audit store going away mid-stream and coming back: PostgreSQL
//! stopped and started again, a SQLite file on a small filesystem that
//! fills up and is freed, and a SQLite file another process locks and
//! releases. While the store cannot commit, readiness says
//! NOT_SERVING and new work gets UNAVAILABLE; no vendor call is made without
//! its committed row, no result reaches the caller that the store does not
//! hold, and the server serves again by itself once the store is back. A
//! replay with the key then completes the batch.

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use crate::common::{postgres::TestPostgres, process::readiness, small_fs::SmallFilesystem, *};
use registrar::{
    api::pb,
    audit::entity::{registration, vendor_call},
    domain::VendorKind,
    sim::Simulator,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic_health::pb::health_check_response::ServingStatus;

const STEP: Duration = Duration::from_secs(60);
const USERS: usize = 30_000;

fn numbered(count: usize) -> Vec<pb::User> {
    (0..count)
        .map(|n| pb::User {
            user_id: format!("f{n:07}"),
            display_name: format!("Store fault user {n}"),
            ..pb::User::default()
        })
        .collect()
}

async fn wait_for_readiness(registrar: &Registrar, want: ServingStatus) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if readiness(registrar.addr).await == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Streams `USERS` users under `key` while `outage` takes the store away and
/// gives it back, then checks the ground truth and replays.
async fn store_goes_away_mid_stream(
    simulator: &Simulator,
    registrar: &mut Registrar,
    take_away: impl FnOnce(),
    give_back: impl FnOnce(),
) {
    let users = numbered(USERS);
    let stream = stream_in_background(&registrar.client, &["lcic"], "store-fault", users.clone());
    wait_for_calls(simulator, 3).await;

    take_away();
    wait_for_readiness(registrar, ServingStatus::NotServing).await;
    let status = batch_register(&mut registrar.client, request(&["lcic"], numbered(1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    give_back();
    wait_for_readiness(registrar, ServingStatus::Serving).await;

    let streamed = tokio::time::timeout(STEP, stream)
        .await
        .expect("the stream ends once the store is back")
        .unwrap();
    let received = match streamed {
        Ok(collected) => collected.results,
        Err((collected, status)) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            collected.results
        }
    };
    assert!(!received.is_empty());
    let batch_id = received[0].batch_id.clone();

    // ground truth: the store's rows against the results and the vendor's records
    let db = registrar.audit.connection();
    let rows: BTreeMap<String, registration::Model> = registration::Entity::find()
        .filter(registration::Column::BatchId.eq(batch_id.as_str()))
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.user_id.clone(), row))
        .collect();
    for result in &received {
        let row = &rows[&result.user_id];
        assert_eq!(
            row.outcome,
            registrar::domain::Outcome::Registered.as_str(),
            "a result the caller got is the one the store holds: {result:?} vs {row:?}"
        );
        assert_eq!(result.outcome(), pb::Outcome::Registered);
    }
    let call_rows = vendor_call::Entity::find().all(&db).await.unwrap().len();
    let accepted: Vec<_> = simulator
        .calls()
        .into_iter()
        .filter(|call| call.error_code.is_none())
        .collect();
    assert!(
        call_rows >= accepted.len(),
        "every call the vendor got has its committed row: {call_rows} rows, {} calls",
        accepted.len()
    );
    for call in &accepted {
        for user_id in &call.user_ids {
            let row = rows
                .get(user_id)
                .unwrap_or_else(|| panic!("{user_id} reached the vendor without its row"));
            assert!(
                row.vendor_call_id.is_some(),
                "{user_id} reached the vendor but its row names no call"
            );
        }
    }

    let replay = tokio::time::timeout(
        STEP,
        stream_register(&mut registrar.client, &["lcic"], "store-fault", users, 1000),
    )
    .await
    .expect("the replay ends in time")
    .expect("the replay completes");
    assert_one_result_per_index(&replay.results, USERS);
    assert_eq!(replay.with_outcome(pb::Outcome::Registered).len(), USERS);
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        USERS
    );
}

async fn slow_lcic() -> Simulator {
    lcic_with_latency(20, Duration::from_millis(100)).await
}

/// A short lease: its renewal is the write that tells readiness the store commits again.
const SERVER: &str = "batch_lease = \"2s\"";

#[tokio::test]
async fn postgres_stopped_and_started_mid_stream_loses_nothing_and_serving_resumes_by_itself() {
    let postgres = TestPostgres::start_async().await;
    let simulator = slow_lcic().await;
    let mut registrar = Registrar::start_with_database(
        &LCIC.target("lcic", &simulator.endpoint(), "qps = 20"),
        &postgres.url,
        SERVER,
    )
    .await;
    store_goes_away_mid_stream(
        &simulator,
        &mut registrar,
        || postgres.stop(),
        || postgres.restart(),
    )
    .await;
    registrar.stop().await;
}

#[tokio::test]
async fn a_full_sqlite_filesystem_mid_stream_loses_nothing_and_serving_resumes_once_freed() {
    let filesystem = SmallFilesystem::mount(64 * 1024 * 1024);
    let simulator = slow_lcic().await;
    let url = format!(
        "sqlite://{}?mode=rwc",
        filesystem.path().join("audit.db").display()
    );
    let mut registrar = Registrar::start_with_database(
        &LCIC.target("lcic", &simulator.endpoint(), "qps = 20"),
        &url,
        SERVER,
    )
    .await;
    store_goes_away_mid_stream(
        &simulator,
        &mut registrar,
        || filesystem.fill(),
        || filesystem.free(),
    )
    .await;
    registrar.stop().await;
}

/// Another process holding a SQLite file's write lock: the `sqlite3` shell
/// in a transaction it began and leaves open, as an operator's session
/// would, until it is rolled back.
struct SqliteLock {
    path: std::path::PathBuf,
    shell: Mutex<Option<Child>>,
}

impl SqliteLock {
    fn new(path: &Path) -> Self {
        SqliteLock {
            path: path.to_owned(),
            shell: Mutex::new(None),
        }
    }

    /// Starts the shell, which takes the lock as soon as the server's writer
    /// is between two transactions. It does not wait for that: the server
    /// runs on this test's thread, and a transaction it has begun ends only
    /// when this thread is free again.
    fn take(&self) {
        let mut shell = Command::new("sqlite3")
            .arg("-bail")
            .arg(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the sqlite3 shell runs (Debian package sqlite3)");
        let script = ".timeout 30000\nBEGIN IMMEDIATE;\n.print locked\n";
        let stdin = shell.stdin.as_mut().unwrap();
        stdin.write_all(script.as_bytes()).unwrap();
        stdin.flush().unwrap();
        *self.shell.lock().unwrap() = Some(shell);
    }

    /// Rolls the shell's transaction back; checks that it had the lock.
    fn release(&self) {
        let mut shell = self
            .shell
            .lock()
            .unwrap()
            .take()
            .expect("the lock was taken");
        let mut stdin = shell.stdin.take().unwrap();
        // a shell that failed to lock has exited (-bail): its status says so below
        let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
        drop(stdin);
        let output = shell.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "sqlite3 ended with {}",
            output.status
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "locked",
            "sqlite3 held the lock"
        );
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        if let Some(mut shell) = self.shell.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = shell.kill();
            let _ = shell.wait();
        }
    }
}

#[tokio::test]
async fn a_sqlite_file_locked_by_another_process_mid_stream_loses_nothing_and_serving_resumes_once_released()
 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let simulator = slow_lcic().await;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut registrar = Registrar::start_with_database(
        &LCIC.target("lcic", &simulator.endpoint(), "qps = 20"),
        &url,
        SERVER,
    )
    .await;
    let lock = SqliteLock::new(&path);
    store_goes_away_mid_stream(
        &simulator,
        &mut registrar,
        || lock.take(),
        || lock.release(),
    )
    .await;
    registrar.stop().await;
}

#[tokio::test]
async fn a_removed_sqlite_directory_is_noticed_and_a_new_file_is_opened_once_it_is_back() {
    let simulator = start_simulator(vec![LCIC.sim(1000)]).await;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("audit");
    std::fs::create_dir(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
    let mut registrar = Registrar::start_with_database(
        &LCIC.target("lcic", &simulator.endpoint(), "qps = 1000"),
        &url,
        SERVER,
    )
    .await;
    let first = batch_register(&mut registrar.client, request(&["lcic"], numbered(10)))
        .await
        .unwrap();
    assert_eq!(first.with_outcome(pb::Outcome::Registered).len(), 10);

    // the directory goes: writes would go to a removed file and be lost
    std::fs::remove_dir_all(&dir).unwrap();
    wait_for_readiness(&registrar, ServingStatus::NotServing).await;
    let calls = simulator.calls().len();
    let status = batch_register(&mut registrar.client, request(&["lcic"], numbered(5)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        simulator.calls().len(),
        calls,
        "nothing is sent without a row"
    );

    // the directory is back: a new file, with its schema, and service resumes
    std::fs::create_dir(&dir).unwrap();
    wait_for_readiness(&registrar, ServingStatus::Serving).await;
    let again = batch_register(&mut registrar.client, request(&["lcic"], numbered(5)))
        .await
        .unwrap();
    assert_eq!(again.with_outcome(pb::Outcome::Registered).len(), 5);
    assert!(dir.join("audit.db").exists());
    let batch = registrar.get_batch(&again.batch_id()).await;
    assert_eq!(batch.state(), pb::BatchState::Completed);
    registrar.stop().await;
}
