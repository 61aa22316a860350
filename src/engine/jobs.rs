//! The attempt of a vendor that registers users through jobs (CIAM imports):
//! submit a job, and when the vendor already runs as many jobs as it allows,
//! wait and submit again rather than fail; then poll the job, backing off,
//! until it ends, and take each user's outcome from the finished job.
//!
//! Every submission and every poll is a vendor call with its own audit row
//! (the job id recorded on it) and its own rate permit: the submission's
//! comes from the rate-limit layer above, each poll and resubmission takes
//! one here. A poll that fails is repeated: reading a job's state is always
//! safe. A job that does not end within `JOB_DEADLINE` fails its users.
//!
//! A job that started is never submitted again, whatever its polls answer:
//! its users could be imported twice.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::{
    call::{CallRequest, CallResponse},
    exchange::{Exchange, Sent, audit_unavailable, build_failure, checked, record_report},
};
use crate::{
    audit::VendorCallEnd,
    domain::User,
    outbound::rate_limit::Limiter,
    vendor_api::{
        AttemptContext, CallReport, ErrorClass, ErrorCode, JobApi, JobStatus, RegistrarCode,
        Submission,
    },
};

/// How long a job may take, from its submission to its end.
const JOB_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// The first wait before polling a job; each later wait is half as long again.
const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The first wait before resubmitting while the vendor is busy; doubles.
const FIRST_BUSY_WAIT: Duration = Duration::from_millis(500);
const MAX_BUSY_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn run(
    exchange: &Exchange<'_>,
    jobs: &dyn JobApi,
    limiter: &dyn Limiter,
    request: &CallRequest,
) -> CallResponse {
    let users = request.users();
    let deadline = Instant::now() + JOB_DEADLINE;
    let mut busy_wait = FIRST_BUSY_WAIT;
    let mut first = true;
    let (job_id, submit_call_id) = loop {
        if !first {
            limiter.acquire().await;
        }
        first = false;
        match submit(exchange, jobs, request, &users).await {
            Submitted::Job { job_id, call_id } => break (job_id, call_id),
            Submitted::Done(response) => return response,
            Submitted::Busy { code, message } => {
                if Instant::now() + busy_wait > deadline {
                    let report = CallReport::call_failed(
                        users.len(),
                        None,
                        ErrorClass::Permanent,
                        code,
                        &format!("the vendor stayed busy past the job deadline: {message}"),
                    );
                    return request.settle(report, None);
                }
                tracing::info!(target = %exchange.target.name, wait = ?busy_wait, "vendor runs its maximum of jobs; waiting to submit again");
                tokio::time::sleep(busy_wait).await;
                busy_wait = (busy_wait * 2).min(MAX_BUSY_WAIT);
            }
        }
    };
    let running = RunningJob::new(&exchange.target.metrics.import_jobs_running);
    let report =
        poll_until_finished(exchange, jobs, limiter, request, &users, &job_id, deadline).await;
    drop(running);
    exchange.note_health(&report);
    request.settle(report, Some(submit_call_id))
}

/// Counts a job as running while it lives, however its polling ends.
struct RunningJob(prometheus_client::metrics::gauge::Gauge);

