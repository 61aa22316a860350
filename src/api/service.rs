//! `registrar.v1.RegistrationService`: each RPC checks the request's shape
//! and what its caller may do (the targets it may use, the batches it may
//! read), converts it, and hands it to the engine; answers are converted
//! back. Nothing here reads the audit store or decides a user's outcome.

use std::{future::Future, pin::Pin, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    callers::caller_of,
    convert, decode_errors,
    error::invalid_argument,
    limits::{Allowance, Limits, OpenCall},
    page_token::PageTokens,
    pb::{self, registration_service_server::RegistrationService},
};
use crate::domain::Caller;
use crate::engine::{
    BatchOptions, Engine, EngineError, OpenedBatch,
    batch::{BatchResults, BatchWriter},
    queries::RegistrationFilter,
};

/// How long a call past its deadline waits for its input's own account of the cut.
const INPUT_CUT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// Responses buffered per stream before the server stops reading results.
const RESPONSE_BUFFER: usize = 256;
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

pub struct RegistrationApi {
    engine: Arc<Engine>,
    max_unary_users: usize,
    limits: Arc<Limits>,
    page_tokens: PageTokens,
}

impl RegistrationApi {
    pub fn new(engine: Arc<Engine>, max_unary_users: usize, limits: Arc<Limits>) -> Self {
        RegistrationApi {
            engine,
            max_unary_users,
            limits,
            page_tokens: PageTokens::shared(),
        }
    }
}

/// One event of either registration response stream.
enum Event {
    Result(pb::UserResult),
    Summary(pb::BatchSummary),
}

impl From<Event> for pb::BatchRegisterResponse {
    fn from(event: Event) -> Self {
        use pb::batch_register_response::Event as Oneof;
        pb::BatchRegisterResponse {
            event: Some(match event {
                Event::Result(result) => Oneof::Result(result),
                Event::Summary(summary) => Oneof::Summary(summary),
            }),
        }
    }
}

impl From<Event> for pb::BatchRegisterStreamResponse {
    fn from(event: Event) -> Self {
        use pb::batch_register_stream_response::Event as Oneof;
        pb::BatchRegisterStreamResponse {
            event: Some(match event {
                Event::Result(result) => Oneof::Result(result),
                Event::Summary(summary) => Oneof::Summary(summary),
            }),
        }
    }
}

type EventStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// Streams a batch's results, then its summary (or the input's error).
///
/// Results are drained to the end even when the caller has gone, so every
/// user in flight finishes and is recorded; a batch whose caller did not
/// get every result ends interrupted, for a replay to resume.
fn drive<R>(
    mut results: BatchResults,
    input: JoinHandle<Result<(), Status>>,
    open_call: OpenCall,
    deadline: Option<tokio::time::Instant>,
) -> EventStream<R>
where
    R: From<Event> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel::<Result<R, Status>>(RESPONSE_BUFFER);
    let mut input = input;
    // the RPC's span goes with the task, so it lasts until the batch's
    // answer ends; it is entered only around the writes made in it, not on
    // each of the task's many polls (one per result)
    let span = tracing::Span::current();
    tokio::spawn(async move {
        // the caller's place for this call is held until its batch ends
        let _open_call = open_call;
        let mut input_ended = None;
        let batch_id = results.batch_id().to_owned();
        let mut caller_gone = false;
        let deadline_passed = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline_passed);
        loop {
            let result = tokio::select! {
                result = results.next() => result,
                // the caller stopped waiting: the call ends, the batch goes on to its end
                () = &mut deadline_passed, if !caller_gone => {
                    caller_gone = true;
                    // a stream's input, cut by the same deadline, says what it accepted
                    let status = match tokio::time::timeout(INPUT_CUT_WAIT, &mut input).await {
                        Ok(joined) => {
                            let ended = joined.unwrap_or_else(|_| Err(Status::internal("the batch's input task failed")));
                            let status = ended.clone().err().filter(|status| status.code() == tonic::Code::DeadlineExceeded);
                            input_ended = Some(ended);
                            status
                        }
                        Err(_) => None,
                    };
                    let _ = sender.send(Err(status.unwrap_or_else(|| past_deadline(&batch_id)))).await;
                    continue;
                }
            };
            let Some(result) = result else { break };
            if !caller_gone {
                let event = Event::Result(convert::result_to_proto(result));
                caller_gone = sender.send(Ok(event.into())).await.is_err();
            }
        }
        let input = match input_ended {
            Some(ended) => ended,
            None => input
                .await
                .unwrap_or_else(|_| Err(Status::internal("the batch's input task failed"))),
        };
        let summary = results
            .finish(!caller_gone && input.is_ok())
            .instrument(span)
            .await;
        if caller_gone {
            tracing::info!(batch_id = %batch_id, "caller left before the batch ended: every result was recorded, and the batch is interrupted for a replay to resume");
        }
        let last = input.map(|()| Event::Summary(convert::summary_to_proto(summary)).into());
        let _ = sender.send(last).await;
    });
    Box::pin(ReceiverStream::new(receiver))
}

