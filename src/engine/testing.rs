//! Fakes for the engine's unit tests: a call log in memory, a limiter that
//! counts its permits, a scripted vendor (whose answers name users by their
//! CIAM UserName), and queued users. Test-only: none
//! of it is compiled into the server.

use std::{
    collections::VecDeque,
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc};

use super::{
    call_log::CallLog,
    queue::{BatchShared, Group, Pending},
    target::TargetSpec,
};
use crate::{
    audit::{AuditError, NewVendorCall, RegistrationRow, VendorCallEnd},
    domain::{CiamProfile, Rejection, User, UserResult, VendorKind},
    outbound::rate_limit::Limiter,
    vendor_api::{
        AttemptContext, BuildError, CallReport, ErrorClass, JobApi, JobStatus, Submission,
        VendorApi, VendorOutcome,
    },
};

/// A call log in memory: every row, in the order written.
#[derive(Debug, Default)]
pub struct MemoryCallLog {
    pub calls: Mutex<Vec<(NewVendorCall, Option<VendorCallEnd>)>>,
    pub outcomes: Mutex<Vec<RegistrationRow>>,
    /// While set, `start_call` fails as an unavailable store would.
    pub unavailable: AtomicBool,
}

impl MemoryCallLog {
    /// The action and end of every vendor call, in order.
    pub fn calls(&self) -> Vec<(String, Option<VendorCallEnd>)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(call, end)| (call.action.clone(), end.clone()))
            .collect()
    }
}

impl CallLog for MemoryCallLog {
    fn start_call<'a>(&'a self, call: &'a NewVendorCall) -> BoxFuture<'a, Result<i64, AuditError>> {
        Box::pin(async move {
            if self.unavailable.load(Ordering::Relaxed) {
                return Err(AuditError::Unavailable("set unavailable".to_owned()));
            }
            let mut calls = self.calls.lock().unwrap();
            calls.push((call.clone(), None));
            Ok(calls.len() as i64)
        })
    }

    fn finish_call<'a>(
        &'a self,
        call_id: i64,
        end: &'a VendorCallEnd,
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            self.calls.lock().unwrap()[call_id as usize - 1].1 = Some(end.clone());
            Ok(())
        })
    }

    fn record_outcomes<'a>(
        &'a self,
        rows: &'a [RegistrationRow],
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            self.outcomes.lock().unwrap().extend_from_slice(rows);
            Ok(())
        })
    }
}

/// A limiter that gives every permit at once and counts them.
#[derive(Debug, Default)]
pub struct CountingLimiter {
    pub acquired: AtomicUsize,
}

impl Limiter for CountingLimiter {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.acquired.fetch_add(1, Ordering::Relaxed);
        Box::pin(async {})
    }

    fn current_rate(&self) -> f64 {
        f64::INFINITY
    }

    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// A vendor whose answers are plain words, for a scripted HTTP exchange:
/// a submission answers `started` or `busy`; a poll `running`, `finished`
/// (every user registered) or `poll-failed` (a retryable failure of the poll).
pub struct ScriptedVendor;

pub const SUBMIT_ACTION: &str = "SubmitJob";
pub const POLL_ACTION: &str = "PollJob";
pub const JOB_ID: &str = "job-1";
pub const BUSY_CODE: &str = "TooManyJobs";

fn body(response: &http::Response<Bytes>) -> &str {
    std::str::from_utf8(response.body()).unwrap_or_default()
}

fn request_to(path: &str) -> Result<http::Request<Bytes>, BuildError> {
    Ok(http::Request::post(format!("http://vendor.test{path}")).body(Bytes::new())?)
}

impl VendorApi for ScriptedVendor {
    fn kind(&self) -> VendorKind {
        VendorKind::TencentCiamImport
    }

    fn action(&self) -> &'static str {
        SUBMIT_ACTION
    }

    fn repeat_is_safe(&self) -> bool {
        false
    }

    fn validate(&self, _: &User) -> Result<(), Rejection> {
        Ok(())
    }

    fn build_request(
        &self,
        _: &[&User],
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        request_to("/submit")
    }

    fn parse_response(&self, users: &[&User], _: &http::Response<Bytes>) -> CallReport {
        registered(users.len())
    }

    /// Like a CIAM import's, its answer would name a user by its CIAM UserName.
    fn answer_keys(&self, user: &User) -> Vec<String> {
        user.ciam
            .iter()
            .map(|profile| profile.user_name.clone())
            .filter(|user_name| !user_name.is_empty())
            .collect()
    }

    fn jobs(&self) -> Option<&dyn JobApi> {
        Some(self)
    }
}

impl JobApi for ScriptedVendor {
    fn poll_action(&self) -> &'static str {
        POLL_ACTION
    }

    fn parse_submission(&self, _: &[&User], response: &http::Response<Bytes>) -> Submission {
        match body(response) {
            "started" => Submission::Started {
                job_id: JOB_ID.to_owned(),
                vendor_request_id: None,
            },
            "busy" => Submission::Busy {
                code: BUSY_CODE.to_owned(),
                message: "too many jobs".to_owned(),
                vendor_request_id: None,
            },
            other => panic!("unexpected submission answer {other:?}"),
        }
    }

    fn build_poll_request(
        &self,
        _: &str,
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        request_to("/poll")
    }

    fn parse_poll(&self, users: &[&User], _: &str, response: &http::Response<Bytes>) -> JobStatus {
        match body(response) {
            "running" => JobStatus::Running {
                vendor_request_id: None,
            },
            "finished" => JobStatus::Finished(registered(users.len())),
            "poll-failed" => JobStatus::PollFailed {
                class: ErrorClass::Retryable,
                code: "InternalError".into(),
                message: "try again".to_owned(),
                vendor_request_id: None,
            },
            other => panic!("unexpected poll answer {other:?}"),
        }
    }
}

