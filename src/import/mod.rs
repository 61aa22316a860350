//! `registrar import`: a client of a running registrar that streams a file
//! of users (CSV or NDJSON, optionally gzip) through BatchRegisterStream.
//!
//! It reads the file twice: once before anything is sent, to count the
//! users, refuse an unknown column or a malformed row (naming its line), and
//! derive the idempotency key from the file's bytes and the targets; then
//! to send it. Every import carries that key, so a lost connection or a
//! crash of either side is resumed by sending the stream again from the
//! start: the server answers the users it already finished from its audit
//! store and sends only the rest. At most `max_in_flight` users are sent
//! and not yet answered, so memory stays flat for files of any length.
//! Rows that end REJECTED or FAILED go to the failed-rows file.

pub mod columns;
pub mod connect;
mod error;
pub mod failed;
pub mod progress;
pub mod source;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::api::pb;
use connect::ConnectOptions;
pub use error::ImportError;
use failed::{FailedRows, Failure};
use progress::{Counts, Progress, outcome_name};
use source::{Format, RawRow, Source};

/// Users per stream message.
const CHUNK: usize = 500;
/// Malformed rows listed before the import stops.
const BAD_ROWS_SHOWN: usize = 20;
/// Wait before the first reconnect, doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What `registrar import` was asked to do.
pub struct ImportOptions {
    pub input: String,
    pub server: String,
    pub targets: Vec<String>,
    pub format: Option<Format>,
    pub failed: Option<PathBuf>,
    pub idempotency_key: Option<String>,
    pub dry_run: bool,
    pub connection: ConnectOptions,
    /// Reconnects after a lost connection before giving up.
    pub retries: u32,
    pub max_in_flight: usize,
}

/// How an import that ran to its end went.
pub struct ImportReport {
    pub summary: pb::BatchSummary,
    pub key: String,
    pub failed_rows: u64,
    pub failed_file: Option<PathBuf>,
    /// Any user REJECTED or FAILED: exit code 1.
    pub any_failed: bool,
    pub elapsed: Duration,
}

/// The idempotency key of an import: the file's bytes and the targets.
fn derived_key(digest: &str, targets: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(digest.as_bytes());
    for target in targets {
        hasher.update(b"\n");
        hasher.update(target.as_bytes());
    }
    format!("import-{}", &hex::encode(hasher.finalize())[..32])
}

/// Reads the whole file once: the number of users, or why it cannot be sent.
fn check(source: &Source) -> Result<u64, ImportError> {
    let mut rows = source.rows()?;
    let (mut users, mut bad, mut shown) = (0_u64, 0_u64, Vec::new());
    while let Some(row) = rows.next_row()? {
        match row {
            Ok(_) => users += 1,
            Err(row) => {
                bad += 1;
                if shown.len() < BAD_ROWS_SHOWN {
                    shown.push(row);
                }
            }
        }
    }
    if bad > 0 {
        return Err(ImportError::BadRows {
            input: source.name.clone(),
            count: bad,
            shown,
        });
    }
    Ok(users)
}