/// What a batch asks for besides its caller's name and targets.
struct Asked {
    idempotency_key: String,
    dry_run: bool,
    deadline: Option<tokio::time::Instant>,
}

/// What a caller whose deadline passed before its batch ended is told.
fn past_deadline(batch_id: &str) -> Status {
    Status::deadline_exceeded(format!(
        "the call's deadline passed before batch {batch_id} ended: users already sent finish and are recorded; \
         users no vendor call had carried were not sent, and their rows say not_sent (registrar.DeadlineExceeded); \
         re-send the request with its idempotencyKey to send them"
    ))
}

/// The batch a caller asks for, once it may use every target it names: a
/// target it may not use is PERMISSION_DENIED before any user is accepted.
fn options(
    caller: &Caller,
    allowance: &Allowance,
    targets: Vec<String>,
    asked: Asked,
) -> Result<BatchOptions, Status> {
    let Asked {
        idempotency_key,
        dry_run,
        deadline,
    } = asked;
    if let Some(denied) = targets.iter().find(|target| !caller.may_use(target)) {
        return Err(Status::permission_denied(format!(
            "caller {:?} may not use target {denied:?}",
            caller.name
        )));
    }
    Ok(BatchOptions {
        caller: caller.name.clone(),
        targets,
        idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
        dry_run,
        deadline,
        caller_places: Some(allowance.places()),
    })
}

/// An engine error, its list of known targets cut to the caller's.
fn for_caller(error: EngineError, caller: &Caller) -> Status {
    let mine = |known: Vec<String>| {
        known
            .into_iter()
            .filter(|name| caller.may_use(name))
            .collect()
    };
    Status::from(match error {
        EngineError::UnknownTarget { name, known } => EngineError::UnknownTarget {
            name,
            known: mine(known),
        },
        EngineError::NoTargets { known } => EngineError::NoTargets { known: mine(known) },
        other => other,
    })
}

/// A batch this caller may not read is answered as one that does not exist.
fn not_found(batch_id: &str) -> Status {
    Status::not_found(format!("batch {batch_id} not found"))
}

/// Answers an opened batch (new, replayed or resumed) with its results as
/// `feed` hands it the caller's users.
fn answer<R, Feed, Fed>(
    opened: OpenedBatch,
    open_call: OpenCall,
    deadline: Option<tokio::time::Instant>,
    feed: Feed,
) -> EventStream<R>
where
    R: From<Event> + Send + 'static,
    Feed: FnOnce(Box<BatchWriter>) -> Fed,
    Fed: Future<Output = Result<(), Status>> + Send + 'static,
{
    drive(
        opened.results,
        tokio::spawn(feed(opened.writer).in_current_span()),
        open_call,
        deadline,
    )
}

async fn submit_chunk(
    writer: &mut BatchWriter,
    users: Vec<pb::User>,
    max_users: usize,
) -> Result<(), Status> {
    if users.len() > max_users {
        return Err(invalid_argument(
            "users",
            format!(
                "a chunk holds at most {max_users} users (got {}); split it",
                users.len()
            ),
        ));
    }
    let users = users.into_iter().map(convert::user_from_proto).collect();
    writer.submit(users).await.map_err(Status::from)
}

/// A stream's input and what bounds it.
struct StreamInput {
    input: Streaming<pb::BatchRegisterStreamRequest>,
    max_users: usize,
    targets: usize,
    allowance: Arc<Allowance>,
    idempotency_key: String,
    deadline: Option<tokio::time::Instant>,
}

/// Feeds a stream's chunks after its header to the batch.
///
/// A bad message (a second header, a chunk over the limit, a message with
/// neither) ends the input where it is, like the caller going away: the users
/// before it are still answered, nothing after it is read, and the call ends
/// with the message's INVALID_ARGUMENT instead of a summary. At shutdown the
/// input stops at once: the call ends UNAVAILABLE, telling the caller how to
/// resume.
async fn feed_chunks(mut writer: Box<BatchWriter>, stream: StreamInput) -> Result<(), Status> {
    use pb::batch_register_stream_request::Message;
    let StreamInput {
        mut input,
        max_users,
        targets,
        allowance,
        idempotency_key,
        deadline,
    } = stream;
    let deadline_passed = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline_passed);
    loop {
        let message = tokio::select! {
            biased;
            () = writer.input_stopped() => {
                return Err(Status::from(writer.input_stopped_error(&idempotency_key)));
            }
            () = &mut deadline_passed => {
                return Err(Status::deadline_exceeded(format!(
                    "the call's deadline passed before its input ended: {}; users no vendor call had carried by then \
                     were not sent, and their rows say not_sent (registrar.DeadlineExceeded)",
                    writer.input_cut_advice(&idempotency_key)
                )));
            }
            message = input.message() => message.map_err(decode_errors::clarify)?,
        };
        let Some(message) = message else { break };
        allowance.check_message(&message)?;
        let users = match message.message {
            Some(Message::Users(chunk)) => chunk.users,
            Some(Message::Header(_)) => {
                return Err(invalid_argument(
                    "header",
                    "only the first message may be a header",
                ));
            }
            None => {
                return Err(invalid_argument(
                    "message",
                    "a message must be a header or a chunk of users",
                ));
            }
        };
        // a chunk waits for room among its caller's unanswered results; one
        // that can never fit is refused
        allowance.check_message_places(users.len(), targets)?;
        submit_chunk(&mut writer, users, max_users).await?;
    }
    writer.close().map_err(Status::from)
}

