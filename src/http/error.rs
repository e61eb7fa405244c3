//! The one table of errors: every way a request can end other than success, each with its
//! status, stable code, message and headers. Clients see the code and a generic message; the
//! cause of a `500` or `503` goes to the log only.

use std::borrow::Cow;

use authd_strategy_api::{Error, FieldErrors, Rejection, StoreError, TokenError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

/// A response authd builds.
pub type Reply = Response<Full<Bytes>>;

/// How long a client should wait after a `503 unavailable`.
const UNAVAILABLE_RETRY_AFTER: u32 = 2;

/// Everything a request can end in other than success.
#[derive(Debug)]
pub enum Failure {
    NotFound,
    MethodNotAllowed(String),
    UnsupportedMediaType,
    PayloadTooLarge(usize),
    Timeout,
    Malformed(String),
    /// A transfer or content coding authd does not decode.
    NotImplemented(&'static str),
    /// No or a wrong admin token.
    Unauthorized,
    /// No or wrong client credentials (HTTP Basic) for introspection.
    ClientUnauthorized,
    Rejected(Rejection),
    /// The store cannot serve now; the cause is for the log.
    Unavailable(String),
    /// The machinery failed; the cause is for the log.
    Internal(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(StoreError::Unavailable(cause)) => Failure::Unavailable(cause),
            other => Failure::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::from(Error::Store(e))
    }
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => Failure::Rejected(Rejection::InvalidToken),
            TokenError::Internal(e) => e.into(),
        }
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

/// What a failure is on the wire (the pages show the same status and messages).
pub(super) struct Parts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub fields: Option<FieldErrors>,
    pub header: Option<(HeaderName, HeaderValue)>,
}

impl Failure {
    pub(super) fn parts(self) -> Parts {
        let plain = |status, code, message: &'static str| Parts {
            status,
            code,
            message: Cow::Borrowed(message),
            fields: None,
            header: None,
        };
        let retry = |secs: u64| Some((header::RETRY_AFTER, HeaderValue::from(secs)));
        match self {
            Failure::NotFound => plain(StatusCode::NOT_FOUND, "not_found", "No such route"),
            Failure::MethodNotAllowed(allow) => Parts {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: Cow::Owned(format!("Allowed methods: {allow}")),
                fields: None,
                header: HeaderValue::from_str(&allow)
                    .ok()
                    .map(|v| (header::ALLOW, v)),
            },
            Failure::UnsupportedMediaType => plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as application/json",
            ),
            Failure::PayloadTooLarge(max) => Parts {
                message: Cow::Owned(format!("The body is larger than {max} bytes")),
                ..plain(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "")
            },
            Failure::Timeout => plain(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The body was not received in time",
            ),
            Failure::Malformed(message) => Parts {
                message: Cow::Owned(message),
                ..plain(StatusCode::BAD_REQUEST, "malformed", "")
            },
            Failure::NotImplemented(what) => Parts {
                message: Cow::Owned(format!("{what} is not supported")),
                ..plain(StatusCode::NOT_IMPLEMENTED, "not_implemented", "")
            },
            Failure::Unauthorized => plain(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "A valid admin token is required",
            ),
            Failure::ClientUnauthorized => Parts {
                header: Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"authd introspection\""),
                )),
                ..plain(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Valid client credentials (HTTP Basic) are required",
                )
            },
            Failure::Rejected(Rejection::AuthenticationFailed) => plain(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                "Authentication failed",
            ),
            Failure::Rejected(Rejection::InvalidToken) => plain(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The token is invalid or has expired",
            ),
            Failure::Rejected(Rejection::Invalid(fields)) => Parts {
                fields: Some(fields),
                ..plain(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "Some fields are invalid",
                )
            },
            Failure::Rejected(Rejection::RateLimited { retry_after_secs }) => Parts {
                header: retry(retry_after_secs),
                ..plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many attempts; retry later",
                )
            },
            Failure::Rejected(Rejection::Busy { retry_after_secs }) => Parts {
                header: retry(u64::from(retry_after_secs)),
                ..plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "Too many requests are being processed; retry shortly",
                )
            },
            Failure::Rejected(Rejection::Unconfirmed) => plain(
                StatusCode::FORBIDDEN,
                "unconfirmed",
                "Confirm your address before signing in",
            ),
            Failure::Rejected(Rejection::NotFound) => {
                plain(StatusCode::NOT_FOUND, "not_found", "Not found")
            }
            Failure::Unavailable(cause) => {
                tracing::warn!(%cause, "HT0503 store unavailable");
                Parts {
                    header: retry(u64::from(UNAVAILABLE_RETRY_AFTER)),
                    ..plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "The service is temporarily unavailable; retry shortly",
                    )
                }
            }
            Failure::Internal(cause) => {
                tracing::error!(%cause, "HT0500 internal error");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                )
            }
        }
    }

    /// The response: `{"error": {"code", "message", "fields"?}}` with its status and headers.
    pub fn response(self) -> Reply {
        let parts = self.parts();
        let mut error = json!({ "code": parts.code, "message": parts.message });
        if let Some(fields) = &parts.fields {
            error["fields"] = json!(fields);
        }
        let mut reply = json_response(parts.status, &json!({ "error": error }));
        if let Some((name, value)) = parts.header {
            reply.headers_mut().insert(name, value);
        }
        reply
    }
}

