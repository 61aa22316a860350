//! The HTTP client at the bottom of the outbound stack: hyper with rustls,
//! pooled connections, and a cap on the size of a vendor's answer: an answer
//! whose Content-Length is over it is refused before its body is read, and
//! one without is read only up to the cap, so memory never grows with what
//! a vendor sends.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// The largest vendor answer read by a client not limited to a vendor's own.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why an exchange produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be made: the request was certainly not sent.
    #[error("could not connect to the vendor: {0}")]
    Connect(String),
    /// The request may have reached the vendor, but its answer was lost.
    #[error("the vendor's answer was lost: {0}")]
    AnswerLost(String),
    /// No answer within the per-call timeout; the request may have been processed.
    #[error("no answer within the call timeout")]
    Timeout,
    /// The vendor answered, but with more than registrar reads: the request
    /// was processed, and its answer refused unread.
    #[error("the vendor's answer is larger than the {limit} bytes registrar reads")]
    TooLarge { limit: usize },
}

impl TransportError {
    /// Whether the vendor may have processed the request.
    pub fn maybe_processed(&self) -> bool {
        !matches!(self, TransportError::Connect(_))
    }
}

/// A cloneable `tower::Service` that sends one request and reads the whole answer.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_response_bytes: usize,
}

impl HttpClient {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(https);
        HttpClient {
            client,
            max_response_bytes: MAX_RESPONSE_BYTES,
        }
    }

    /// The same client (sharing its connections), reading answers of at most `limit` bytes.
    pub fn limited_to(&self, limit: usize) -> HttpClient {
        HttpClient {
            client: self.client.clone(),
            max_response_bytes: limit,
        }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl tower::Service<http::Request<Bytes>> for HttpClient {
    type Response = http::Response<Bytes>;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let client = self.client.clone();
        let limit = self.max_response_bytes;
        Box::pin(async move {
            let response = client
                .request(request.map(Full::new))
                .await
                .map_err(|error| {
                    if error.is_connect() {
                        TransportError::Connect(error_chain(&error))
                    } else {
                        TransportError::AnswerLost(error_chain(&error))
                    }
                })?;
            let (parts, body) = response.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit as u64) {
                return Err(TransportError::TooLarge { limit });
            }
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        TransportError::TooLarge { limit }
                    } else {
                        TransportError::AnswerLost(error_chain(error.as_ref()))
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