/// The instant a call's `grpc-timeout` header ends it, if it has one: a
/// stream's input is cut there, so the batch ends interrupted rather than
/// waiting for input its caller stopped waiting for.
fn request_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<tokio::time::Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let (amount, unit) = value.split_at(split);
    let amount: u64 = amount.parse().ok()?;
    let timeout = match unit {
        "H" => std::time::Duration::from_secs(amount.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(amount.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(amount),
        "m" => std::time::Duration::from_millis(amount),
        "u" => std::time::Duration::from_micros(amount),
        "n" => std::time::Duration::from_nanos(amount),
        _ => return None,
    };
    tokio::time::Instant::now().checked_add(timeout)
}

/// A batch id as the caller typed it: a UUID, or INVALID_ARGUMENT naming `batchId`.
fn parse_batch_id(batch_id: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(batch_id).map_err(|_| {
        invalid_argument(
            "batchId",
            format!("{batch_id:?} is not a batch id (a UUID such as the summary's batchId)"),
        )
    })
}

#[tonic::async_trait]
impl RegistrationService for RegistrationApi {
    type BatchRegisterStream = EventStream<pb::BatchRegisterResponse>;
    type BatchRegisterStreamStream = EventStream<pb::BatchRegisterStreamResponse>;

    async fn batch_register(
        &self,
        request: Request<pb::BatchRegisterRequest>,
    ) -> Result<Response<Self::BatchRegisterStream>, Status> {
        let caller = caller_of(&request);
        let allowance = self.limits.of(&caller);
        let deadline = request_deadline(request.metadata());
        allowance.check_message(request.get_ref())?;
        let request = request.into_inner();
        if request.users.is_empty() {
            return Err(invalid_argument("users", "at least one user is required"));
        }
        if request.users.len() > self.max_unary_users {
            return Err(invalid_argument(
                "users",
                format!(
                    "{} users exceed the limit of {} for one BatchRegister; send larger batches with BatchRegisterStream",
                    request.users.len(),
                    self.max_unary_users
                ),
            ));
        }
        let open_call = allowance.open_unary_batch()?;
        allowance.check_unary_room(request.users.len(), request.targets.len())?;
        let asked = Asked {
            idempotency_key: request.idempotency_key,
            dry_run: request.dry_run,
            deadline,
        };
        let opened = self
            .engine
            .open_batch(options(&caller, &allowance, request.targets, asked)?)
            .await
            .map_err(|error| for_caller(error, &caller))?;
        let users = request.users;
        Ok(Response::new(answer(
            opened,
            open_call,
            deadline,
            |mut writer| async move {
                submit_chunk(&mut writer, users, usize::MAX).await?;
                writer.close().map_err(Status::from)
            },
        )))
    }

    async fn batch_register_stream(
        &self,
        request: Request<Streaming<pb::BatchRegisterStreamRequest>>,
    ) -> Result<Response<Self::BatchRegisterStreamStream>, Status> {
        use pb::batch_register_stream_request::Message;
        let deadline = request_deadline(request.metadata());
        let caller = caller_of(&request);
        let allowance = self.limits.of(&caller);
        let open_call = allowance.open_stream()?;
        let mut input = request.into_inner();
        let header = match input.message().await.map_err(decode_errors::clarify)? {
            Some(pb::BatchRegisterStreamRequest {
                message: Some(Message::Header(header)),
            }) => header,
            Some(_) => {
                return Err(invalid_argument(
                    "header",
                    "the first message must be a header naming the targets",
                ));
            }
            None => {
                return Err(invalid_argument(
                    "header",
                    "the stream ended before its header; the first message must be a header naming the targets",
                ));
            }
        };
        let stream = StreamInput {
            input,
            max_users: self.engine.max_users_per_message(),
            targets: header.targets.len(),
            allowance: allowance.clone(),
            idempotency_key: header.idempotency_key.clone(),
            deadline,
        };
        let asked = Asked {
            idempotency_key: header.idempotency_key,
            dry_run: header.dry_run,
            deadline,
        };
        let opened = self
            .engine
            .open_batch(options(&caller, &allowance, header.targets, asked)?)
            .await
            .map_err(|error| for_caller(error, &caller))?;
        Ok(Response::new(answer(
            opened,
            open_call,
            deadline,
            move |writer| feed_chunks(writer, stream),
        )))
    }

    async fn get_batch(
        &self,
        request: Request<pb::GetBatchRequest>,
    ) -> Result<Response<pb::GetBatchResponse>, Status> {
        let caller = caller_of(&request);
        let batch_id = request.into_inner().batch_id;
        if batch_id.is_empty() {
            return Err(invalid_argument("batchId", "is required"));
        }
        let record = self
            .engine
            .batch(parse_batch_id(&batch_id)?)
            .await?
            .filter(|record| caller.may_read(&record.caller))
            .ok_or_else(|| not_found(&batch_id))?;
        Ok(Response::new(pb::GetBatchResponse {
            batch: Some(convert::batch_to_proto(record)),
        }))
    }

    async fn list_registrations(
        &self,
        request: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let outcome = pb::Outcome::try_from(request.outcome).map_err(|_| {
            invalid_argument("outcome", format!("{} is not an Outcome", request.outcome))
        })?;
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let batch_id = match request.batch_id.as_str() {
            "" if !caller.admin => {
                return Err(invalid_argument(
                    "batchId",
                    format!(
                        "is required: caller {:?} may list the rows of its own batches only",
                        caller.name
                    ),
                ));
            }
            "" => None,
            batch_id => {
                let id = parse_batch_id(batch_id)?;
                if !caller.admin {
                    // each page: one row by its key, not the batch's counts
                    self.engine
                        .batch_caller(id)
                        .await?
                        .filter(|owner| caller.may_read(owner))
                        .ok_or_else(|| not_found(batch_id))?;
                }
                Some(id.to_string())
            }
        };
        let non_empty = |value: String| (!value.is_empty()).then_some(value);
        let filter = RegistrationFilter {
            batch_id,
            target: non_empty(request.target),
            user_id: non_empty(request.user_id),
            outcome: convert::outcome_from_proto(outcome),
        };
        let after = self
            .page_tokens
            .check(&request.page_token, &filter)
            .map_err(|_| {
                invalid_argument(
                    "pageToken",
                    "is not a token this server issued for these filters",
                )
            })?;
        let page = self
            .engine
            .registrations(&filter, u64::from(page_size), after)
            .await?;
        Ok(Response::new(pb::ListRegistrationsResponse {
            registrations: page
                .registrations
                .into_iter()
                .map(convert::registration_to_proto)
                .collect(),
            next_page_token: page
                .next
                .map(|next| self.page_tokens.issue(next, &filter))
                .unwrap_or_default(),
        }))
    }

    async fn list_targets(
        &self,
        request: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        let caller = caller_of(&request);
        let targets = self
            .engine
            .targets()
            .filter(|target| caller.may_use(&target.name))
            .map(|target| pb::Target {
                name: target.name.to_string(),
                vendor: convert::vendor_to_proto(target.vendor_kind).into(),
                max_batch: target.max_batch as u32,
                qps: target.qps.get(),
                health: convert::health_to_proto(target.health.get()).into(),
                quota_pacing: convert::pacing_to_proto(self.engine.pacing(&target.name)).into(),
                paced_rate: target.metrics.paced_rate.get(),
            })
            .collect();
        Ok(Response::new(pb::ListTargetsResponse { targets }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_timeout_header_gives_the_deadline() {
        let deadline = |value: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("grpc-timeout", value.parse().unwrap());
            request_deadline(&metadata).map(|at| at - tokio::time::Instant::now())
        };
        let close = |got: Option<std::time::Duration>, want: u64| {
            got.is_some_and(|got| {
                got <= std::time::Duration::from_millis(want)
                    && got + std::time::Duration::from_millis(50)
                        >= std::time::Duration::from_millis(want)
            })
        };
        assert!(close(deadline("1500m"), 1500));
        assert!(close(deadline("2S"), 2000));
        assert!(close(deadline("1M"), 60_000));
        assert_eq!(deadline("soon"), None);
        assert_eq!(deadline(""), None);
        assert_eq!(deadline("5x"), None);
    }

    #[test]
    fn a_malformed_batch_id_is_invalid_argument_naming_batch_id() {
        let status = parse_batch_id("not-a-uuid").unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with("batchId: "),
            "{}",
            status.message()
        );
        let id = "01A2372A-24C9-72D0-8ED0-22055D8A3129";
        assert_eq!(
            parse_batch_id(id).unwrap().to_string(),
            id.to_lowercase(),
            "ids compare as the server writes them"
        );
    }
}
