//! What a vendor said about a call and its users, in registrar's terms: one
//! outcome per user, each failure with its class (may the retry layer try
//! again?) and its code (the vendor's own, verbatim, or one of registrar's).

use std::fmt;

/// The failures registrar reports itself, when no vendor code says what
/// happened. Control flow decides on these variants; their `registrar.*`
/// strings are only the wire format (results, audit rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrarCode {
    /// The vendor's answer could not be read, or did not account for every user.
    MalformedResponse,
    /// The vendor's answer did not list a user it should have.
    UserNotRegistered,
    /// A failure entry named no code.
    UnspecifiedFailure,
    /// An import job was submitted but never polled to its end.
    JobNotPolled,
    /// A poll's answer did not list the job it asked about.
    JobNotListed,
    /// An import job did not end within the time allowed.
    JobTimeout,
    /// The audit row of the call could not be written, so no call was made.
    AuditUnavailable,
    /// The request could not be built (a configuration problem).
    RequestBuildFailed,
    /// No connection to the vendor could be opened: nothing was sent.
    ConnectFailed,
    /// The request left, but its answer was lost.
    AnswerLost,
    /// The vendor did not answer within the call's timeout.
    Timeout,
    /// The user's call ended without a result (its task was lost).
    Lost,
    /// A call carried the user before its batch was interrupted and the
    /// answer was lost; the vendor makes a repeat unsafe, so it was not sent
    /// again and only the vendor knows the outcome.
    OutcomeUnknown,
    /// The caller's deadline passed before a vendor call carried the user:
    /// it was not sent.
    DeadlineExceeded,
    /// The vendor's answer was over the size registrar reads for that vendor.
    ResponseTooLarge,
}

impl RegistrarCode {
    /// The code as reported to callers and stored in audit rows.
    pub const fn as_str(self) -> &'static str {
        match self {
            RegistrarCode::MalformedResponse => "registrar.MalformedResponse",
            RegistrarCode::UserNotRegistered => "registrar.UserNotRegistered",
            RegistrarCode::UnspecifiedFailure => "registrar.UnspecifiedFailure",
            RegistrarCode::JobNotPolled => "registrar.JobNotPolled",
            RegistrarCode::DeadlineExceeded => "registrar.DeadlineExceeded",
            RegistrarCode::ResponseTooLarge => "registrar.ResponseTooLarge",
            RegistrarCode::JobNotListed => "registrar.JobNotListed",
            RegistrarCode::JobTimeout => "registrar.JobTimeout",
            RegistrarCode::AuditUnavailable => "registrar.AuditUnavailable",
            RegistrarCode::RequestBuildFailed => "registrar.RequestBuildFailed",
            RegistrarCode::ConnectFailed => "registrar.ConnectFailed",
            RegistrarCode::AnswerLost => "registrar.AnswerLost",
            RegistrarCode::Timeout => "registrar.Timeout",
            RegistrarCode::Lost => "registrar.Lost",
            RegistrarCode::OutcomeUnknown => "registrar.OutcomeUnknown",
        }
    }
}

/// The code of a failure: the vendor's own, verbatim, or one of registrar's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Vendor(String),
    Registrar(RegistrarCode),
}

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Vendor(code) => code,
            ErrorCode::Registrar(code) => code.as_str(),
        }
    }

    /// Whether registrar, not the vendor, reported this failure.
    pub fn is_registrar(&self) -> bool {
        matches!(self, ErrorCode::Registrar(_))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl From<RegistrarCode> for ErrorCode {
    fn from(code: RegistrarCode) -> Self {
        ErrorCode::Registrar(code)
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        ErrorCode::Vendor(code)
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        ErrorCode::Vendor(code.to_owned())
    }
}

impl From<&ErrorCode> for ErrorCode {
    fn from(code: &ErrorCode) -> Self {
        code.clone()
    }
}

impl From<&String> for ErrorCode {
    fn from(code: &String) -> Self {
        ErrorCode::Vendor(code.clone())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<RegistrarCode> for ErrorCode {
    fn eq(&self, other: &RegistrarCode) -> bool {
        *self == ErrorCode::Registrar(*other)
    }
}

/// How a failure may be handled by the retry layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient: the same request may succeed later.
    Retryable,
    /// The vendor's quota was exceeded: slow down, then retry.
    Throttled,
    /// Retrying cannot help.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Permanent => "permanent",
        }
    }

    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

/// What the vendor said about one user of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorOutcome {
    /// Registered (or overwritten, for vendors that overwrite).
    Registered { vendor_user_id: Option<String> },
    /// The vendor reports that the user exists already.
    AlreadyExists { code: ErrorCode, message: String },
    /// The vendor rejected the user's data; never retried.
    Rejected { code: ErrorCode, message: String },
    /// The call failed for this user; `class` says whether it may be retried.
    Failed {
        class: ErrorClass,
        code: ErrorCode,
        message: String,
    },
}

impl VendorOutcome {
    pub fn failed(
        class: ErrorClass,
        code: impl Into<ErrorCode>,
        message: impl Into<String>,
    ) -> Self {
        VendorOutcome::Failed {
            class,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The class of a failure that may be retried, `None` for final outcomes.
    pub fn retry_class(&self) -> Option<ErrorClass> {
        match self {
            VendorOutcome::Failed { class, .. } if class.is_retryable() => Some(*class),
            _ => None,
        }
    }
}

/// The parsed answer to one vendor call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    /// The vendor's request id, for support tickets.
    pub vendor_request_id: Option<String>,
    /// The call-level vendor error code, if the whole call failed.
    pub error_code: Option<ErrorCode>,
    /// The class of the call-level error, if the whole call failed.
    pub error_class: Option<ErrorClass>,
    /// One outcome per user sent, in the order the users were given.
    pub outcomes: Vec<VendorOutcome>,
}

impl CallReport {
    /// The call-level error code as text, if the whole call failed.
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_ref().map(ErrorCode::as_str)
    }

    /// A report in which the whole call failed the same way for every user.
    pub fn call_failed(
        user_count: usize,
        vendor_request_id: Option<String>,
        class: ErrorClass,
        code: impl Into<ErrorCode>,
        message: &str,
    ) -> Self {
        let code = code.into();
        CallReport {
            vendor_request_id,
            outcomes: vec![VendorOutcome::failed(class, code.clone(), message); user_count],
            error_code: Some(code),
            error_class: Some(class),
        }
    }

    /// A report in which the vendor rejected the data of every user of the call.
    pub fn call_rejected(
        user_count: usize,
        vendor_request_id: Option<String>,
        code: impl Into<ErrorCode>,
        message: &str,
    ) -> Self {
        let code = code.into();
        CallReport {
            vendor_request_id,
            outcomes: vec![
                VendorOutcome::Rejected {
                    code: code.clone(),
                    message: message.to_owned(),
                };
                user_count
            ],
            error_code: Some(code),
            error_class: Some(ErrorClass::Permanent),
        }
    }
}
