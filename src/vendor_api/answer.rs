//! Answers every vendor module reads the same way: a failure known only by
//! its HTTP status, and an answer registrar cannot read. Kept once here so
//! that each vendor module only adds what its own document says.

use super::outcome::{CallReport, ErrorClass, RegistrarCode};

/// The class of a failure known only by its HTTP status: 429 throttled, 5xx
/// retryable, anything else permanent.
pub fn status_class(status: http::StatusCode) -> ErrorClass {
    if status == http::StatusCode::TOO_MANY_REQUESTS {
        ErrorClass::Throttled
    } else if status.is_server_error() {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    }
}

/// The code of a failure known only by its HTTP status, e.g. `HTTP502`.
pub fn status_code(status: http::StatusCode) -> String {
    format!("HTTP{}", status.as_u16())
}

/// The message of a failure known only by its HTTP status.
pub fn status_message(status: http::StatusCode) -> String {
    format!("vendor answered HTTP {status}")
}

/// A whole call that failed with only an HTTP status to go on.
pub fn status_failure(user_count: usize, status: http::StatusCode) -> CallReport {
    CallReport::call_failed(
        user_count,
        None,
        status_class(status),
        status_code(status),
        &status_message(status),
    )
}

/// A whole call whose answer registrar could not read: permanent, since a
/// repeat of an answer nobody understood could register the users twice.
pub fn malformed(
    user_count: usize,
    vendor_request_id: Option<String>,
    message: &str,
) -> CallReport {
    CallReport::call_failed(
        user_count,
        vendor_request_id,
        ErrorClass::Permanent,
        RegistrarCode::MalformedResponse,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_alone_is_throttled_retryable_or_permanent() {
        assert_eq!(
            status_class(http::StatusCode::TOO_MANY_REQUESTS),
            ErrorClass::Throttled
        );
        assert_eq!(
            status_class(http::StatusCode::BAD_GATEWAY),
            ErrorClass::Retryable
        );
        assert_eq!(
            status_class(http::StatusCode::FORBIDDEN),
            ErrorClass::Permanent
        );
        let report = status_failure(2, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(report.outcomes.len(), 2);
        assert_eq!(report.error_code.unwrap(), "HTTP503");
    }

    #[test]
    fn an_unreadable_answer_is_a_permanent_registrar_failure() {
        let report = malformed(1, Some("id".to_owned()), "no body");
        assert_eq!(report.error_class, Some(ErrorClass::Permanent));
        assert_eq!(
            report.error_code,
            Some(RegistrarCode::MalformedResponse.into())
        );
    }
}
