//! Request parameters: one JSON object from the query string (GET) or a JSON body (POST,
//! PATCH, DELETE), read within a size bound and a time bound, unwrapped from
//! AshAuthentication's `{"<subject>": {...}}` envelope. [`decode_params`] is pure: the fuzz
//! target calls it.

use authd_strategy_api::Params;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header;
use hyper::{Method, Request};
use serde_json::Value;

use super::BoxError;
use super::error::Failure;

/// Reads the request's parameters: the query string for GET; for POST a JSON object (the
/// body), plus a `token` query parameter if the body has none. Parameters nested under the
/// subject name (`{"user": {...}}`) are taken out of their envelope.
pub async fn read_params<B>(req: Request<B>, subject: &str, max: usize) -> Result<Params, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let query = req.uri().query().map(str::to_string);
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(decode_query(query.as_deref()));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Failure::PayloadTooLarge(max));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid").to_string());
    // The body's read time is bounded by tower-http's `RequestBodyTimeoutLayer`, which makes
    // the body fail with a `TimeoutError`.
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(Failure::PayloadTooLarge(max)),
        Err(e) if is_timeout(e.as_ref()) => return Err(Failure::Timeout),
        Err(e) => return Err(Failure::Malformed(format!("could not read the body: {e}"))),
    };
    decode_params(subject, content_type.as_deref(), &body, query.as_deref()).map_err(|e| match e {
        DecodeError::UnsupportedMediaType => Failure::UnsupportedMediaType,
        DecodeError::Malformed(m) => Failure::Malformed(m),
    })
}

/// Reads a POST body given as a form (`application/x-www-form-urlencoded`, as RFC 7662 sends
/// it) or as one JSON object, within the same bounds as [`read_params`].
pub async fn read_form_or_json<B>(req: Request<B>, max: usize) -> Result<Params, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid").to_string());
    let is_form = content_type.as_deref().is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !is_form {
        return read_params(req, "", max).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Failure::PayloadTooLarge(max));
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(Failure::PayloadTooLarge(max)),
        Err(e) if is_timeout(e.as_ref()) => return Err(Failure::Timeout),
        Err(e) => return Err(Failure::Malformed(format!("could not read the body: {e}"))),
    };
    Ok(form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect())
}

/// Why a request's parameters could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A body that is not `application/json`.
    UnsupportedMediaType,
    /// A body that is not one JSON object.
    Malformed(String),
}

/// Query parameters as string values.
pub fn decode_query(query: Option<&str>) -> Params {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes a POST's parameters (pure: the fuzz target calls it): the body must be one JSON
/// object, flat or nested under the subject name (`{"user": {...}}`); a `token` query parameter
/// is added when the body has none.
///
/// # Errors
/// [`DecodeError`] for a body of another type or that is not one JSON object.
pub fn decode_params(
    subject: &str,
    content_type: Option<&str>,
    body: &[u8],
    query: Option<&str>,
) -> Result<Params, DecodeError> {
    let mut params = if body.is_empty() {
        Params::new()
    } else {
        let is_json = content_type.is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
        if !is_json {
            return Err(DecodeError::UnsupportedMediaType);
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(DecodeError::Malformed(
                    "the body must be a JSON object".into(),
                ));
            }
            Err(e) => {
                return Err(DecodeError::Malformed(format!(
                    "the body is not valid JSON: {e}"
                )));
            }
        }
    };
    if let Some(Value::Object(_)) = params.get(subject)
        && let Some(Value::Object(inner)) = params.remove(subject)
    {
        // AshAuthentication's form: {"user": {...}}; top-level keys (e.g. token_type) stay.
        for (k, v) in inner {
            params.insert(k, v);
        }
    }
    if !params.contains_key("token")
        && let Some(token) = decode_query(query).remove("token")
    {
        params.insert("token".into(), token);
    }
    Ok(params)
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}
