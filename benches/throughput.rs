//! `cargo bench --bench throughput`: registrar against its vendor simulator,
//! each a separate release process on loopback, driven by the generated
//! client. One table row per scenario: users, vendor calls, mean batch size,
//! users per second, the ceiling (qps x max_batch), utilization, the most
//! calls the simulator accepted in any one-second window, throttle answers
//! and the server's peak RSS; then registrar's speed-up over the sequential
//! client a team would otherwise write.
//!
//! The replicas scenario runs three `registrar serve` processes on one LCIC
//! account, their pacing shared through a throwaway redis-server the
//! benchmark starts (Debian's `redis-server`, loopback, no persistence),
//! each fed a third of the users; it reports their combined row and a Redis
//! permit's round trip, p50 and p99, probed every 10 ms while they run.
//!
//! The fairness scenario runs three streams of 200,000 users on one LCIC
//! target and, while they fill every call, a caller with one user every
//! 200 ms; it reports the 50th and 99th percentiles of that caller's latency
//! (send to result), medians over the runs.
//!
//! Scenarios whose name ends in `postgres` keep the audit store on a
//! throwaway PostgreSQL server the benchmark starts (Debian's `postgresql`
//! package, loopback only, PostgreSQL's durable defaults: fsync on,
//! synchronous commit), a fresh database per run; each reports the rows it
//! wrote. The others use a SQLite file.
//!
//! Options (after `--`): `--runs N` (default 3; figures are medians),
//! `--only A,B` (scenarios whose name contains A or B), `--seconds S` (vendor
//! time per throughput scenario, default 10), `--each` (also each run's
//! users/s, max1s, throttle answers and probe latencies, above its
//! scenario's row).
//!
//! Utilization is measured where the quota is spent: users carried by
//! accepted calls per second, over the span from the first call the
//! simulator received to the last one plus one permit interval. The
//! end-to-end users/s (first request to last result) is printed beside it.
//! `max1s` counts every call the simulator received, refused ones too.
//! Import jobs (`tencent-ciam-import`) are bound by the vendor's job
//! processing, two jobs at a time per user store, not by qps x max_batch:
//! their rows have no ceiling.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use registrar::{
    api::pb::{self, registration_service_client::RegistrationServiceClient},
    domain::{User, VendorKind},
    sim::RecordedCall,
    vendor_api::{
        AttemptContext, VendorApi,
        tencent::envelope::TencentCredentials,
        tencent::lcic::{Lcic, LcicConfig},
        volc::rtc::{VolcConfig, VolcRtc},
        volc::signing::VolcCredentials,
        zego::zim::{Zim, ZimConfig},
    },
};
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

#[path = "../tests/it/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use postgres::TestPostgres;

const BINARY: &str = env!("CARGO_BIN_EXE_registrar");

/// Throttle codes of each vendor (docs/vendors/tencent-cloud-api.md#rate-limits,
/// docs/vendors/zim.md#quota, docs/vendors/volc-rtc.md#error-codes).
const THROTTLE_CODES: [&str; 4] = [
    "RequestLimitExceeded",
    "660700001",
    "FlowLimitExceeded",
    "sim.Throttle",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One BatchRegisterStream with chunks of this many users.
    Stream(usize),
    /// This many concurrent callers, one BatchRegister of one user each.
    Callers(usize),
    /// The sequential client a team would otherwise write.
    Baseline,
    /// `registrar import` of a CSV file of the scenario's users.
    Import,
    /// This many `registrar serve` processes sharing the target's quota
    /// through one Redis, each fed one stream of its share of the users
    /// (chunks of this many).
    Replicas(usize, usize),
    /// This many concurrent streams share the scenario's users (chunks of
    /// 1000); meanwhile a caller with one user sends a `BatchRegister` every
    /// `PROBE_EVERY`, waiting for each result: fair share.
    StreamsAndProbes(usize),
}

/// How often the fairness scenario's 1-user caller sends, and at most how often.
const PROBE_EVERY: Duration = Duration::from_millis(200);
const MAX_PROBES: usize = 100;
/// The streams are under way (the queue deep) before the first probe.
const PROBES_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Scenario {
    name: String,
    vendor: VendorKind,
    users: usize,
    latency: Duration,
    fault_rate: f64,
    /// Quota and cap the target is configured with.
    qps: u32,
    max_batch: usize,
    /// The vendor's real quota, when lower than configured.
    real_qps: Option<u32>,
    shape: Shape,
    /// The audit store on PostgreSQL rather than SQLite.
    postgres: bool,
}

impl Scenario {
    fn ceiling(&self) -> f64 {
        f64::from(self.real_qps.unwrap_or(self.qps).min(self.qps)) * self.max_batch as f64
    }
}