/// Checks `method` against what a route allows (`HEAD` wherever `GET` is).
pub(super) fn allow(allowed: &[&str], method: &Method) -> Result<(), Failure> {
    let ok =
        allowed.contains(&method.as_str()) || (method == Method::HEAD && allowed.contains(&"GET"));
    if ok {
        Ok(())
    } else {
        let mut list: Vec<&str> = Vec::with_capacity(allowed.len() + 1);
        for m in allowed {
            list.push(m);
            if *m == "GET" {
                list.push("HEAD");
            }
        }
        Err(Failure::MethodNotAllowed(list.join(", ")))
    }
}

/// A JSON response (`Cache-Control: no-store` is added by a layer for every answer).
pub fn json_response(status: StatusCode, body: &Value) -> Reply {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A response of JSON already serialized.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `204 No Content`.
pub fn no_content() -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod openapi_codes {
    use http_body_util::BodyExt;

    use super::*;

    /// Every failure's status and code is one the OpenAPI document lists for that status.
    #[tokio::test]
    async fn every_failure_is_in_the_documents_error_table() {
        let failures = vec![
            Failure::NotFound,
            Failure::MethodNotAllowed("GET".into()),
            Failure::UnsupportedMediaType,
            Failure::PayloadTooLarge(1),
            Failure::Timeout,
            Failure::Malformed("x".into()),
            Failure::NotImplemented("x"),
            Failure::Rejected(Rejection::AuthenticationFailed),
            Failure::Rejected(Rejection::InvalidToken),
            Failure::ClientUnauthorized,
            Failure::Rejected(Rejection::Invalid(FieldErrors::one("a", "b"))),
            Failure::Rejected(Rejection::Busy {
                retry_after_secs: 1,
            }),
            Failure::Rejected(Rejection::RateLimited {
                retry_after_secs: 1,
            }),
            Failure::Rejected(Rejection::Unconfirmed),
            Failure::Rejected(Rejection::NotFound),
            Failure::Unavailable("x".into()),
            Failure::Internal("x".into()),
        ];
        for failure in failures {
            let reply = failure.response();
            let status = reply.status().as_u16();
            let body = reply.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let code = body["error"]["code"].as_str().unwrap();
            let listed = crate::openapi::ERROR_CODES
                .iter()
                .find(|(s, _)| *s == status)
                .is_some_and(|(_, codes)| codes.contains(&code));
            assert!(listed, "{status} {code} is not in openapi::ERROR_CODES");
        }
    }
}
