//! Every error code of the HTTP API, and that bad input never gets a 500.

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::util::{self, ARGON2, TestServer, error_code};

const REGISTER: &str = "/auth/user/password/register";

#[tokio::test]
async fn validation_errors_name_each_field() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let (status, body) = s
        .post(
            REGISTER,
            json!({"name": 42, "age": "old", "password": "short", "password_confirmation": "shorT"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid");
    let fields = &body["error"]["fields"];
    assert_eq!(fields["email"][0], "is required", "{body}");
    assert_eq!(fields["name"][0], "must be a string", "{body}");
    assert_eq!(fields["age"][0], "must be an integer", "{body}");
    assert!(
        fields["password"][0]
            .as_str()
            .unwrap_or("")
            .contains("too short"),
        "{body}"
    );
    assert_eq!(
        fields["password_confirmation"][0], "does not match password",
        "{body}"
    );

    let (status, body) = s
        .post(
            REGISTER,
            json!({"email": "a@b.c", "name": "x".repeat(21), "password": "long enough", "password_confirmation": "long enough"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["fields"]["name"][0]
            .as_str()
            .unwrap_or("")
            .contains("too long"),
        "{body}"
    );

    let (status, body) = s
        .post("/auth/user/password/sign_in", json!({"email": 7}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["fields"]["email"][0], "must be a string");
    assert_eq!(body["error"]["fields"]["password"][0], "is required");
}

#[tokio::test]
async fn malformed_bodies_wrong_types_and_sizes() {
    let s = TestServer::start_with(&util::user_resource(ARGON2, ""), "max_body_bytes = 1024").await;
    let json_ct = [("content-type", "application/json")];

    let (status, _, body) = s.raw(Method::POST, REGISTER, &json_ct, "{not json").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "malformed")
    );
    let (status, _, body) = s.raw(Method::POST, REGISTER, &json_ct, "[1, 2]").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "malformed")
    );
    let (status, _, body) = s
        .raw(Method::POST, REGISTER, &json_ct, vec![b'{', 0xff, b'}'])
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "malformed")
    );
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let (status, _, _) = s.raw(Method::POST, REGISTER, &json_ct, deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, body) = s
        .raw(
            Method::POST,
            REGISTER,
            &[("content-type", "text/plain")],
            "email=a",
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    let big = json!({"email": "x".repeat(2000)}).to_string();
    let (status, _, body) = s.raw(Method::POST, REGISTER, &json_ct, big).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    // Huge numbers and null bytes are field errors.
    let (status, body) = s
        .post(
            REGISTER,
            json!({"email": "a\u{0}@b.c", "age": 1e300, "password": "long enough", "password_confirmation": "long enough"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["email"].is_array(), "{body}");
    assert!(body["error"]["fields"]["age"].is_array(), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let s = TestServer::start(&util::user_resource(ARGON2, "registration_enabled = false")).await;
    for path in [
        "/",
        "/auth",
        "/auth/admin/password/sign_in",
        "/auth/user/magic/sign_in",
        "/auth/user/password/unknown",
        "/auth/user/password/register", // disabled
        "/auth/user/password/reset",    // not resettable
        "/auth/nobody/me",
        "/healthz/",
    ] {
        let (status, _, body) = s.raw(Method::POST, path, &[], "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let (status, headers, body) = s
        .raw(Method::GET, "/auth/user/password/sign_in", &[], "")
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    assert_eq!(
        headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let (status, headers, _) = s
        .raw(
            Method::DELETE,
            "/auth/user/password/sign_in_with_token",
            &[],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, POST")
    );
    let (status, headers, _) = s.raw(Method::POST, "/auth/user/me", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, PATCH, DELETE")
    );

    let body = s.health().await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["config"]["generation"], 1);
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    // One worker, one queue slot, and a hash slow enough (bcrypt cost 10) to back up.
    let s = TestServer::start_with(
        &util::user_resource(r#"{ algorithm = "bcrypt", cost = 10 }"#, ""),
        "hash_workers = 1\nhash_queue = 1",
    )
    .await;
    let before = s.status().await["hash_pool"]["completed"].as_u64().unwrap();
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.raw(
                Method::POST,
                "/auth/user/password/sign_in",
                &[("content-type", "application/json")],
                json!({"email": format!("u{i}@x"), "password": "whatever1"}).to_string(),
            )
            .await
        }));
    }
    let mut busy = 0;
    let mut failed = 0;
    for t in tasks {
        let (status, headers, body) = t.await.unwrap_or_else(|e| panic!("{e}"));
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(error_code(&body), "busy");
                assert_eq!(
                    headers.get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("1")
                );
            }
            StatusCode::UNAUTHORIZED => failed += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(busy > 0, "nothing was refused: {failed} hashed");
    assert_eq!(busy + failed, 12);
    // Every answer that was not refused cost exactly one verification; refusals cost none.
    let hashed = s.status().await["hash_pool"]["completed"].as_u64().unwrap() - before;
    assert_eq!(
        hashed, failed,
        "{busy} refused, {failed} verified, {hashed} hashes"
    );
}

/// Sends `head` and part of a body on a raw connection; returns what the server answered.
async fn raw_exchange(base: &str, request: Vec<u8>, then_wait: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(&request).unwrap();
        std::thread::sleep(then_wait);
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_body_not_received_in_time_is_a_408() {
    let s =
        TestServer::start_with(&util::user_resource(ARGON2, ""), "body_timeout = \"300ms\"").await;
    let request = b"POST /auth/user/password/sign_in HTTP/1.1\r\nhost: x\r\n\
        content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"email\":"
        .to_vec();
    let answer = raw_exchange(&s.base, request, std::time::Duration::from_millis(50)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_a_413() {
    let s = TestServer::start_with(&util::user_resource(ARGON2, ""), "max_body_bytes = 1024").await;
    // Chunked, no Content-Length: the limit is found while reading.
    let mut request = b"POST /auth/user/password/sign_in HTTP/1.1\r\nhost: x\r\n\
        content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..4 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b' '; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&s.base, request, std::time::Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
}

#[tokio::test]
async fn an_unreadable_stored_record_is_a_500_with_the_envelope_and_nothing_leaks() {
    let mut s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    let id: uuid::Uuid = util::claims_of(&token)["sub"]
        .as_str()
        .unwrap()
        .trim_start_matches("user?id=")
        .parse()
        .unwrap();
    s.stop().await;
    authd_store_redb::testing::put_raw_user(&s.db, "user", id, b"{not json").unwrap();
    s.boot(&util::user_resource(ARGON2, ""), "").await;
    let (status, body) = s.get("/auth/user/me", Some(&token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&body), "internal");
    assert_eq!(
        body["error"]["message"], "Internal error",
        "the cause is for the log only"
    );
    // The daemon goes on serving.
    assert_eq!(s.health().await["status"], "ok");
}