#[derive(Debug, Default, Clone)]
struct Row {
    users: usize,
    results: usize,
    registered: usize,
    vendor_calls: usize,
    mean_batch: f64,
    users_per_second: f64,
    vendor_users_per_second: f64,
    ceiling: f64,
    max_calls_in_second: usize,
    throttle_answers: usize,
    throttled_share_after_5s: f64,
    peak_rss_mb: f64,
    wall: Duration,
    /// Faults: results registered or already existing, and found at the vendor.
    truthful_success: usize,
    /// PostgreSQL: registration rows in the store after the run.
    rows_written: usize,
    /// PostgreSQL: the share of row updates made in place (heap-only tuples).
    in_place_updates: f64,
    /// Import: the `registrar import` process's peak RSS.
    client_rss_mb: f64,
    /// Replicas: a Redis permit's round trip (the reservation script) while
    /// the replicas run, median and 99th percentile, in milliseconds.
    redis_permit_p50_ms: f64,
    redis_permit_p99_ms: f64,
    /// Fair share: how many 1-user probes got their result while the streams
    /// ran, and the 50th and 99th percentiles of their latency.
    probes: usize,
    probe_p50_ms: f64,
    probe_p99_ms: f64,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target_toml(scenario: &Scenario, endpoint: &str) -> String {
    let common = format!(
        "name = \"bench\"\nvendor = \"{}\"\nendpoint = \"{endpoint}\"\nqps = {}\nmax_batch = {}\ntimeout = \"2s\"\nmax_attempts = 8\n",
        scenario.vendor, scenario.qps, scenario.max_batch
    );
    let identity = match scenario.vendor {
        VendorKind::TencentLcic => {
            "app_id = 1400000001\nsecret_id = \"AKIDbench\"\nsecret_key = \"bench-lcic-key\"\n"
        }
        VendorKind::ZegoZim => "app_id = 1000001\nserver_secret = \"bench-zim-secret\"\n",
        VendorKind::VolcRtc => {
            "app_id = 600001\nsecret_id = \"AKLTbench\"\nsecret_key = \"bench-volc-key\"\n"
        }
        VendorKind::TencentCiam | VendorKind::TencentCiamImport => {
            "user_store_id = \"bench-store\"\nregion = \"ap-guangzhou\"\nsecret_id = \"AKIDbenchciam\"\nsecret_key = \"bench-ciam-key\"\n"
        }
    };
    format!("[[targets]]\n{common}{identity}")
}

async fn wait_for_port(port: u16) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn user_for(vendor: VendorKind, n: usize) -> pb::User {
    let mut user = pb::User {
        // numeric, so that Volcengine accepts it too
        user_id: format!("{}", 10_000_000 + n),
        display_name: format!("bench user {n}"),
        ..pb::User::default()
    };
    match vendor {
        VendorKind::TencentCiam => {
            user.ciam = Some(pb::CiamProfile {
                user_name: format!("bench{n}"),
                phone_number: format!("+86-139{n:08}"),
                email: format!("bench{n}@example.com"),
                password: format!("bench-password-{n}"),
                ..pb::CiamProfile::default()
            });
        }
        // imports carry a password hash, never plaintext (docs/vendors/ciam-import.md#password-hash-and-salt)
        VendorKind::TencentCiamImport => {
            user.ciam = Some(pb::CiamProfile {
                user_name: format!("bench{n}"),
                email: format!("bench{n}@example.com"),
                password_hash: "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8".to_owned(),
                password_hash_type: pb::PasswordHashType::Sha1.into(),
                ..pb::CiamProfile::default()
            });
        }
        _ => {}
    }
    user
}

async fn sim_calls(sim_port: u16) -> Vec<RecordedCall> {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .get(
            format!("http://127.0.0.1:{sim_port}/_sim/calls")
                .parse()
                .unwrap(),
        )
        .await
        .expect("the simulator answers /_sim/calls");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("/_sim/calls is JSON")
}

async fn sim_registered(sim_port: u16, vendor: VendorKind, app_id: u64) -> Vec<String> {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("http://127.0.0.1:{sim_port}/_sim/users?vendor={vendor}&app_id={app_id}");
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let users: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
    users
        .into_iter()
        .filter_map(|user| user["origin_id"].as_str().map(str::to_owned))
        .collect()
}

fn app_id_of(vendor: VendorKind) -> u64 {
    match vendor {
        VendorKind::TencentLcic => 1_400_000_001,
        VendorKind::ZegoZim => 1_000_001,
        VendorKind::VolcRtc => 600_001,
        // a CIAM user store is kept under its target's position in the config
        _ => 1,
    }
}

fn max_in_any_second(mut times: Vec<u64>) -> usize {
    times.sort_unstable();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1000 {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

async fn connect(port: u16) -> RegistrationServiceClient<Channel> {
    RegistrationServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("registrar accepts connections")
        .max_decoding_message_size(64 * 1024 * 1024)
}

/// Drives one stream of the users numbered `first..first + users`; returns
/// the results received and when the last arrived.
async fn drive_stream(
    client: &mut RegistrationServiceClient<Channel>,
    vendor: VendorKind,
    users: std::ops::Range<usize>,
    chunk: usize,
) -> (Vec<pb::UserResult>, Instant) {
    use pb::batch_register_stream_request::Message;
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let header = pb::BatchRegisterStreamRequest {
            message: Some(Message::Header(pb::BatchHeader {
                targets: vec!["bench".to_owned()],
                ..pb::BatchHeader::default()
            })),
        };
        if sender.send(header).await.is_err() {
            return;
        }
        let mut next = users.start;
        while next < users.end {
            let end = (next + chunk).min(users.end);
            let chunk = pb::BatchRegisterStreamRequest {
                message: Some(Message::Users(pb::UserChunk {
                    users: (next..end).map(|n| user_for(vendor, n)).collect(),
                })),
            };
            if sender.send(chunk).await.is_err() {
                return;
            }
            next = end;
        }
    });
    let mut stream = client
        .batch_register_stream(ReceiverStream::new(receiver))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut results = Vec::with_capacity(users.len());
    while let Some(response) = stream.message().await.expect("the stream ends cleanly") {
        if let Some(pb::batch_register_stream_response::Event::Result(result)) = response.event {
            results.push(result);
        }
    }
    (results, Instant::now())
}

/// Many concurrent single-user callers over several connections.
async fn drive_callers(
    port: u16,
    vendor: VendorKind,
    callers: usize,
) -> (Vec<pb::UserResult>, Instant) {
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(connect(port).await);
    }
    let tasks: Vec<_> = (0..callers)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            tokio::spawn(async move {
                let request = pb::BatchRegisterRequest {
                    targets: vec!["bench".to_owned()],
                    users: vec![user_for(vendor, n)],
                    ..pb::BatchRegisterRequest::default()
                };
                let mut stream = client.batch_register(request).await.unwrap().into_inner();
                let mut results = Vec::new();
                while let Some(response) = stream.message().await.unwrap() {
                    if let Some(pb::batch_register_response::Event::Result(result)) = response.event
                    {
                        results.push(result);
                    }
                }
                (results, Instant::now())
            })
        })
        .collect();
    gather(tasks).await
}

