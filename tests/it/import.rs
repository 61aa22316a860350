//! `registrar import` as an engineer runs it: the real binary, a file of
//! users, a server and the simulator. Ground truth is what the simulator
//! holds and what the failed-rows file says; a server killed mid-import is
//! restarted on the same port and the command resumes by itself.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use crate::common::{process::ServeProcess, *};
use registrar::{domain::VendorKind, sim::Simulator};

const BINARY: &str = env!("CARGO_BIN_EXE_registrar");
/// Long enough for any one import here on a loaded machine.
const STEP: Duration = Duration::from_secs(120);

fn import_command(server: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command
        .arg("import")
        .args(args)
        .args(["--server", server])
        .env_remove("REGISTRAR_TOKEN")
        .kill_on_drop(true);
    command
}

async fn import(server: &str, args: &[&str]) -> Output {
    tokio::time::timeout(STEP, import_command(server, args).output())
        .await
        .expect("the import ends in time")
        .expect("registrar import runs")
}

fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn lcic_holds(simulator: &Simulator) -> BTreeSet<String> {
    simulator
        .registered(VendorKind::TencentLcic, LCIC_APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect()
}

/// `count` users as CSV rows (`userId,displayName,attributes.team`): the
/// indexes in `empty` have no userId, those in `repeats` repeat user 0's.
fn csv_users(count: usize, empty: &[usize], repeats: &[usize]) -> (String, BTreeSet<String>) {
    let mut text = String::from("userId,displayName,attributes.team\n");
    let mut valid = BTreeSet::new();
    for n in 0..count {
        let user_id = if empty.contains(&n) {
            String::new()
        } else if repeats.contains(&n) {
            "i0000000".to_owned()
        } else {
            let id = format!("i{n:07}");
            valid.insert(id.clone());
            id
        };
        text.push_str(&format!("{user_id},Import user {n},team{}\n", n % 7));
    }
    (text, valid)
}

fn read_csv(path: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        [
            "userId",
            "displayName",
            "attributes.team",
            "target",
            "errorCode",
            "errorMessage"
        ]
    );
    reader.records().map(Result::unwrap).collect()
}

async fn lcic_server(qps: u32) -> (Simulator, Registrar, String) {
    let simulator = start_simulator(vec![LCIC.sim(qps)]).await;
    let registrar =
        Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), &format!("qps = {qps}")))
            .await;
    let server = format!("http://{}", registrar.addr);
    (simulator, registrar, server)
}

