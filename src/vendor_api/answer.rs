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

/// How long a 429 or 503 answer asks the client to wait before trying
/// again: its `Retry-After`, in seconds or as an HTTP date (RFC 9110
/// section 10.2.3). `None` for any other answer, or a value that is neither.
pub fn retry_after<B>(
    response: &http::Response<B>,
    now: std::time::SystemTime,
) -> Option<std::time::Duration> {
    let status = response.status();
    if status != http::StatusCode::TOO_MANY_REQUESTS
        && status != http::StatusCode::SERVICE_UNAVAILABLE
    {
        return None;
    }
    let value = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// A whole call whose answer registrar could not read: permanent here, since
/// a repeat of an answer nobody understood could register the users twice;
/// the engine retries it for a vendor that makes a repeat safe.
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
    fn retry_after_is_read_in_seconds_or_as_an_http_date_on_429_and_503_only() {
        // RFC 9110 section 10.2.3: Retry-After = HTTP-date / delay-seconds
        let answer = |status: u16, value: &str| {
            http::Response::builder()
                .status(status)
                .header("retry-after", value)
                .body(())
                .unwrap()
        };
        let now = httpdate::parse_http_date("Fri, 31 Dec 1999 23:59:00 GMT").unwrap();
        let secs = std::time::Duration::from_secs;
        assert_eq!(retry_after(&answer(503, "120"), now), Some(secs(120)));
        assert_eq!(retry_after(&answer(429, " 5 "), now), Some(secs(5)));
        assert_eq!(
            retry_after(&answer(503, "Fri, 31 Dec 1999 23:59:59 GMT"), now),
            Some(secs(59))
        );
        assert_eq!(
            retry_after(&answer(503, "Fri, 31 Dec 1999 23:00:00 GMT"), now),
            Some(secs(0)),
            "a date gone by: no wait"
        );
        assert_eq!(retry_after(&answer(503, "soon"), now), None);
        assert_eq!(retry_after(&answer(503, "-1"), now), None);
        assert_eq!(retry_after(&answer(500, "5"), now), None);
        assert_eq!(retry_after(&answer(200, "5"), now), None);
    }

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
