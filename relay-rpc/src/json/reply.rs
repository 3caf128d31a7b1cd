//! What a JSON call answers: [`JsonReply`], the Connect error codes ([`ConnectCode`]) and how a
//! service's own error picks one ([`HttpErrorCode`]).

use std::any::TypeId;
use std::fmt;

use bytes::Bytes;
use serde::Serialize;

use super::JSON_CONTENT_TYPE;

/// The answer: status, content type (None for an empty body), body.
///
/// ```
/// use relay_rpc::json::{ConnectCode, JsonReply};
///
/// let reply = JsonReply::error(ConnectCode::NotFound, "no such contract");
/// assert_eq!(reply.status, 404);
/// assert_eq!(&reply.body[..], br#"{"code":"not_found","message":"no such contract"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonReply {
    /// The HTTP status.
    pub status: u16,
    /// The body's content type; `None` when there is no body.
    pub content_type: Option<&'static str>,
    /// The body.
    pub body: Bytes,
}

impl JsonReply {
    /// A reply with `status` and a JSON `body`.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self { status, content_type: Some(JSON_CONTENT_TYPE), body: body.into() }
    }

    /// `200` with a method's result as JSON; `()` is written `{}`. A result that JSON cannot
    /// hold (a map with non-string keys, say) gives `500 internal`.
    ///
    /// ```
    /// use relay_rpc::json::JsonReply;
    ///
    /// assert_eq!(&JsonReply::value(&5).body[..], b"5");
    /// assert_eq!(&JsonReply::value(&()).body[..], b"{}");
    /// assert_eq!(&JsonReply::value(&None::<i32>).body[..], b"null");
    /// ```
    pub fn value<T: Serialize + 'static>(value: &T) -> Self {
        if TypeId::of::<T>() == TypeId::of::<()>() {
            return Self::json(200, &b"{}"[..]);
        }
        match serde_json::to_vec(value) {
            Ok(body) => Self::json(200, body),
            Err(error) => Self::error(ConnectCode::Internal, format!("cannot write the result as JSON: {error}")),
        }
    }

    /// `202 Accepted`, without a body: a one-way call was taken.
    pub fn accepted() -> Self {
        Self { status: 202, content_type: None, body: Bytes::new() }
    }

    /// An error: `code`'s status and `{"code":…,"message":…}`.
    pub fn error(code: ConnectCode, message: impl Into<String>) -> Self {
        Self::error_body(code, &ErrorBody { code: code.as_str(), message: message.into(), service_error: None })
    }

    /// The service's own error, from a method returning `Result<T, E>`: `code`'s status (`400
    /// failed_precondition` unless `E` implements [`HttpErrorCode`]), with `type_name` (`E` as
    /// written in the trait) as the message and `error` as JSON under `serviceError`.
    ///
    /// ```
    /// use relay_rpc::json::{ConnectCode, JsonReply};
    ///
    /// let reply = JsonReply::service_error(ConnectCode::FailedPrecondition, "MathError", &"DivisionByZero");
    /// assert_eq!(reply.status, 400);
    /// let expected = r#"{"code":"failed_precondition","message":"MathError","serviceError":"DivisionByZero"}"#;
    /// assert_eq!(&reply.body[..], expected.as_bytes());
    /// ```
    pub fn service_error<E: Serialize>(code: ConnectCode, type_name: &str, error: &E) -> Self {
        match serde_json::to_value(error) {
            Ok(value) => Self::error_body(
                code,
                &ErrorBody { code: code.as_str(), message: type_name.to_owned(), service_error: Some(value) },
            ),
            Err(error) => Self::error(
                ConnectCode::Internal,
                format!("cannot write the service's error `{type_name}` as JSON: {error}"),
            ),
        }
    }

    fn error_body(code: ConnectCode, body: &ErrorBody) -> Self {
        let body = serde_json::to_vec(body).expect("an error body is always valid JSON");
        Self::json(code.http_status(), body)
    }
}

/// The body of every error reply.
#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
    #[serde(rename = "serviceError", skip_serializing_if = "Option::is_none")]
    service_error: Option<serde_json::Value>,
}