#[tokio::test]
async fn a_csv_with_invalid_rows_exits_1_and_its_fixed_failed_file_exits_0() {
    let (simulator, mut registrar, server) = lcic_server(1000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    let (empty, repeats) = ([7, 25_000], [1234, 49_999]);
    let (text, valid) = csv_users(50_000, &empty, &repeats);
    std::fs::write(&input, text).unwrap();

    let output = import(&server, &[input.to_str().unwrap(), "--target", "lcic"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert_eq!(
        lcic_holds(&simulator),
        valid,
        "the vendor holds exactly the valid users"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("49996"),
        "the summary counts them: {stdout}"
    );

    // the failed rows, beside the input, with their original columns and reasons
    let failed = dir.path().join("users.failed.csv");
    let rows = read_csv(&failed);
    let displayed: Vec<&str> = rows.iter().map(|row| &row[1]).collect();
    assert_eq!(
        displayed,
        [
            "Import user 7",
            "Import user 1234",
            "Import user 25000",
            "Import user 49999"
        ]
    );
    for row in &rows {
        assert_eq!(&row[3], "lcic");
        let n: usize = row[1].trim_start_matches("Import user ").parse().unwrap();
        assert_eq!(&row[2], format!("team{}", n % 7), "original columns kept");
        let code = if empty.contains(&n) {
            "validation.required"
        } else {
            "validation.duplicate"
        };
        assert_eq!(&row[4], code, "{row:?}");
        assert!(!row[5].is_empty(), "a reason: {row:?}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 9:"), "input line numbers: {stderr}");

    // fixed and fed back as it is: exit 0
    let fixed = dir.path().join("fixed.csv");
    let mut writer = csv::Writer::from_path(&fixed).unwrap();
    writer
        .write_record([
            "userId",
            "displayName",
            "attributes.team",
            "target",
            "errorCode",
            "errorMessage",
        ])
        .unwrap();
    for row in &rows {
        let n = row[1].trim_start_matches("Import user ");
        let mut fields: Vec<String> = row.iter().map(str::to_owned).collect();
        fields[0] = format!("fixed{n}");
        writer.write_record(&fields).unwrap();
    }
    writer.flush().unwrap();
    let again = import(&server, &[fixed.to_str().unwrap(), "--target", "lcic"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", explain(&again));
    assert_eq!(lcic_holds(&simulator).len(), 50_000);
    assert!(
        !dir.path().join("fixed.failed.csv").exists(),
        "no failed row, no file"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn gzip_ndjson_from_stdin_gives_the_same_results_and_failed_rows() {
    let (simulator, mut registrar, server) = lcic_server(1000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    let mut valid = BTreeSet::new();
    for n in 0..5_000 {
        let user_id = if n == 42 {
            String::new()
        } else {
            format!("j{n:06}")
        };
        if n != 42 {
            valid.insert(user_id.clone());
        }
        lines.push(serde_json::json!({
            "userId": user_id,
            "displayName": format!("Json user {n}"),
            "attributes": {"team": "blue"},
        }));
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in &lines {
        writeln!(gzip, "{line}").unwrap();
    }
    let compressed = gzip.finish().unwrap();
    let failed = dir.path().join("json.failed.ndjson");

    let mut command = import_command(
        &server,
        &[
            "-",
            "--format",
            "ndjson",
            "--target",
            "lcic",
            "--failed",
            failed.to_str().unwrap(),
        ],
    );
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &compressed)
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert_eq!(lcic_holds(&simulator), valid);
    let written = std::fs::read_to_string(&failed).unwrap();
    let rows: Vec<serde_json::Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{written}");
    assert_eq!(rows[0]["displayName"], "Json user 42");
    assert_eq!(rows[0]["attributes"]["team"], "blue");
    assert_eq!(rows[0]["target"], "lcic");
    assert_eq!(rows[0]["errorCode"], "validation.required");
    registrar.stop().await;
}

#[tokio::test]
async fn an_unknown_column_exits_2_before_any_vendor_call() {
    let (simulator, mut registrar, server) = lcic_server(1000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    std::fs::write(&input, "userId,displayName,emial\nu1,One,one@example.com\n").unwrap();
    let output = import(&server, &[input.to_str().unwrap(), "--target", "lcic"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1: unknown column \"emial\"") && stderr.contains("ciam.email"),
        "names the column and the known ones: {stderr}"
    );
    assert!(simulator.calls().is_empty(), "nothing was sent");

    // a malformed NDJSON row stops it too, naming its line
    let json = dir.path().join("users.ndjson");
    std::fs::write(&json, "{\"userId\":\"u1\"}\n{\"userId\":\n").unwrap();
    let output = import(&server, &[json.to_str().unwrap(), "--target", "lcic"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 2: not JSON"));
    assert!(simulator.calls().is_empty(), "nothing was sent");
    registrar.stop().await;
}

#[tokio::test]
async fn a_dry_run_writes_the_failed_rows_and_calls_no_vendor() {
    let (simulator, mut registrar, server) = lcic_server(1000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    let (text, _) = csv_users(3_000, &[10], &[]);
    std::fs::write(&input, text).unwrap();
    let output = import(
        &server,
        &[input.to_str().unwrap(), "--target", "lcic", "--dry-run"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert!(simulator.calls().is_empty(), "a dry run calls no vendor");
    let rows = read_csv(&dir.path().join("users.failed.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1], "Import user 10");
    assert_eq!(&rows[0][4], "validation.required");
    registrar.stop().await;
}

fn sqlite_config(dir: &Path, simulator: &Simulator) -> String {
    format!(
        "[audit]\ndatabase_url = \"sqlite://{}?mode=rwc\"\n\n{}",
        dir.join("audit.db").display(),
        LCIC.target("lcic", &simulator.endpoint(), "qps = 20")
    )
}

/// The users whose registration the audit store holds, read from its file
/// while no server runs.
async fn recorded_registered(dir: &Path) -> BTreeSet<String> {
    use registrar::audit::entity::registration;
    use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
    let url = format!("sqlite://{}?mode=rw", dir.join("audit.db").display());
    let db = Database::connect(url.as_str()).await.unwrap();
    let rows = registration::Entity::find()
        .filter(registration::Column::Outcome.eq("registered"))
        .all(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.into_iter().map(|row| row.user_id).collect()
}

#[tokio::test]
async fn a_server_killed_mid_import_is_resumed_by_the_command_itself() {
    let simulator = lcic_with_latency(20, Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path(), &simulator);
    let server_toml = "instance_name = \"import\"\nbatch_lease = \"3s\"";
    let port = crate::common::postgres::free_loopback_port();
    let mut first = ServeProcess::start_at(dir.path(), port, server_toml, &config).await;
    let input: PathBuf = dir.path().join("users.csv");
    let (text, valid) = csv_users(40_000, &[], &[]);
    std::fs::write(&input, text).unwrap();

    let server = format!("http://127.0.0.1:{port}");
    let mut command = import_command(
        &server,
        &[
            input.to_str().unwrap(),
            "--target",
            "lcic",
            "--retries",
            "40",
        ],
    );
    let running = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_calls(&simulator, 12).await;
    first.kill();
    first.wait_exit(Duration::from_secs(10)).await;
    let finished = recorded_registered(dir.path()).await;
    assert!(!finished.is_empty(), "some users finished before the kill");
    let calls_before = simulator.calls().len();

    let mut second = ServeProcess::start_at(dir.path(), port, server_toml, &config).await;
    let output = tokio::time::timeout(STEP, running.wait_with_output())
        .await
        .expect("the import ends in time")
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("resuming"), "it said it resumed: {stderr}");
    assert_eq!(lcic_holds(&simulator), valid, "every user is registered");
    assert_eq!(
        sent_again(&simulator, calls_before, &finished),
        0,
        "no user whose outcome was recorded is sent again"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("40000"), "{stdout}");
    second.terminate();
    second.wait_exit(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn the_same_command_after_ctrl_c_resumes_the_import() {
    let simulator = lcic_with_latency(20, Duration::from_millis(300)).await;
    let mut registrar =
        Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), "qps = 20")).await;
    let server = format!("http://{}", registrar.addr);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    let (text, valid) = csv_users(40_000, &[], &[]);
    std::fs::write(&input, text).unwrap();
    let args = [input.to_str().unwrap(), "--target", "lcic"];

    let first = import_command(&server, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_calls(&simulator, 12).await;
    let pid = first.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = tokio::time::timeout(STEP, first.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", explain(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("run the same command again"));

    // the cut stream's batch ends interrupted, its finished users recorded
    let batch_id = batch_id_of_user(&registrar.client, "i0000000").await;
    wait_for_batch_state(
        &registrar.client,
        &batch_id,
        registrar::api::pb::BatchState::Interrupted,
        STEP,
    )
    .await;
    let finished: BTreeSet<String> = outcomes_by_user(&registrar.client, &batch_id)
        .await
        .into_iter()
        .filter(|(_, outcome)| *outcome == registrar::api::pb::Outcome::Registered)
        .map(|(user_id, _)| user_id)
        .collect();
    assert!(!finished.is_empty() && finished.len() < valid.len());
    let calls_before = simulator.calls().len();

    let again = import(&server, &args).await;
    assert_eq!(again.status.code(), Some(0), "{}", explain(&again));
    assert_eq!(lcic_holds(&simulator), valid);
    assert_eq!(
        sent_again(&simulator, calls_before, &finished),
        0,
        "no finished user is sent again"
    );
    let batch = registrar.get_batch(&batch_id).await;
    assert_eq!(batch.state(), registrar::api::pb::BatchState::Completed);
    registrar.stop().await;
}