/// Waits for every task driving users; returns all their results and the
/// latest of their last-result instants (no earlier than when it began
/// waiting).
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<(Vec<pb::UserResult>, Instant)>>,
) -> (Vec<pb::UserResult>, Instant) {
    let mut results = Vec::new();
    let mut last = Instant::now();
    for task in tasks {
        let (mut some, at) = task.await.unwrap();
        results.append(&mut some);
        last = last.max(at);
    }
    (results, last)
}

/// `streams` concurrent streams, each on its own connection, sharing `users`
/// between them; and, from `PROBES_AFTER` on while they run, a caller with
/// one user (numbered after the streams' users) sending a `BatchRegister`
/// every `PROBE_EVERY`, at most `MAX_PROBES`. Returns the streams' results,
/// when the last arrived, and the latency of each probe, from its send to
/// its result.
async fn drive_streams_and_probes(
    port: u16,
    vendor: VendorKind,
    streams: usize,
    users: usize,
) -> (Vec<pb::UserResult>, Instant, Vec<Duration>) {
    let per_stream = users / streams;
    let mut running = Vec::new();
    for stream in 0..streams {
        let mut client = connect(port).await;
        running.push(tokio::spawn(async move {
            drive_stream(
                &mut client,
                vendor,
                stream * per_stream..(stream + 1) * per_stream,
                1000,
            )
            .await
        }));
    }
    let mut probe_client = connect(port).await;
    tokio::time::sleep(PROBES_AFTER).await;
    let mut latencies = Vec::new();
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while latencies.len() < MAX_PROBES && running.iter().any(|stream| !stream.is_finished()) {
        ticks.tick().await;
        let request = pb::BatchRegisterRequest {
            targets: vec!["bench".to_owned()],
            users: vec![user_for(vendor, streams * per_stream + latencies.len())],
            ..pb::BatchRegisterRequest::default()
        };
        let sent = Instant::now();
        let mut answer = probe_client
            .batch_register(request)
            .await
            .expect("the probe is taken")
            .into_inner();
        let mut results = 0;
        while let Some(response) = answer.message().await.expect("the probe ends cleanly") {
            if let Some(pb::batch_register_response::Event::Result(_)) = response.event {
                results += 1;
            }
        }
        assert_eq!(results, 1, "the probe's one result");
        // only probes answered while the streams still ran measure fair share
        if running.iter().any(|stream| !stream.is_finished()) {
            latencies.push(sent.elapsed());
        }
    }
    let (results, last) = gather(running).await;
    (results, last, latencies)
}