/// The [Connect protocol's error codes](https://connectrpc.com/docs/protocol#error-codes),
/// each with the HTTP status Connect answers it with.
///
/// ```
/// use relay_rpc::json::ConnectCode;
///
/// assert_eq!(ConnectCode::DeadlineExceeded.as_str(), "deadline_exceeded");
/// assert_eq!(ConnectCode::DeadlineExceeded.http_status(), 504);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectCode {
    /// The caller cancelled the call (499).
    Canceled,
    /// An error with no better code (500).
    Unknown,
    /// The request is malformed: bad JSON, a missing or mistyped argument (400).
    InvalidArgument,
    /// The deadline passed before the call finished (504).
    DeadlineExceeded,
    /// No such thing: e.g. another contract's name in the path (404).
    NotFound,
    /// What the call would create exists already (409).
    AlreadyExists,
    /// The caller may not do this (403).
    PermissionDenied,
    /// Out of some resource, or rate-limited (429).
    ResourceExhausted,
    /// The system is not in a state the call needs: the service's own error (400).
    FailedPrecondition,
    /// The call was aborted, e.g. by a conflict (409).
    Aborted,
    /// An argument is out of range (400).
    OutOfRange,
    /// The method is not implemented or not supported (501).
    Unimplemented,
    /// An invariant broke: e.g. the method panicked (500).
    Internal,
    /// The service is unavailable for now; retrying may help (503).
    Unavailable,
    /// Data was lost or corrupted (500).
    DataLoss,
    /// The caller is not authenticated (401).
    Unauthenticated,
}

impl ConnectCode {
    /// The code as Connect writes it, e.g. `invalid_argument`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid_argument",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Aborted => "aborted",
            Self::OutOfRange => "out_of_range",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::DataLoss => "data_loss",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status Connect gives the code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument | Self::FailedPrecondition | Self::OutOfRange => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::AlreadyExists | Self::Aborted => 409,
            Self::ResourceExhausted => 429,
            Self::Canceled => 499,
            Self::Unknown | Self::Internal | Self::DataLoss => 500,
            Self::Unimplemented => 501,
            Self::Unavailable => 503,
            Self::DeadlineExceeded => 504,
        }
    }
}

impl fmt::Display for ConnectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Connect code a service's own error is answered with, when a method returning
/// `Result<T, E>` returns `Err`: implement it for `E` to answer other than `failed_precondition`.
/// The generated code picks the implementation up by itself, without any bound on `E`.
///
/// ```
/// use relay_rpc::json::{ConnectCode, HttpErrorCode};
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// pub enum AccountError { NoSuchAccount, Overdrawn }
///
/// impl HttpErrorCode for AccountError {
///     fn connect_code(&self) -> ConnectCode {
///         match self {
///             AccountError::NoSuchAccount => ConnectCode::NotFound,
///             AccountError::Overdrawn => ConnectCode::FailedPrecondition,
///         }
///     }
/// }
///
/// #[relay_rpc::relay_service]
/// pub trait Bank {
///     async fn withdraw(account: u64, amount: u64) -> Result<u64, AccountError>;
/// }
/// # struct B;
/// # impl Bank for B { async fn withdraw(&self, _: u64, _: u64) -> Result<u64, AccountError> { Err(AccountError::NoSuchAccount) } }
///
/// use relay_rpc::contract::Dispatch;
/// let reply = ServeBank::<B>::json_response(BankResponse::Withdraw(Err(AccountError::NoSuchAccount)));
/// assert_eq!(reply.status, 404);
/// ```
pub trait HttpErrorCode {
    /// The code for this error.
    fn connect_code(&self) -> ConnectCode;
}

/// How generated code finds a service error's code: `(&error).__relay_code()` picks
/// [`HttpErrorCode`] where `E` implements it (a method on `E` itself, found first), and this
/// trait's `failed_precondition` otherwise (a method on `&E`, found after one autoref).
#[doc(hidden)]
pub trait DefaultErrorCode {
    fn __relay_code(&self) -> ConnectCode;
}

impl<E: ?Sized> DefaultErrorCode for &E {
    fn __relay_code(&self) -> ConnectCode {
        ConnectCode::FailedPrecondition
    }
}

/// See [`DefaultErrorCode`].
#[doc(hidden)]
pub trait ImplementedErrorCode {
    fn __relay_code(&self) -> ConnectCode;
}

impl<E: HttpErrorCode + ?Sized> ImplementedErrorCode for E {
    fn __relay_code(&self) -> ConnectCode {
        self.connect_code()
    }
}