impl RunningJob {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        RunningJob(gauge.clone())
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum Submitted {
    Job { job_id: String, call_id: i64 },
    Busy { code: ErrorCode, message: String },
    Done(CallResponse),
}

async fn submit(
    exchange: &Exchange<'_>,
    jobs: &dyn JobApi,
    request: &CallRequest,
    users: &[&User],
) -> Submitted {
    let vendor = &exchange.target.vendor;
    let Some(call_id) = exchange
        .open(vendor.action(), request.attempt, request.carried())
        .await
    else {
        return Submitted::Done(request.settle(audit_unavailable(users.len()), None));
    };
    let (sent, latency) = exchange
        .send(vendor.build_request(users, &AttemptContext::now()))
        .await;
    let mut end = VendorCallEnd {
        latency,
        ..VendorCallEnd::default()
    };
    let response = match sent.answer(vendor.repeat_is_safe(), users.len()) {
        Ok(response) => response,
        Err(report) => {
            let done = finish(exchange, request, report, call_id, &mut end);
            exchange.close(call_id, vendor.action(), &end).await;
            return Submitted::Done(done);
        }
    };
    end.http_status = Some(response.status().as_u16());
    let submitted = match jobs.parse_submission(users, &response) {
        Submission::Started {
            job_id,
            vendor_request_id,
        } => {
            end.vendor_request_id = vendor_request_id;
            end.vendor_job_id = Some(job_id.clone());
            Submitted::Job { job_id, call_id }
        }
        Submission::Busy {
            code,
            message,
            vendor_request_id,
        } => {
            end.vendor_request_id = vendor_request_id;
            end.vendor_error_code = Some(code.clone());
            end.error_class = Some(ErrorClass::Throttled.as_str().to_owned());
            Submitted::Busy {
                code: ErrorCode::Vendor(code),
                message,
            }
        }
        Submission::Answered(report) => Submitted::Done(finish(
            exchange,
            request,
            checked(report, users.len(), false),
            call_id,
            &mut end,
        )),
    };
    exchange.close(call_id, vendor.action(), &end).await;
    submitted
}

/// Fills the row's outcome from a report that answers the submission itself.
fn finish(
    exchange: &Exchange<'_>,
    request: &CallRequest,
    report: CallReport,
    call_id: i64,
    end: &mut VendorCallEnd,
) -> CallResponse {
    record_report(end, &report);
    exchange.note_health(&report);
    request.settle(report, Some(call_id))
}

async fn poll_until_finished(
    exchange: &Exchange<'_>,
    jobs: &dyn JobApi,
    limiter: &dyn Limiter,
    request: &CallRequest,
    users: &[&User],
    job_id: &str,
    deadline: Instant,
) -> CallReport {
    let mut wait = FIRST_POLL;
    let mut polls: u32 = 0;
    loop {
        tokio::time::sleep(wait).await;
        wait = wait.mul_f64(1.5).min(MAX_POLL_INTERVAL);
        if Instant::now() > deadline {
            return CallReport::call_failed(
                users.len(),
                None,
                ErrorClass::Permanent,
                RegistrarCode::JobTimeout,
                &format!(
                    "job {job_id} did not end within {JOB_DEADLINE:?}; its outcome is unknown"
                ),
            );
        }
        limiter.acquire().await;
        polls += 1;
        let poll_span = tracing::info_span!(
            parent: exchange.span,
            "job_poll",
            poll = polls,
            vendor_request_id = tracing::field::Empty,
            http_status = tracing::field::Empty,
            error_code = tracing::field::Empty,
            vendor_job_id = tracing::field::Empty,
        );
        let poll = exchange.recorded_in(&poll_span);
        let Some(call_id) = poll.open(jobs.poll_action(), polls, Vec::new()).await else {
            // polling is only reading; try again once the audit store is back
            continue;
        };
        let (sent, latency) = poll
            .send(jobs.build_poll_request(job_id, &AttemptContext::now()))
            .instrument(poll_span.clone())
            .await;
        let mut end = VendorCallEnd {
            latency,
            vendor_job_id: Some(job_id.to_owned()),
            ..VendorCallEnd::default()
        };
        let finished = match sent {
            Sent::Answer(response) => {
                end.http_status = Some(response.status().as_u16());
                match jobs.parse_poll(users, job_id, &response) {
                    JobStatus::Running { vendor_request_id } => {
                        end.vendor_request_id = vendor_request_id;
                        None
                    }
                    JobStatus::Finished(report) => {
                        end.vendor_request_id = report.vendor_request_id.clone();
                        Some(checked(report, users.len(), false))
                    }
                    JobStatus::PollFailed {
                        class,
                        code,
                        message,
                        vendor_request_id,
                    } => {
                        end.vendor_request_id = vendor_request_id.clone();
                        end.vendor_error_code = Some(code.to_string());
                        end.error_class = Some(class.as_str().to_owned());
                        // a permanent poll failure (credentials, the store) will not mend
                        (class == ErrorClass::Permanent).then(|| {
                            CallReport::call_failed(
                                users.len(),
                                vendor_request_id,
                                ErrorClass::Permanent,
                                &code,
                                &format!("could not read job {job_id}: {message}"),
                            )
                        })
                    }
                }
            }
            Sent::Transport(error) => {
                tracing::warn!(target = %exchange.target.name, job_id, %error, "polling the job failed; polling again");
                None
            }
            Sent::Unbuildable(error) => Some(build_failure(&error, users.len())),
        };
        poll.close(call_id, jobs.poll_action(), &end).await;
        if let Some(report) = finished {
            tracing::info!(target = %exchange.target.name, job_id, polls, attempt = request.attempt, "job ended");
            return report;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, atomic::Ordering},
        time::Duration,
    };

    use tokio::time::Instant;

    use super::*;
    use crate::{
        engine::{
            call::Settled,
            exchange::HttpService,
            target::TargetSpec,
            testing::{
                BUSY_CODE, CountingLimiter, JOB_ID, MemoryCallLog, POLL_ACTION, SUBMIT_ACTION,
                ScriptedHttp, ScriptedVendor, batch, group, target,
            },
        },
        outbound::http_client::TransportError,
        vendor_api::{ErrorCode, VendorOutcome},
    };

    /// Everything one run of the job loop needs, faked.
    struct Fixture {
        target: Arc<TargetSpec>,
        http: Arc<ScriptedHttp>,
        service: HttpService,
        log: MemoryCallLog,
        limiter: CountingLimiter,
        /// When the fixture was made: the paused clock stands still until the run.
        start: Instant,
    }

    impl Fixture {
        fn new(script: Vec<Result<&'static str, TransportError>>, then: &'static str) -> Fixture {
            let http = ScriptedHttp::new(script, then);
            Fixture {
                target: target(1000, Duration::ZERO, 2),
                service: http.service(),
                http,
                log: MemoryCallLog::default(),
                limiter: CountingLimiter::default(),
                start: Instant::now(),
            }
        }

        /// Runs one job of three users to its end.
        async fn run(&self) -> CallResponse {
            let (shared, _results) = batch("batch");
            let request =
                CallRequest::first(self.target.clone(), group(&shared, 0, &["u0", "u1", "u2"]));
            let span = tracing::Span::none();
            // exit has come: a call whose row cannot be written fails at once
            let exited = tokio_util::sync::CancellationToken::new();
            exited.cancel();
            let exchange = Exchange {
                log: &self.log,
                http: &self.service,
                target: &self.target,
                span: &span,
                exit: &exited,
            };
            run(&exchange, &ScriptedVendor, &self.limiter, &request).await
        }
    }

    fn outcomes(response: &CallResponse) -> Vec<VendorOutcome> {
        let mut settled: Vec<&(usize, Settled)> = response.settled.iter().collect();
        settled.sort_by_key(|(slot, _)| *slot);
        settled
            .into_iter()
            .map(|(_, settled)| settled.outcome.clone())
            .collect()
    }

    fn registered() -> VendorOutcome {
        VendorOutcome::Registered {
            vendor_user_id: None,
        }
    }

    /// The requests expected: milliseconds after the start, and path.
    fn timeline(requests: &[(u64, &str)]) -> Vec<(Duration, String)> {
        requests
            .iter()
            .map(|(millis, path)| (Duration::from_millis(*millis), (*path).to_owned()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_is_polled_until_it_finishes() {
        let fixture = Fixture::new(
            vec![Ok("started"), Ok("running"), Ok("running"), Ok("finished")],
            "finished",
        );
        let response = fixture.run().await;

        assert_eq!(outcomes(&response), vec![registered(); 3]);
        assert!(
            response
                .settled
                .iter()
                .all(|(_, settled)| { settled.attempts == 1 && settled.vendor_call_id == Some(1) })
        );
        // polls back off by half again each time: 200 ms, 300 ms, 450 ms
        assert_eq!(
            fixture.http.requests_since(fixture.start),
            timeline(&[
                (0, "/submit"),
                (200, "/poll"),
                (500, "/poll"),
                (950, "/poll")
            ])
        );
        // every poll takes a permit of its own; the submission's was taken above
        assert_eq!(fixture.limiter.acquired.load(Ordering::Relaxed), 3);
        // each exchange has its completed row, the job id on every one
        let calls = fixture.log.calls();
        let actions: Vec<&str> = calls.iter().map(|(action, _)| action.as_str()).collect();
        assert_eq!(
            actions,
            [SUBMIT_ACTION, POLL_ACTION, POLL_ACTION, POLL_ACTION]
        );
        assert!(
            calls
                .iter()
                .all(|(_, end)| { end.as_ref().unwrap().vendor_job_id.as_deref() == Some(JOB_ID) })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_that_fails_is_polled_again() {
        let fixture = Fixture::new(
            vec![
                Ok("started"),
                Err(TransportError::Timeout),
                Ok("poll-failed"),
                Ok("finished"),
            ],
            "finished",
        );
        let response = fixture.run().await;

        assert_eq!(outcomes(&response), vec![registered(); 3]);
        let calls = fixture.log.calls();
        assert_eq!(
            calls.len(),
            4,
            "submission, two failed polls, the last poll"
        );
        let failed_poll = calls[2].1.as_ref().unwrap();
        assert_eq!(
            failed_poll.vendor_error_code.as_deref(),
            Some("InternalError")
        );
        assert_eq!(failed_poll.error_class.as_deref(), Some("retryable"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_that_does_not_end_in_time_fails_its_users_with_job_timeout() {
        let fixture = Fixture::new(vec![Ok("started")], "running");
        let response = fixture.run().await;

        let elapsed = fixture.start.elapsed();
        assert!(
            elapsed > JOB_DEADLINE && elapsed <= JOB_DEADLINE + MAX_POLL_INTERVAL,
            "{elapsed:?}"
        );
        for outcome in outcomes(&response) {
            let VendorOutcome::Failed { class, code, .. } = outcome else {
                panic!("{outcome:?}");
            };
            assert_eq!(class, ErrorClass::Permanent);
            assert_eq!(code, ErrorCode::Registrar(RegistrarCode::JobTimeout));
        }
        // the users' rows point at the submission, the call that carried them
        assert!(
            response
                .settled
                .iter()
                .all(|(_, settled)| settled.vendor_call_id == Some(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_vendor_gets_the_job_again_after_a_backoff() {
        let fixture = Fixture::new(
            vec![Ok("busy"), Ok("busy"), Ok("started"), Ok("finished")],
            "finished",
        );
        let response = fixture.run().await;

        assert_eq!(outcomes(&response), vec![registered(); 3]);
        // the wait doubles: 500 ms, then 1 s; the first poll 200 ms after the job started
        assert_eq!(
            fixture.http.requests_since(fixture.start),
            timeline(&[
                (0, "/submit"),
                (500, "/submit"),
                (1500, "/submit"),
                (1700, "/poll")
            ])
        );
        // each resubmission takes a permit, as does the poll
        assert_eq!(fixture.limiter.acquired.load(Ordering::Relaxed), 3);
        let calls = fixture.log.calls();
        for (_, end) in &calls[..2] {
            let end = end.as_ref().unwrap();
            assert_eq!(end.vendor_error_code.as_deref(), Some(BUSY_CODE));
            assert_eq!(end.error_class.as_deref(), Some("throttled"));
        }
        // the users' rows point at the submission that started the job
        assert!(
            response
                .settled
                .iter()
                .all(|(_, settled)| settled.vendor_call_id == Some(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_vendor_busy_past_the_deadline_fails_the_users() {
        let fixture = Fixture::new(Vec::new(), "busy");
        let response = fixture.run().await;

        assert!(
            fixture.start.elapsed() <= JOB_DEADLINE,
            "{:?}",
            fixture.start.elapsed()
        );
        for outcome in outcomes(&response) {
            let VendorOutcome::Failed {
                class,
                code,
                message,
            } = outcome
            else {
                panic!("{outcome:?}");
            };
            assert_eq!(class, ErrorClass::Permanent);
            assert_eq!(code, BUSY_CODE);
            assert!(
                message.contains("stayed busy past the job deadline"),
                "{message}"
            );
        }
        assert!(
            fixture
                .http
                .requests_since(fixture.start)
                .iter()
                .all(|(_, path)| path == "/submit")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_job_is_submitted_without_its_audit_row() {
        let fixture = Fixture::new(vec![Ok("started")], "finished");
        fixture.log.unavailable.store(true, Ordering::Relaxed);
        let response = fixture.run().await;

        for outcome in outcomes(&response) {
            let VendorOutcome::Failed { code, .. } = outcome else {
                panic!("{outcome:?}");
            };
            assert_eq!(code, RegistrarCode::AuditUnavailable);
        }
        assert!(fixture.http.requests.lock().unwrap().is_empty());
    }
}