/// The `share` (0..=1) percentile of `values`, nearest rank; 0 when empty.
fn percentile_ms(values: &[Duration], share: f64) -> f64 {
    let mut sorted: Vec<f64> = values
        .iter()
        .map(|value| value.as_secs_f64() * 1000.0)
        .collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((share * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// Writes the scenario's users as a CSV file and imports it with
/// `registrar import`, sampling the command's peak RSS; returns a result
/// per user when the command says every user ended registered (exit 0),
/// when it ended, and its peak RSS.
async fn drive_import(
    dir: &Path,
    server_port: u16,
    users: usize,
) -> (Vec<pb::UserResult>, Instant, f64, Instant) {
    let file = dir.join("users.csv");
    let mut csv = String::with_capacity(users * 40);
    csv.push_str("userId,displayName\n");
    for n in 0..users {
        let user = user_for(VendorKind::TencentLcic, n);
        csv.push_str(&format!("{},{}\n", user.user_id, user.display_name));
    }
    std::fs::write(&file, csv).unwrap();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(BINARY)
        .arg("import")
        .arg(&file)
        .args(["--server", &format!("http://127.0.0.1:{server_port}")])
        .args(["--target", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("registrar import starts");
    let pid = child.id().unwrap_or(0);
    let mut peak = 0.0_f64;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(100)) => peak = peak.max(peak_rss_mb(pid)),
        }
    };
    let ended = Instant::now();
    let results = if status.success() {
        (0..users)
            .map(|n| pb::UserResult {
                user_id: user_for(VendorKind::TencentLcic, n).user_id,
                outcome: pb::Outcome::Registered.into(),
                ..pb::UserResult::default()
            })
            .collect()
    } else {
        Vec::new()
    };
    (results, started, peak, ended)
}

async fn run_registrar(
    scenario: &Scenario,
    dir: &Path,
    store: Option<(&TestPostgres, &str)>,
) -> Row {
    let sim_port = free_port();
    let server_port = free_port();
    let endpoint = format!("http://127.0.0.1:{sim_port}");
    let config = dir.join("registrar.toml");
    let database_url = match store {
        Some((postgres, database)) => postgres.create_database(database),
        None => format!("sqlite://{}?mode=rwc", dir.join("audit.db").display()),
    };
    // several replicas share the quota through a throwaway redis-server
    let replicas = match scenario.shape {
        Shape::Replicas(replicas, _) => replicas,
        _ => 1,
    };
    let log = |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).unwrap());
    let redis_port = free_port();
    let _redis = (replicas > 1).then(|| {
        Process(
            Command::new("redis-server")
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(log("redis.log"))
                .spawn()
                .expect("redis-server starts (Debian package redis-server)"),
        )
    });
    if replicas > 1 {
        wait_for_port(redis_port).await;
    }
    let config_text = |port: u16, replica: usize, database_url: &str| {
        let quota = if replicas > 1 {
            format!("[quota]\nredis_url = \"redis://127.0.0.1:{redis_port}\"\n\n")
        } else {
            String::new()
        };
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\nallow_unauthenticated = true\ninstance_name = \"bench-{replica}\"\n\n[audit]\ndatabase_url = \"{database_url}\"\n\n[telemetry]\nlog_format = \"json\"\n\n{quota}{}",
            target_toml(scenario, &endpoint)
        )
    };
    std::fs::write(&config, config_text(server_port, 0, &database_url)).unwrap();
    let mut sim = Command::new(BINARY);
    sim.args(["sim", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{sim_port}")])
        .args(["--latency", &format!("{}ms", scenario.latency.as_millis())])
        .args(["--fault-rate", &scenario.fault_rate.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log("sim.log"));
    if scenario.fault_rate > 0.0 {
        // faulted runs also spread the latency: uniform over latency..2 x latency
        sim.args([
            "--latency-jitter",
            &format!("{}ms", scenario.latency.as_millis()),
        ]);
    }
    if let Some(real_qps) = scenario.real_qps {
        sim.args(["--real-qps", &real_qps.to_string()]);
    }
    let _sim = Process(sim.spawn().expect("the simulator starts"));
    wait_for_port(sim_port).await;
    let mut servers = Vec::new();
    let mut server_ports = vec![server_port];
    for replica in 0..replicas {
        let config = if replica == 0 {
            config.clone()
        } else {
            let port = free_port();
            server_ports.push(port);
            let database_url = format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("audit-{replica}.db")).display()
            );
            let path = dir.join(format!("registrar-{replica}.toml"));
            std::fs::write(&path, config_text(port, replica, &database_url)).unwrap();
            path
        };
        servers.push(Process(
            Command::new(BINARY)
                .args(["serve", "--config"])
                .arg(&config)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log(&format!("registrar-{replica}.log")))
                .spawn()
                .expect("registrar starts"),
        ));
    }
    for port in &server_ports {
        wait_for_port(*port).await;
    }
    let mut client = connect(server_port).await;
    let mut redis_permits = (0.0, 0.0);

    let mut started = Instant::now();
    let mut client_rss_mb = 0.0;
    let mut probe_latencies = Vec::new();
    let (results, last_result) = match scenario.shape {
        Shape::Stream(chunk) => {
            drive_stream(&mut client, scenario.vendor, 0..scenario.users, chunk).await
        }
        Shape::StreamsAndProbes(streams) => {
            let (results, last, latencies) =
                drive_streams_and_probes(server_port, scenario.vendor, streams, scenario.users)
                    .await;
            probe_latencies = latencies;
            (results, last)
        }
        Shape::Callers(callers) => drive_callers(server_port, scenario.vendor, callers).await,
        Shape::Import => {
            let (results, import_started, peak, ended) =
                drive_import(dir, server_port, scenario.users).await;
            started = import_started;
            client_rss_mb = peak;
            (results, ended)
        }
        Shape::Replicas(_, chunk) => {
            let share = scenario.users.div_ceil(replicas);
            let streams: Vec<_> = server_ports
                .iter()
                .enumerate()
                .map(|(replica, port)| {
                    let (port, vendor) = (*port, scenario.vendor);
                    let users = replica * share..((replica + 1) * share).min(scenario.users);
                    tokio::spawn(async move {
                        drive_stream(&mut connect(port).await, vendor, users, chunk).await
                    })
                })
                .collect();
            let probe = tokio::spawn(probe_redis_permits(redis_port));
            let (results, last) = gather(streams).await;
            probe.abort();
            redis_permits = probe_results(&probe_samples());
            (results, last)
        }
        Shape::Baseline => unreachable!("the baseline does not run registrar"),
    };
    let wall = last_result - started;
    let peak_rss_mb = servers
        .iter()
        .map(|server| peak_rss_mb(server.0.id()))
        .fold(0.0, f64::max);
    let calls = sim_calls(sim_port).await;
    let registered_at_vendor: std::collections::HashSet<String> =
        sim_registered(sim_port, scenario.vendor, app_id_of(scenario.vendor))
            .await
            .into_iter()
            .collect();
    drop(servers);

    let accepted: Vec<&RecordedCall> = calls
        .iter()
        .filter(|call| call.accepted() && !call.user_ids.is_empty())
        .collect();
    let carried: usize = accepted.iter().map(|call| call.user_ids.len()).sum();
    let first = accepted
        .iter()
        .map(|call| call.received_at_ms)
        .min()
        .unwrap_or(0);
    let last = accepted
        .iter()
        .map(|call| call.received_at_ms)
        .max()
        .unwrap_or(0);
    let interval_ms =
        1000.0 / f64::from(scenario.real_qps.unwrap_or(scenario.qps).min(scenario.qps));
    let vendor_span = ((last - first) as f64 + interval_ms) / 1000.0;
    let throttles: Vec<&RecordedCall> = calls
        .iter()
        .filter(|call| {
            call.error_code
                .as_deref()
                .is_some_and(|code| THROTTLE_CODES.contains(&code))
        })
        .collect();
    let after_5s = |call: &RecordedCall| call.received_at_ms >= first + 5000;
    let calls_after_5s = calls.iter().filter(|call| after_5s(call)).count();
    let throttled_after_5s = throttles.iter().filter(|call| after_5s(call)).count();
    let success = |result: &&pb::UserResult| {
        matches!(
            result.outcome(),
            pb::Outcome::Registered | pb::Outcome::AlreadyExists
        )
    };
    let truthful_success = results
        .iter()
        .filter(success)
        .filter(|result| {
            let vendor_id = match scenario.vendor {
                VendorKind::TencentCiam | VendorKind::TencentCiamImport => format!(
                    "bench{}",
                    result.user_id.parse::<usize>().unwrap_or(0) - 10_000_000
                ),
                _ => result.user_id.clone(),
            };
            registered_at_vendor.contains(&vendor_id)
        })
        .count();
    Row {
        users: scenario.users,
        results: results.len(),
        registered: results.iter().filter(success).count(),
        vendor_calls: accepted.len(),
        mean_batch: carried as f64 / accepted.len().max(1) as f64,
        users_per_second: scenario.users as f64 / wall.as_secs_f64(),
        vendor_users_per_second: carried as f64 / vendor_span,
        ceiling: scenario.ceiling(),
        // the vendor's window counts every call it received, refused ones
        // too; a call whose connection was dropped after the work is
        // recorded twice (the work, then the fault): counted once
        max_calls_in_second: max_in_any_second(
            calls
                .iter()
                .filter(|call| call.error_code.as_deref() != Some("sim.DropAfterWork"))
                .map(|call| call.received_at_ms)
                .collect(),
        ),
        throttle_answers: throttles.len(),
        throttled_share_after_5s: throttled_after_5s as f64 / calls_after_5s.max(1) as f64,
        peak_rss_mb,
        wall,
        truthful_success,
        rows_written: store.map_or(0, |(postgres, database)| {
            postgres
                .query(database, "SELECT count(*) FROM registrations")
                .parse()
                .unwrap_or(0)
        }),
        in_place_updates: store.map_or(0.0, |(postgres, database)| {
            // the statistics reach the view within a second of each commit
            std::thread::sleep(Duration::from_secs(2));
            postgres
                .query(
                    database,
                    "SELECT n_tup_hot_upd::float8 / greatest(n_tup_upd, 1) \
                     FROM pg_stat_user_tables WHERE relname = 'registrations'",
                )
                .parse()
                .unwrap_or(0.0)
        }),
        client_rss_mb,
        redis_permit_p50_ms: redis_permits.0,
        redis_permit_p99_ms: redis_permits.1,
        probes: probe_latencies.len(),
        probe_p50_ms: percentile_ms(&probe_latencies, 0.5),
        probe_p99_ms: percentile_ms(&probe_latencies, 0.99),
    }
}