/// Every user of a call registered.
pub fn registered(user_count: usize) -> CallReport {
    CallReport {
        vendor_request_id: None,
        error_code: None,
        error_class: None,
        outcomes: vec![
            VendorOutcome::Registered {
                vendor_user_id: None
            };
            user_count
        ],
    }
}

/// A target with the scripted vendor and these packing limits.
pub fn target(max_batch: usize, linger: Duration, max_in_flight: usize) -> Arc<TargetSpec> {
    Arc::new(TargetSpec {
        name: Arc::from("test-target"),
        vendor_kind: VendorKind::TencentCiamImport,
        vendor: Arc::new(ScriptedVendor),
        max_batch,
        qps: NonZeroU32::MIN,
        timeout: Duration::from_secs(5),
        linger,
        max_in_flight,
        max_attempts: 1,
        rate_margin: 0.0,
        health: Arc::default(),
        quota_key: crate::outbound::shared_quota::QuotaKey::new("test", "test", "test"),
        metrics: crate::metrics::TargetMetrics::new(
            "test-target",
            VendorKind::TencentCiamImport,
            1,
            max_batch,
        ),
    })
}

/// A batch's shared side, and the receiver its results arrive on.
pub fn batch(id: &str) -> (Arc<BatchShared>, mpsc::UnboundedReceiver<UserResult>) {
    batch_with_deadline(id, None)
}

/// A batch whose caller's deadline is `deadline`.
pub fn batch_with_deadline(
    id: &str,
    deadline: Option<tokio::time::Instant>,
) -> (Arc<BatchShared>, mpsc::UnboundedReceiver<UserResult>) {
    let (results, receiver) = mpsc::unbounded_channel();
    let shared = BatchShared {
        id: Arc::from(id),
        results,
        outstanding: Arc::new(Semaphore::new(1024)),
        deadline,
        span: tracing::Span::none(),
    };
    (Arc::new(shared), receiver)
}

/// Users of `batch` with these ids, indexed from `first_index`.
pub fn group(batch: &Arc<BatchShared>, first_index: u64, user_ids: &[&str]) -> Group {
    user_ids
        .iter()
        .zip(first_index..)
        .map(|(user_id, index)| {
            Arc::new(Pending {
                batch: batch.clone(),
                index,
                user: Arc::new(User {
                    user_id: (*user_id).to_owned(),
                    ..User::default()
                }),
            })
        })
        .collect()
}

/// Users of `batch` with these (user id, CIAM UserName) pairs, indexed from 0.
pub fn named_group(batch: &Arc<BatchShared>, users: &[(&str, &str)]) -> Group {
    users
        .iter()
        .zip(0..)
        .map(|((user_id, user_name), index)| {
            Arc::new(Pending {
                batch: batch.clone(),
                index,
                user: Arc::new(User {
                    user_id: (*user_id).to_owned(),
                    ciam: Some(CiamProfile {
                        user_name: (*user_name).to_owned(),
                        ..CiamProfile::default()
                    }),
                    ..User::default()
                }),
            })
        })
        .collect()
}

/// A scripted HTTP exchange: each request gets the next answer, and is
/// recorded with the (paused) time it arrived. Past the script, `then`.
pub struct ScriptedHttp {
    pub script: Mutex<VecDeque<Result<&'static str, crate::outbound::http_client::TransportError>>>,
    pub then: &'static str,
    pub requests: Mutex<Vec<(tokio::time::Instant, String)>>,
}

impl ScriptedHttp {
    pub fn new(
        script: Vec<Result<&'static str, crate::outbound::http_client::TransportError>>,
        then: &'static str,
    ) -> Arc<Self> {
        Arc::new(ScriptedHttp {
            script: Mutex::new(script.into()),
            then,
            requests: Mutex::new(Vec::new()),
        })
    }

    /// The path of every request and when it came, relative to `start`.
    pub fn requests_since(&self, start: tokio::time::Instant) -> Vec<(Duration, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(at, path)| (*at - start, path.clone()))
            .collect()
    }

    pub fn service(self: &Arc<Self>) -> super::exchange::HttpService {
        let script = self.clone();
        tower::util::BoxCloneSyncService::new(tower::service_fn(
            move |request: http::Request<Bytes>| {
                let script = script.clone();
                async move {
                    script
                        .requests
                        .lock()
                        .unwrap()
                        .push((tokio::time::Instant::now(), request.uri().path().to_owned()));
                    let next = script.script.lock().unwrap().pop_front();
                    let answer = next.unwrap_or(Ok(script.then))?;
                    Ok(http::Response::new(Bytes::from_static(answer.as_bytes())))
                }
            },
        ))
    }
}
