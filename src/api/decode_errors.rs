//! What tonic says of a request it cannot decode, said the way this
//! service's callers need: a message that is not valid protobuf of its type
//! is the caller's error (INVALID_ARGUMENT, where tonic says INTERNAL), and a
//! message over the size limit is RESOURCE_EXHAUSTED pointing to
//! BatchRegisterStream (where tonic says OUT_OF_RANGE with no hint). Applied
//! to the statuses read from a stream, and, as a layer of the server, to
//! the trailers-only answers tonic gives a unary request it could not read.

use http::Response;
use tonic::{Code, Status};

/// tonic-prost's message for a protobuf decode error.
const NOT_PROTOBUF: &str = "failed to decode Protobuf message";
/// tonic's message for a message over the decoding limit.
const TOO_LARGE: &str = "decoded message length too large";

/// The clearer status for `status`, or `None` when it needs none.
pub fn clarified(status: &Status) -> Option<Status> {
    match status.code() {
        Code::Internal if status.message().contains(NOT_PROTOBUF) => {
            Some(Status::invalid_argument(format!(
                "the message is not valid protobuf for this method ({})",
                status.message()
            )))
        }
        Code::OutOfRange if status.message().contains(TOO_LARGE) => {
            Some(Status::resource_exhausted(format!(
                "{} ([limits] max_message_bytes): send many users with BatchRegisterStream, in chunks that each fit the limit",
                status.message()
            )))
        }
        _ => None,
    }
}

/// `status`, clarified where it needs it.
pub fn clarify(status: Status) -> Status {
    clarified(&status).unwrap_or(status)
}

/// Rewrites a trailers-only error answer's status in its headers.
pub fn clarify_response<B>(mut response: Response<B>) -> Response<B> {
    if let Some(status) = Status::from_header_map(response.headers())
        && let Some(clear) = clarified(&status)
    {
        let headers = response.headers_mut();
        headers.remove("grpc-status");
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        let _ = clear.add_header(headers);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_error_is_the_callers_and_a_large_message_points_to_streams() {
        let corrupt = clarify(Status::internal(
            "failed to decode Protobuf message: invalid wire type value: 7",
        ));
        assert_eq!(corrupt.code(), Code::InvalidArgument);
        let large = clarify(Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        ));
        assert_eq!(large.code(), Code::ResourceExhausted);
        assert!(large.message().contains("BatchRegisterStream"));
        let other = clarify(Status::internal("something else"));
        assert_eq!(other.code(), Code::Internal);
    }

    #[test]
    fn a_trailers_only_answer_is_rewritten_in_its_headers() {
        let response: Response<()> =
            Status::internal("failed to decode Protobuf message: buffer underflow").into_http();
        let rewritten = clarify_response(response);
        let status = Status::from_header_map(rewritten.headers()).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
