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
        AttemptContext, CallReport, ErrorClass, JobApi, JobStatus, RegistrarCode, Submission,
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
                        &code,
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
    let report =
        poll_until_finished(exchange, jobs, limiter, request, &users, &job_id, deadline).await;
    exchange.note_health(&report);
    request.settle(report, Some(submit_call_id))
}

enum Submitted {
    Job { job_id: String, call_id: i64 },
    Busy { code: String, message: String },
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
        .open(vendor.action(), request.attempt, users.len())
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
            exchange.close(call_id, &end).await;
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
            Submitted::Busy { code, message }
        }
        Submission::Answered(report) => Submitted::Done(finish(
            exchange,
            request,
            checked(report, users.len()),
            call_id,
            &mut end,
        )),
    };
    exchange.close(call_id, &end).await;
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
        let Some(call_id) = poll.open(jobs.poll_action(), polls, 0).await else {
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
                        Some(checked(report, users.len()))
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
        poll.close(call_id, &end).await;
        if let Some(report) = finished {
            tracing::info!(target = %exchange.target.name, job_id, polls, attempt = request.attempt, "job ended");
            return report;
        }
    }
}

