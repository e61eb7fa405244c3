//! The request-parameter decoder must never panic and must only ever yield a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the content type; then a query string up to the first NUL; then the body.
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let content_type = match kind % 4 {
        0 => None,
        1 => Some("application/json"),
        2 => Some("Application/JSON; charset=utf-8"),
        _ => Some("text/plain"),
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (std::str::from_utf8(&rest[..i]).ok(), &rest[i + 1..]),
        None => (None, rest),
    };
    if let Ok(params) = authd::http::decode_params("user", content_type, body, query) {
        // Whatever was sent, what comes out serializes back.
        assert!(serde_json::to_string(&params).is_ok());
    }
    let _ = authd::http::decode_query(query);
});
