//! Delivery of reset tokens through the durable outbox (issue 6): a webhook that fails before
//! it succeeds gets exactly one successful, correctly signed delivery; a job waits in redb
//! while the receiver is down across a daemon restart; a slow receiver does not slow the 202;
//! an email reaches a real SMTP server on 127.0.0.1.
//!
//! Receivers are real servers on 127.0.0.1; retries are fast through the sender's own
//! `retry_base` setting. Every wait is bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::mail::{decode_body, mail_header, smtp};
use crate::util::{self, ARGON2, TestServer, token_of};

/// How long a test waits for a delivery.
const WAIT: Duration = Duration::from_secs(10);

/// One request a [`Hook`] received, and how it answered.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    status: StatusCode,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e})"))
    }
}

/// A webhook endpoint: answers 500 to the first `fail_first` requests and 200 after, each
/// after `delay`; records every request.
pub(crate) struct Hook {
    pub(crate) url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    successes: mpsc::UnboundedReceiver<Hit>,
}

impl Hook {
    pub(crate) async fn start(fail_first: usize, delay: Duration) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        Hook::serve(listener, fail_first, delay)
    }

    fn serve(listener: tokio::net::TcpListener, fail_first: usize, delay: Duration) -> Hook {
        use hyper::server::conn::http1;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let hits = Arc::new(Mutex::new(Vec::<Hit>::new()));
        let (tx, successes) = mpsc::unbounded_channel();
        let recorded = Arc::clone(&hits);
        // Lives as long as the test's runtime.
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hits = Arc::clone(&recorded);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let hits = Arc::clone(&hits);
                        let tx = tx.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            tokio::time::sleep(delay).await;
                            let hit = {
                                let mut hits = hits.lock().unwrap_or_else(|e| panic!("{e}"));
                                let status = if hits.len() < fail_first {
                                    StatusCode::INTERNAL_SERVER_ERROR
                                } else {
                                    StatusCode::OK
                                };
                                let hit = Hit {
                                    headers,
                                    body,
                                    status,
                                };
                                hits.push(hit.clone());
                                hit
                            };
                            let status = hit.status;
                            if status.is_success() {
                                let _ = tx.send(hit);
                            }
                            let mut response = Response::new(Full::new(Bytes::from_static(b"")));
                            *response.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Hook {
            url: format!("http://{addr}/password-reset"),
            hits,
            successes,
        }
    }

    /// The next request answered 2xx, waiting up to [`WAIT`].
    pub(crate) async fn next_success(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.successes.recv())
            .await
            .unwrap_or_else(|_| panic!("no successful delivery within {WAIT:?}: {:?}", self.hits()))
            .unwrap_or_else(|| panic!("hook closed"))
    }

    /// Asserts that no request is answered 2xx for `ms` milliseconds.
    pub(crate) async fn no_success_for(&mut self, ms: u64) {
        let got = tokio::time::timeout(Duration::from_millis(ms), self.successes.recv()).await;
        assert!(got.is_err(), "unexpected second delivery: {got:?}");
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap_or_else(|e| panic!("{e}")).clone()
    }
}

/// The resettable password strategy with `sender` (an inline TOML table).
fn resettable(sender: &str) -> String {
    util::user_resource(
        ARGON2,
        &format!("[resources.user.strategies.password.resettable]\nsender = {sender}"),
    )
}

async fn reset_request(s: &TestServer, email: &str) {
    let (status, body) = s
        .post("/auth/user/password/reset_request", json!({"email": email}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Uses `token` to set a new password; asserts it works.
async fn reset_with(s: &TestServer, token: &str) {
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": token, "password": "a new password", "password_confirmation": "a new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        s.sign_in("ada@example.com", "a new password").await.0,
        StatusCode::OK
    );
}

async fn wait_outbox_depth(s: &TestServer, depth: u64) -> Value {
    s.wait_health(&format!("outbox depth {depth}"), |h| {
        h["outbox"]["depth"] == depth
    })
    .await
}

/// The Standard Webhooks check, written out independently of the daemon's code.
pub(crate) fn verify_signature(key: &[u8], hit: &Hit) -> bool {
    let id = hit.header("webhook-id");
    let timestamp = hit.header("webhook-timestamp");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|e| panic!("{e}"));
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&hit.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    hit.header("webhook-signature")
        .split(' ')
        .any(|candidate| candidate == expected)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_one_signed_delivery_succeeds() {
    let mut hook = Hook::start(2, Duration::ZERO).await;
    let key = b"authd-delivery-test-key-32-bytes";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("whsec_{}\n", STANDARD.encode(key)))
        .unwrap_or_else(|e| panic!("{e}"));
    let s = TestServer::start(&resettable(&format!(
        "{{ type = \"webhook\", url = \"{}\", secret_file = {:?}, retry_base = \"50ms\" }}",
        hook.url,
        secret_file.display().to_string()
    )))
    .await;
    s.register("ada@example.com", "correct horse").await;
    reset_request(&s, "ada@example.com").await;

    let delivered = hook.next_success().await;
    hook.no_success_for(500).await;
    let hits = hook.hits();
    let statuses: Vec<u16> = hits.iter().map(|h| h.status.as_u16()).collect();
    assert_eq!(
        statuses,
        vec![500, 500, 200],
        "two failures, then one success"
    );

    let id = delivered.header("webhook-id").to_string();
    assert!(id.starts_with("msg_"), "{id}");
    for hit in &hits {
        assert_eq!(hit.header("webhook-id"), id, "the same id on every retry");
        assert!(
            verify_signature(key, hit),
            "bad signature: {:?}",
            hit.headers
        );
        let timestamp: u64 = hit
            .header("webhook-timestamp")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(now_secs().abs_diff(timestamp) < 60, "{timestamp}");
        assert_eq!(hit.header("content-type"), "application/json");
    }
    assert!(
        !verify_signature(b"another key, another signature!!", &delivered),
        "the check must be able to fail"
    );

    let message = delivered.json();
    assert_eq!(message["subject"], "user");
    assert_eq!(message["strategy"], "password");
    assert_eq!(message["user"]["email"], "ada@example.com");
    assert!(
        message["user"].get("hashed_password").is_none(),
        "{message}"
    );
    let token = message["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(message["expires_at"], util::claims_of(&token)["exp"]);

    let health = wait_outbox_depth(&s, 0).await;
    assert_eq!(health["outbox"]["oldest_age_secs"], Value::Null, "{health}");
    reset_with(&s, &token).await;
}

#[tokio::test]
async fn a_message_waits_in_the_outbox_while_the_receiver_is_down_across_a_restart() {
    // A port with nothing listening: connections are refused until the hook starts on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let body = resettable(&format!(
        "{{ type = \"webhook\", url = \"http://127.0.0.1:{port}/password-reset\", retry_base = \"50ms\" }}"
    ));
    let mut s = TestServer::start(&body).await;
    s.register("ada@example.com", "correct horse").await;
    reset_request(&s, "ada@example.com").await;

    let health = wait_outbox_depth(&s, 1).await;
    assert!(health["outbox"]["oldest_age_secs"].is_u64(), "{health}");
    // Let a few attempts fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.status().await["outbox"]["depth"], 1);
    s.stop().await;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind {port}: {e}"));
    let mut hook = Hook::serve(listener, 0, Duration::ZERO);
    assert!(hook.hits().is_empty());
    s.boot(&body, "").await;

    let delivered = hook.next_success().await;
    let token = delivered.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        hook.hits()[0].headers.get("webhook-signature").is_none(),
        "unsigned"
    );
    wait_outbox_depth(&s, 0).await;
    hook.no_success_for(300).await;
    reset_with(&s, &token).await;
}