/// Runs the import to its end, reconnecting after a lost connection.
pub async fn run(options: ImportOptions) -> Result<ImportReport, ImportError> {
    if options.targets.is_empty() {
        return Err(ImportError::Usage("name at least one --target".to_owned()));
    }
    let started = Instant::now();
    let input = options.input.clone();
    let format = options.format;
    let (source, users, digest) = tokio::task::spawn_blocking(move || {
        let source = Source::open(&input, format)?;
        let users = check(&source)?;
        let digest = source.digest()?;
        Ok::<_, ImportError>((source, users, digest))
    })
    .await
    .map_err(|error| ImportError::Usage(error.to_string()))??;
    let source = Arc::new(source);
    let key = options
        .idempotency_key
        .clone()
        .unwrap_or_else(|| derived_key(&digest, &options.targets));
    let failed_path = options
        .failed
        .clone()
        .unwrap_or_else(|| failed::default_path(&options.input, source.format));
    let channel = connect::channel(&options.server, &options.connection)?;

    let mut progress = Progress::start(users);
    progress.say(&format!(
        "importing {users} users from {} to {} with idempotency key {key}{}: if it stops, run the same command again to resume",
        source.name,
        options.targets.join(", "),
        if options.dry_run { " (dry run)" } else { "" }
    ));
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = send_once(
            &options,
            &source,
            &key,
            &failed_path,
            channel.clone(),
            &mut progress,
        )
        .await;
        match outcome {
            Ok(mut report) => {
                progress.finish();
                report.elapsed = started.elapsed();
                return Ok(report);
            }
            Err(Attempt::Fatal(error)) => {
                progress.finish();
                return Err(error);
            }
            Err(Attempt::Retry(message)) => {
                if attempt > options.retries {
                    progress.finish();
                    return Err(ImportError::Connection {
                        server: options.server.clone(),
                        message: format!(
                            "{message} (gave up after {attempt} attempts; run the same command again to resume)"
                        ),
                    });
                }
                progress.say(&format!(
                    "{message}: resuming in {:.1} s with the same key (attempt {} of {})",
                    backoff.as_secs_f64(),
                    attempt + 1,
                    options.retries + 1
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                progress.restart();
            }
        }
    }
}

enum Attempt {
    /// Worth sending the stream again: the connection or the server went away.
    Retry(String),
    Fatal(ImportError),
}

fn classify(status: tonic::Status) -> Attempt {
    match status.code() {
        // the connection or the server went away, or a replica that died
        // still holds the batch until its lease expires
        Code::Unavailable
        | Code::Unknown
        | Code::Internal
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted => {
            Attempt::Retry(format!("{:?}: {}", status.code(), status.message()))
        }
        _ => Attempt::Fatal(ImportError::Refused(status)),
    }
}

/// A user sent and not yet answered at every target.
struct Unanswered {
    line: u64,
    raw: RawRow,
    answers: usize,
    failures: Vec<Failure>,
}

async fn send_once(
    options: &ImportOptions,
    source: &Arc<Source>,
    key: &str,
    failed_path: &std::path::Path,
    channel: tonic::transport::Channel,
    progress: &mut Progress,
) -> Result<ImportReport, Attempt> {
    let mut client = connect::client(channel, &options.connection);
    let rows = source.rows().map_err(Attempt::Fatal)?;
    let mut failed =
        FailedRows::create(failed_path, source.format, rows.header()).map_err(|error| {
            Attempt::Fatal(ImportError::file(&failed_path.display().to_string(), error))
        })?;

    let unanswered: Arc<Mutex<HashMap<u64, Unanswered>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(CHUNK)));
    let sent = Arc::new(AtomicU64::new(0));
    let (messages, stream) = mpsc::channel(4);
    let header = pb::BatchRegisterStreamRequest {
        message: Some(pb::batch_register_stream_request::Message::Header(
            pb::BatchHeader {
                targets: options.targets.clone(),
                idempotency_key: key.to_owned(),
                dry_run: options.dry_run,
            },
        )),
    };
    let reader = {
        let (unanswered, in_flight, sent) = (
            Arc::clone(&unanswered),
            Arc::clone(&in_flight),
            Arc::clone(&sent),
        );
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let fed = feed(
                rows, header, &messages, unanswered, in_flight, sent, runtime,
            );
            // handed back, so that the input ends only when the caller says so
            (fed, messages)
        })
    };

    let _close = CloseOnDrop(Arc::clone(&in_flight));
    let mut responses = match client
        .batch_register_stream(ReceiverStream::new(stream))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return Err(classify(status)),
    };
    let mut reader = Some(reader);
    let targets = options.targets.len();
    let mut counts = Counts::default();
    let mut summary = None;
    let mut any_failed = false;
    loop {
        let message = tokio::select! {
            message = responses.message() => match message {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => return Err(classify(status)),
            },
            fed = async { reader.as_mut().expect("polled only while running").await }, if reader.is_some() => {
                reader = None;
                match fed {
                    Ok((Ok(()), messages)) => {
                        // the whole file is sent: the end of the input
                        drop(messages);
                        continue;
                    }
                    Ok((Err(message), messages)) => {
                        // cancel the call before the input could end cleanly
                        drop(responses);
                        drop(messages);
                        return Err(Attempt::Fatal(ImportError::Usage(format!(
                            "{}: {message}",
                            source.name
                        ))));
                    }
                    Err(error) => return Err(Attempt::Fatal(ImportError::Usage(error.to_string()))),
                }
            }
        };
        match message.event {
            Some(pb::batch_register_stream_response::Event::Result(result)) => {
                let outcome = result.outcome();
                *counts.outcomes.entry(outcome_name(outcome)).or_default() += 1;
                let finished = {
                    let mut map = unanswered.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(user) = map.get_mut(&result.index) else {
                        continue;
                    };
                    user.answers += 1;
                    if matches!(outcome, pb::Outcome::Rejected | pb::Outcome::Failed) {
                        user.failures.push(Failure {
                            target: result.target.clone(),
                            code: result.error_code.clone(),
                            message: result.error_message.clone(),
                        });
                    }
                    if user.answers >= targets {
                        map.remove(&result.index)
                    } else {
                        None
                    }
                };
                if let Some(user) = finished {
                    in_flight.add_permits(1);
                    counts.answered += 1;
                    if !user.failures.is_empty() {
                        any_failed = true;
                        failed.write(&user.raw, &user.failures).map_err(|error| {
                            Attempt::Fatal(ImportError::file(
                                &failed_path.display().to_string(),
                                error,
                            ))
                        })?;
                        if failed.written() <= 3 {
                            progress.say(&format!(
                                "line {}: {}",
                                user.line,
                                user.failures
                                    .iter()
                                    .map(|f| format!("{}: {} {}", f.target, f.code, f.message))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ));
                        }
                    }
                }
                counts.sent = sent.load(Ordering::Relaxed);
                progress.update(&counts);
            }
            Some(pb::batch_register_stream_response::Event::Summary(done)) => summary = Some(done),
            None => {}
        }
    }
    let Some(summary) = summary else {
        return Err(Attempt::Retry(
            "the stream ended without its summary".to_owned(),
        ));
    };
    let left = unanswered.lock().unwrap_or_else(|e| e.into_inner()).len();
    if left > 0 {
        return Err(Attempt::Retry(format!("{left} users were left unanswered")));
    }
    let failed_rows = failed.written();
    let failed_file = failed.finish().map_err(|error| {
        Attempt::Fatal(ImportError::file(&failed_path.display().to_string(), error))
    })?;
    Ok(ImportReport {
        summary,
        key: key.to_owned(),
        failed_rows,
        failed_file,
        any_failed,
        elapsed: Duration::ZERO,
    })
}