/// The round trips the Redis permit probe measured, in milliseconds.
static PROBE_SAMPLES: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

fn probe_samples() -> Vec<f64> {
    std::mem::take(&mut *PROBE_SAMPLES.lock().unwrap())
}

/// While the replicas run, reserves a permit of a quota of its own on their
/// Redis every 10 ms (the same script, the same connection kind as the
/// servers'), timing each round trip: a permit's cost on a busy Redis.
async fn probe_redis_permits(redis_port: u16) {
    use registrar::outbound::shared_quota::{QuotaKey, QuotaStore, QuotaStoreSettings};
    let store = QuotaStore::new(QuotaStoreSettings {
        redis_url: SecretString::from(format!("redis://127.0.0.1:{redis_port}")),
        permit_timeout: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(1),
        fallback_replicas: 1,
        instance: "bench-probe".to_owned(),
    })
    .unwrap();
    let key = QuotaKey::new("bench", "probe", "probe");
    loop {
        let asked = Instant::now();
        if store
            .reserve(&key, 1_000_000.0, 0.0, Duration::from_secs(1))
            .await
            .is_ok()
        {
            let millis = asked.elapsed().as_secs_f64() * 1000.0;
            PROBE_SAMPLES.lock().unwrap().push(millis);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Median and 99th percentile.
fn probe_results(samples: &[f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |share: f64| sorted[((sorted.len() - 1) as f64 * share).round() as usize];
    (at(0.5), at(0.99))
}

/// The client a team would otherwise write: full batches, one call at a time.
async fn run_baseline(scenario: &Scenario, dir: &Path, seconds: f64) -> Row {
    let sim_port = free_port();
    let endpoint = format!("http://127.0.0.1:{sim_port}");
    let config = dir.join("baseline.toml");
    std::fs::write(&config, target_toml(scenario, &endpoint)).unwrap();
    let _sim = Process(
        Command::new(BINARY)
            .args(["sim", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{sim_port}")])
            .args(["--latency", &format!("{}ms", scenario.latency.as_millis())])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(sim_port).await;
    let vendor: Arc<dyn VendorApi> = match scenario.vendor {
        VendorKind::TencentLcic => Arc::new(Lcic::new(LcicConfig {
            endpoint,
            sdk_app_id: app_id_of(VendorKind::TencentLcic),
            region: None,
            credentials: TencentCredentials {
                secret_id: "AKIDbench".to_owned(),
                secret_key: SecretString::from("bench-lcic-key"),
            },
        })),
        VendorKind::ZegoZim => Arc::new(Zim::new(ZimConfig {
            endpoint,
            app_id: app_id_of(VendorKind::ZegoZim),
            server_secret: SecretString::from("bench-zim-secret"),
        })),
        VendorKind::VolcRtc => Arc::new(VolcRtc::new(VolcConfig {
            endpoint,
            app_id: app_id_of(VendorKind::VolcRtc),
            region: "cn-north-1".to_owned(),
            credentials: VolcCredentials {
                access_key_id: "AKLTbench".to_owned(),
                secret_access_key: SecretString::from("bench-volc-key"),
            },
        })),
        _ => unreachable!("baselines cover the batch vendors"),
    };
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let started = Instant::now();
    let mut registered = 0;
    let mut calls = 0;
    let mut next = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let users: Vec<User> = (next..next + scenario.max_batch)
            .map(|n| User {
                user_id: format!("{}", 10_000_000 + n),
                display_name: format!("bench user {n}"),
                ..User::default()
            })
            .collect();
        next += scenario.max_batch;
        let refs: Vec<&User> = users.iter().collect();
        let request = vendor.build_request(&refs, &AttemptContext::now()).unwrap();
        let response = client.request(request.map(Full::new)).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let report = vendor.parse_response(&refs, &http::Response::from_parts(parts, body));
        calls += 1;
        registered += report
            .outcomes
            .iter()
            .filter(|outcome| {
                matches!(
                    outcome,
                    registrar::vendor_api::VendorOutcome::Registered { .. }
                )
            })
            .count();
    }
    let wall = started.elapsed();
    Row {
        users: registered,
        results: registered,
        registered,
        vendor_calls: calls,
        mean_batch: scenario.max_batch as f64,
        users_per_second: registered as f64 / wall.as_secs_f64(),
        vendor_users_per_second: registered as f64 / wall.as_secs_f64(),
        ceiling: scenario.ceiling(),
        wall,
        ..Row::default()
    }
}

fn scenarios(seconds: f64) -> Vec<Scenario> {
    let mut all = Vec::new();
    let vendors = [
        (VendorKind::TencentLcic, 20, 1000, 1000),
        (VendorKind::ZegoZim, 20, 100, 1000),
        (VendorKind::VolcRtc, 50, 20, 1000),
        (VendorKind::TencentCiam, 20, 1, 100),
    ];
    for latency in [50, 300] {
        for (vendor, qps, max_batch, chunk) in vendors {
            let users = (f64::from(qps) * max_batch as f64 * seconds) as usize;
            all.push(Scenario {
                name: format!("{vendor} {latency}ms"),
                vendor,
                users,
                latency: Duration::from_millis(latency),
                fault_rate: 0.0,
                qps,
                max_batch,
                real_qps: None,
                shape: Shape::Stream(chunk),
                postgres: false,
            });
        }
    }
    // the import's bound is the vendor's job processing (two jobs at once
    // per user store), not qps x max_batch: reported without a ceiling
    for latency in [50, 300] {
        all.push(Scenario {
            name: format!("tencent-ciam-import {latency}ms"),
            vendor: VendorKind::TencentCiamImport,
            users: (2000.0 * seconds) as usize,
            latency: Duration::from_millis(latency),
            fault_rate: 0.0,
            qps: 20,
            max_batch: 1000,
            real_qps: None,
            shape: Shape::Stream(1000),
            postgres: false,
        });
    }
    // three replicas on one target, pacing on the quota shared through Redis
    all.push(Scenario {
        name: "replicas 3 tencent-lcic 50ms shared".to_owned(),
        vendor: VendorKind::TencentLcic,
        users: (20_000.0 * seconds) as usize,
        latency: Duration::from_millis(50),
        fault_rate: 0.0,
        qps: 20,
        max_batch: 1000,
        real_qps: None,
        shape: Shape::Replicas(3, 1000),
        postgres: false,
    });
    all.push(Scenario {
        name: "coalescing zego-zim 2000 callers".to_owned(),
        vendor: VendorKind::ZegoZim,
        users: 2000,
        latency: Duration::from_millis(50),
        fault_rate: 0.0,
        qps: 20,
        max_batch: 100,
        real_qps: None,
        shape: Shape::Callers(2000),
        postgres: false,
    });
    all.push(Scenario {
        name: "overhead tencent-lcic 1M, no quota".to_owned(),
        vendor: VendorKind::TencentLcic,
        users: 1_000_000,
        latency: Duration::ZERO,
        fault_rate: 0.0,
        qps: 1_000_000,
        max_batch: 1000,
        real_qps: None,
        shape: Shape::Stream(1000),
        postgres: false,
    });
    for (vendor, qps, max_batch, chunk) in vendors {
        let users = (f64::from(qps) * max_batch as f64 * seconds / 2.0) as usize;
        all.push(Scenario {
            name: format!("faults 10% {vendor}"),
            vendor,
            users,
            latency: Duration::from_millis(50),
            fault_rate: 0.1,
            qps,
            max_batch,
            real_qps: None,
            shape: Shape::Stream(chunk),
            postgres: false,
        });
    }
    all.push(Scenario {
        name: "real quota 10 behind tencent-lcic 20".to_owned(),
        vendor: VendorKind::TencentLcic,
        users: (10_000.0 * seconds * 1.5) as usize,
        latency: Duration::from_millis(50),
        fault_rate: 0.0,
        qps: 20,
        max_batch: 1000,
        real_qps: Some(10),
        shape: Shape::Stream(1000),
        postgres: false,
    });
    // fair share: a 1-user caller's latency while three big streams fill every call
    all.push(Scenario {
        name: "fairness tencent-lcic 3x200k + 1 user".to_owned(),
        vendor: VendorKind::TencentLcic,
        users: 600_000,
        latency: Duration::from_millis(50),
        fault_rate: 0.0,
        qps: 20,
        max_batch: 1000,
        real_qps: None,
        shape: Shape::StreamsAndProbes(3),
        postgres: false,
    });
    // an engineer's million-user CSV through `registrar import`
    all.push(Scenario {
        name: "import csv 1M tencent-lcic 50ms".to_owned(),
        vendor: VendorKind::TencentLcic,
        users: 1_000_000,
        latency: Duration::from_millis(50),
        fault_rate: 0.0,
        qps: 20,
        max_batch: 1000,
        real_qps: None,
        shape: Shape::Import,
        postgres: false,
    });
    // the audit store on PostgreSQL, at the LCIC ceiling and with no quota
    let on_postgres: Vec<Scenario> = all
        .iter()
        .filter(|scenario| {
            scenario.name == "tencent-lcic 50ms" || scenario.name.starts_with("overhead")
        })
        .map(|scenario| Scenario {
            name: format!("{} postgres", scenario.name),
            postgres: true,
            ..scenario.clone()
        })
        .collect();
    all.extend(on_postgres);
    for latency in [50, 300] {
        for (vendor, qps, max_batch, _) in &vendors[..3] {
            all.push(Scenario {
                name: format!("baseline {vendor} {latency}ms"),
                vendor: *vendor,
                users: 0,
                latency: Duration::from_millis(latency),
                fault_rate: 0.0,
                qps: *qps,
                max_batch: *max_batch,
                real_qps: None,
                shape: Shape::Baseline,
                postgres: false,
            });
        }
    }
    all
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn median_row(rows: &[Row]) -> Row {
    let pick = |field: fn(&Row) -> f64| median(rows.iter().map(field).collect());
    Row {
        users: rows[0].users,
        results: pick(|row| row.results as f64) as usize,
        registered: pick(|row| row.registered as f64) as usize,
        vendor_calls: pick(|row| row.vendor_calls as f64) as usize,
        mean_batch: pick(|row| row.mean_batch),
        users_per_second: pick(|row| row.users_per_second),
        vendor_users_per_second: pick(|row| row.vendor_users_per_second),
        ceiling: rows[0].ceiling,
        max_calls_in_second: rows
            .iter()
            .map(|row| row.max_calls_in_second)
            .max()
            .unwrap_or(0),
        throttle_answers: pick(|row| row.throttle_answers as f64) as usize,
        throttled_share_after_5s: pick(|row| row.throttled_share_after_5s),
        peak_rss_mb: pick(|row| row.peak_rss_mb),
        wall: Duration::from_secs_f64(pick(|row| row.wall.as_secs_f64())),
        truthful_success: pick(|row| row.truthful_success as f64) as usize,
        rows_written: pick(|row| row.rows_written as f64) as usize,
        in_place_updates: pick(|row| row.in_place_updates),
        client_rss_mb: pick(|row| row.client_rss_mb),
        redis_permit_p50_ms: pick(|row| row.redis_permit_p50_ms),
        redis_permit_p99_ms: pick(|row| row.redis_permit_p99_ms),
        probes: pick(|row| row.probes as f64) as usize,
        probe_p50_ms: pick(|row| row.probe_p50_ms),
        probe_p99_ms: pick(|row| row.probe_p99_ms),
    }
}

fn main() {
    let mut runs = 3;
    let mut only: Option<String> = None;
    let mut seconds = 10.0;
    let mut each = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(3)
            }
            "--only" => only = args.next(),
            "--each" => each = true,
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(10.0)
            }
            _ => {} // cargo passes --bench
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<38} {:>9} {:>7} {:>6} {:>9} {:>9} {:>8} {:>6} {:>6} {:>7} {:>8} {:>8}",
        "scenario",
        "users",
        "calls",
        "batch",
        "users/s",
        "ceiling",
        "util",
        "max1s",
        "throt",
        "rss MB",
        "e2e u/s",
        "results"
    );
    let selected: Vec<Scenario> = scenarios(seconds)
        .into_iter()
        .filter(|scenario| {
            only.as_deref()
                .is_none_or(|only| only.split(',').any(|part| scenario.name.contains(part)))
        })
        .collect();
    let postgres = selected
        .iter()
        .any(|scenario| scenario.postgres)
        .then(TestPostgres::start_durable);
    if let Some(postgres) = &postgres {
        println!(
            "PostgreSQL on 127.0.0.1:{} with its durable defaults (fsync on, synchronous commit), a fresh database per run",
            postgres.port
        );
    }
    let mut medians: BTreeMap<String, Row> = BTreeMap::new();
    let mut databases = 0;
    for scenario in selected {
        let rows: Vec<Row> = (0..runs)
            .map(|run| {
                let run_dir: PathBuf = dir
                    .path()
                    .join(format!("{}-{run}", scenario.name.replace([' ', '%'], "_")));
                std::fs::create_dir_all(&run_dir).unwrap();
                databases += 1;
                let database = format!("bench_{databases}");
                let store = postgres
                    .as_ref()
                    .filter(|_| scenario.postgres)
                    .map(|postgres| (postgres, database.as_str()));
                runtime.block_on(async {
                    match scenario.shape {
                        Shape::Baseline => run_baseline(&scenario, &run_dir, seconds / 2.0).await,
                        _ => run_registrar(&scenario, &run_dir, store).await,
                    }
                })
            })
            .collect();
        if each {
            for (run, row) in rows.iter().enumerate() {
                let probes = if row.probes > 0 {
                    format!(
                        ", 1-user caller p50 {:.0} ms, p99 {:.0} ms",
                        row.probe_p50_ms, row.probe_p99_ms
                    )
                } else {
                    String::new()
                };
                println!(
                    "    run {}: {:.0} users/s of {:.0}, max1s {}, {} throttle answers{probes}",
                    run + 1,
                    row.vendor_users_per_second,
                    row.ceiling,
                    row.max_calls_in_second,
                    row.throttle_answers
                );
            }
        }
        let row = median_row(&rows);
        // the overhead scenario has no quota, and import jobs are bound by
        // the vendor's job processing: no ceiling to compare with
        let (ceiling, utilization) = if scenario.name.starts_with("overhead")
            || scenario.vendor == VendorKind::TencentCiamImport
        {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.0}", row.ceiling),
                format!("{:.1}%", 100.0 * row.vendor_users_per_second / row.ceiling),
            )
        };
        println!(
            "{:<38} {:>9} {:>7} {:>6.1} {:>9.0} {:>9} {:>8} {:>6} {:>6} {:>7.1} {:>8.0} {:>8}",
            scenario.name,
            row.users,
            row.vendor_calls,
            row.mean_batch,
            row.vendor_users_per_second,
            ceiling,
            utilization,
            row.max_calls_in_second,
            row.throttle_answers,
            row.peak_rss_mb,
            row.users_per_second,
            row.results,
        );
        if scenario.postgres {
            println!(
                "    registration rows written to PostgreSQL: {} of {}; outcome updates made in place: {:.1}%",
                row.rows_written,
                row.users,
                100.0 * row.in_place_updates
            );
        }
        if scenario.shape == Shape::Import {
            println!(
                "    the import command's peak RSS: {:.1} MB; end to end {:.1}% of the ceiling",
                row.client_rss_mb,
                100.0 * row.users_per_second / scenario.ceiling()
            );
        }
        if let Shape::Replicas(replicas, _) = scenario.shape {
            println!(
                "    {replicas} servers, one Redis: a Redis permit's round trip p50 {:.2} ms, p99 {:.2} ms (rss MB: the largest server)",
                row.redis_permit_p50_ms, row.redis_permit_p99_ms
            );
        }
        if scenario.name.starts_with("coalescing") {
            // the first request leaves before the first vendor call: this bounds
            // the time from the first call to the last result from above
            println!(
                "    first request to last result: {:.2} s",
                row.wall.as_secs_f64()
            );
        }
        if let Shape::StreamsAndProbes(streams) = scenario.shape {
            println!(
                "    a 1-user caller's result behind the {streams} streams, {} probes every {} ms: p50 {:.0} ms, p99 {:.0} ms (goal <= 250 ms)",
                row.probes,
                PROBE_EVERY.as_millis(),
                row.probe_p50_ms,
                row.probe_p99_ms
            );
        }
        if scenario.name.starts_with("faults") {
            println!(
                "    registered or already existing: {} of {} ({:.2}%), found at the vendor: {}",
                row.registered,
                row.users,
                100.0 * row.registered as f64 / row.users as f64,
                row.truthful_success
            );
        }
        if scenario.name.starts_with("real quota") {
            println!(
                "    throttled share of calls after the first 5 s: {:.1}%; registered {} of {}",
                100.0 * row.throttled_share_after_5s,
                row.registered,
                row.users
            );
        }
        medians.insert(scenario.name.clone(), row);
    }
    for latency in [50, 300] {
        for vendor in ["tencent-lcic", "zego-zim", "volc-rtc"] {
            let (Some(registrar), Some(baseline)) = (
                medians.get(&format!("{vendor} {latency}ms")),
                medians.get(&format!("baseline {vendor} {latency}ms")),
            ) else {
                continue;
            };
            // like for like: both end to end, first request to last answer
            println!(
                "speed-up over a sequential client, {vendor} at {latency} ms: {:.1}x ({:.0} vs {:.0} users/s end to end)",
                registrar.users_per_second / baseline.users_per_second,
                registrar.users_per_second,
                baseline.users_per_second
            );
        }
    }
}