#[tokio::test]
async fn a_message_is_given_up_at_its_deadline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let s = TestServer::start(&resettable(&format!(
        "{{ type = \"webhook\", url = \"http://127.0.0.1:{port}/password-reset\", \
           retry_base = \"50ms\", give_up_after = \"400ms\" }}"
    )))
    .await;
    s.register("ada@example.com", "correct horse").await;
    reset_request(&s, "ada@example.com").await;
    wait_outbox_depth(&s, 1).await;
    wait_outbox_depth(&s, 0).await;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind {port}: {e}"));
    let mut hook = Hook::serve(listener, 0, Duration::ZERO);
    hook.no_success_for(500).await;
    assert!(hook.hits().is_empty());
}

#[tokio::test]
async fn a_slow_receiver_does_not_slow_the_reset_request() {
    let mut hook = Hook::start(0, Duration::from_secs(2)).await;
    let s = TestServer::start(&resettable(&format!(
        "{{ type = \"webhook\", url = \"{}\" }}",
        hook.url
    )))
    .await;
    s.register("ada@example.com", "correct horse").await;

    // The second request comes while the first delivery is still waiting for its answer.
    for _ in 0..2 {
        let started = Instant::now();
        reset_request(&s, "ada@example.com").await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "reset_request took {took:?} with a receiver that answers in 2 s"
        );
    }
    let first = hook.next_success().await;
    let second = hook.next_success().await;
    assert_ne!(first.header("webhook-id"), second.header("webhook-id"));
}

#[tokio::test]
async fn a_reset_email_reaches_a_real_smtp_server() {
    let (port, mut inbox) = smtp::start();
    let s = TestServer::start(&resettable(&format!(
        "{{ type = \"smtp\", host = \"127.0.0.1\", port = {port}, tls = \"none\", \
           from = \"authd@example.com\", subject = \"Password reset for {{{{name}}}}\", \
           reset_url = \"https://app.example/reset?token={{{{token}}}}\", retry_base = \"50ms\" }}"
    )))
    .await;
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse",
                   "password_confirmation": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let _ = token_of(&body);
    // Nothing is sent for an unknown address.
    reset_request(&s, "nobody@example.com").await;
    reset_request(&s, "ada@example.com").await;

    let mail = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("no email within {WAIT:?}"))
        .unwrap_or_else(|| panic!("SMTP server gone"));
    assert!(mail.from.contains("authd@example.com"), "{mail:?}");
    assert_eq!(mail.to.len(), 1, "{mail:?}");
    assert!(mail.to[0].contains("ada@example.com"), "{mail:?}");

    let (head, body) = mail
        .data
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header/body split: {}", mail.data));
    assert_eq!(
        mail_header(head, "Subject"),
        Some("Password reset for Ada"),
        "{head}"
    );
    assert_eq!(mail_header(head, "To"), Some("ada@example.com"), "{head}");
    let message_id = mail_header(head, "Message-ID").unwrap_or_default();
    assert!(
        message_id.starts_with("<msg_") && message_id.ends_with("@example.com>"),
        "{head}"
    );
    let text = decode_body(mail_header(head, "Content-Transfer-Encoding"), body);
    let link = "https://app.example/reset?token=";
    let token: String = text
        .split(link)
        .nth(1)
        .unwrap_or_else(|| panic!("no reset link in:\n{text}"))
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    assert_eq!(util::claims_of(&token)["purpose"], "password_reset");
    assert!(text.contains("expires at 20"), "{text}");

    wait_outbox_depth(&s, 0).await;
    let nothing_else = tokio::time::timeout(Duration::from_millis(300), inbox.recv()).await;
    assert!(nothing_else.is_err(), "{nothing_else:?}");
    reset_with(&s, &token).await;
}