/// Closes the permits when an attempt ends, so that a reader waiting for one stops.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Sends the header and the rows in chunks, at most as many unanswered
/// users as `in_flight` has permits; returns once the file is sent or the
/// stream is gone.
fn feed(
    mut rows: source::Rows,
    header: pb::BatchRegisterStreamRequest,
    messages: &mpsc::Sender<pb::BatchRegisterStreamRequest>,
    unanswered: Arc<Mutex<HashMap<u64, Unanswered>>>,
    in_flight: Arc<Semaphore>,
    sent: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
) -> Result<(), String> {
    if messages.blocking_send(header).is_err() {
        return Ok(());
    }
    let send = |chunk: &mut Vec<pb::User>| -> bool {
        if chunk.is_empty() {
            return true;
        }
        let count = chunk.len() as u64;
        let message = pb::BatchRegisterStreamRequest {
            message: Some(pb::batch_register_stream_request::Message::Users(
                pb::UserChunk {
                    users: std::mem::take(chunk),
                },
            )),
        };
        let delivered = messages.blocking_send(message).is_ok();
        sent.fetch_add(count, Ordering::Relaxed);
        delivered
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut index = 0_u64;
    loop {
        let row = match rows.next_row() {
            Ok(Some(Ok(row))) => row,
            Ok(Some(Err(bad))) => {
                return Err(format!(
                    "line {}: {} (the file changed while it was imported)",
                    bad.line, bad.message
                ));
            }
            Ok(None) => break,
            Err(error) => return Err(error.to_string()),
        };
        match in_flight.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                // the users waiting here must be sent before their answers can free permits
                if !send(&mut chunk) {
                    return Ok(());
                }
                match runtime.block_on(in_flight.acquire()) {
                    Ok(permit) => permit.forget(),
                    Err(_) => return Ok(()),
                }
            }
        }
        unanswered.lock().unwrap_or_else(|e| e.into_inner()).insert(
            index,
            Unanswered {
                line: row.line,
                raw: row.raw,
                answers: 0,
                failures: Vec::new(),
            },
        );
        index += 1;
        chunk.push(row.user);
        if chunk.len() == CHUNK && !send(&mut chunk) {
            return Ok(());
        }
    }
    send(&mut chunk);
    Ok(())
}
