//! Timeout: the HTTP exchange of one vendor call attempt under the target's
//! per-call timeout, from the moment the request is handed to the client
//! (the waits for a rate permit and at the send guard are not part of it).
//! An attempt that runs out of time ends as `TransportError::Timeout`: the
//! vendor may have processed it, so whether it is repeated is the caller's
//! decision, never this layer's.

use std::time::Duration;

use bytes::Bytes;
use tower::{
    BoxError, Service, ServiceBuilder, timeout::error::Elapsed, util::BoxCloneSyncService,
};

use super::http_client::TransportError;

/// `inner` under the per-call timeout, with tower's errors mapped back to
/// transport errors.
pub fn timed_http<S>(
    inner: S,
    timeout: Duration,
) -> BoxCloneSyncService<http::Request<Bytes>, http::Response<Bytes>, TransportError>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = TransportError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_err(transport_error)
            .timeout(timeout)
            .service(inner),
    )
}

fn transport_error(error: BoxError) -> TransportError {
    if error.is::<Elapsed>() {
        return TransportError::Timeout;
    }
    match error.downcast::<TransportError>() {
        Ok(transport) => *transport,
        Err(other) => TransportError::AnswerLost(other.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::time::Instant;
    use tower::{ServiceExt, service_fn};

    use super::timed_http;
    use crate::outbound::http_client::TransportError;

    /// A request to nowhere: the services under test never send it.
    pub(crate) fn request() -> http::Request<Bytes> {
        http::Request::post("http://127.0.0.1:1/")
            .body(Bytes::new())
            .unwrap()
    }

    /// A vendor that answers `{}` after `delay`.
    pub(crate) async fn answer_after(
        delay: Duration,
    ) -> Result<http::Response<Bytes>, TransportError> {
        tokio::time::sleep(delay).await;
        Ok(http::Response::new(Bytes::from_static(b"{}")))
    }

    #[tokio::test(start_paused = true)]
    async fn a_vendor_that_does_not_answer_in_time_ends_the_call_as_a_timeout_at_the_timeout() {
        let timeout = Duration::from_millis(500);
        let silent = service_fn(|_: http::Request<Bytes>| answer_after(Duration::from_secs(30)));
        let http = timed_http(silent, timeout);

        let started = Instant::now();
        let answer = http.oneshot(request()).await;

        assert!(matches!(answer, Err(TransportError::Timeout)), "{answer:?}");
        assert_eq!(started.elapsed(), timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_in_time_and_transport_errors_pass_the_timeout_unchanged() {
        let timeout = Duration::from_millis(500);
        let prompt = service_fn(|_: http::Request<Bytes>| answer_after(Duration::from_millis(499)));
        let started = Instant::now();
        let answer = timed_http(prompt, timeout)
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(answer.body(), &Bytes::from_static(b"{}"));
        assert_eq!(started.elapsed(), Duration::from_millis(499));

        let reset = service_fn(|_: http::Request<Bytes>| async {
            Err::<http::Response<Bytes>, _>(TransportError::AnswerLost("reset".to_owned()))
        });
        let error = timed_http(reset, timeout)
            .oneshot(request())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, TransportError::AnswerLost(message) if message == "reset"),
            "{error:?}"
        );
    }
}
