//! Senders of password-reset messages: `log` (development), `webhook` (an HTTP POST of JSON,
//! signed as the Standard Webhooks specification says) and `smtp` (an email through a relay).
//!
//! Strategies name a sender as data ([`SenderSpec`]); [`DaemonSenders::build`] turns it into a
//! live one. `webhook` and `smtp` only write the message into the durable [`Outbox`] and
//! return; the outbox worker calls [`DaemonSenders`]' [`Deliver`] implementation for each
//! attempt. Secrets (webhook key, SMTP credentials) are read when an attempt is made, never
//! stored in the outbox. A sender never logs a token, except the `log` sender, whose purpose
//! is to.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use authd_strategy_api::{
    ResetMessage, Sender, SenderSpec, Senders, SmtpSpec, SmtpTls, WebhookSpec, render_template,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;
use sha2::Sha256;

use crate::outbox::{Deliver, Failure, Job, NewJob, Outbox, now_ms};

/// The outbox `kind` of password-reset messages.
pub const PASSWORD_RESET: &str = "password_reset";

/// The longest a TCP connect to a webhook may take (the sender's `timeout` bounds the whole
/// attempt too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds senders; holds the HTTP client they share and the outbox they write to.
pub struct DaemonSenders {
    client: Client<HttpConnector, Full<Bytes>>,
    outbox: Outbox,
}

impl DaemonSenders {
    pub fn new(outbox: Outbox) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        DaemonSenders {
            client: Client::builder(TokioExecutor::new()).build(connector),
            outbox,
        }
    }
}

impl Senders for DaemonSenders {
    fn build(&self, spec: &SenderSpec) -> Arc<dyn Sender> {
        match spec {
            SenderSpec::Log {} => Arc::new(LogSender),
            SenderSpec::Webhook(_) | SenderSpec::Smtp(_) => Arc::new(OutboxSender {
                spec: spec.clone(),
                outbox: self.outbox.clone(),
            }),
        }
    }
}

/// Writes the reset token to the log at INFO. Development only: anyone who reads the log can
/// reset the password.
struct LogSender;

#[async_trait]
impl Sender for LogSender {
    async fn send_reset(&self, m: ResetMessage) -> Result<(), String> {
        tracing::info!(
            subject = %m.subject,
            strategy = %m.strategy,
            user = %m.user,
            token = %m.token,
            expires_at = m.expires_at,
            "password reset requested (log sender)"
        );
        Ok(())
    }
}

/// Queues the message in the outbox, addressed with the sender's spec; the outbox worker
/// delivers it.
struct OutboxSender {
    spec: SenderSpec,
    outbox: Outbox,
}

#[async_trait]
impl Sender for OutboxSender {
    async fn send_reset(&self, m: ResetMessage) -> Result<(), String> {
        let delivery = self.spec.delivery().unwrap_or_default();
        // A token is useless once expired: that is the latest deadline.
        let expires_ms = m.expires_at.saturating_mul(1000);
        let deadline_ms = match delivery.give_up_after() {
            Some(d) => expires_ms
                .min(now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            None => expires_ms,
        };
        let channel = serde_json::to_value(&self.spec)
            .map_err(|e| format!("SN0009 cannot record the sender: {e}"))?;
        let payload =
            serde_json::to_value(&m).map_err(|_| "SN0009 cannot record the message".to_string())?;
        self.outbox
            .enqueue(NewJob {
                kind: PASSWORD_RESET.into(),
                channel,
                payload,
                deadline_ms,
                retry_base: delivery.retry_base(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Deliver for DaemonSenders {
    async fn deliver(&self, job: &Job) -> Result<(), Failure> {
        let spec: SenderSpec = serde_json::from_value(job.channel.clone())
            .map_err(|e| Failure::Permanent(format!("SN0007 unreadable sender spec: {e}")))?;
        match (&spec, job.kind.as_str()) {
            (SenderSpec::Webhook(w), _) => self.webhook(w, job).await,
            (SenderSpec::Smtp(s), PASSWORD_RESET) => smtp_reset(s, job).await,
            (SenderSpec::Smtp(_), other) => Err(Failure::Permanent(format!(
                "SN0008 the smtp sender has no template for `{other}` messages"
            ))),
            (SenderSpec::Log {}, _) => Err(Failure::Permanent(
                "SN0008 the log sender does not deliver from the outbox".into(),
            )),
        }
    }
}

impl DaemonSenders {
    /// One attempt: POST the payload, signed if a secret is configured. 2xx is success.
    async fn webhook(&self, spec: &WebhookSpec, job: &Job) -> Result<(), Failure> {
        let key = webhook_key(spec).await?;
        let body = serde_json::to_vec(&job.payload)
            .map_err(|_| Failure::Permanent("SN0010 unreadable payload".into()))?;
        let id = job.message_id();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = Request::post(spec.url.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("authd/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = key {
            request = request.header("webhook-signature", sign(&key, &id, timestamp, &body)?);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Permanent(format!("SN0001 bad webhook request: {e}")))?;
        let timeout = spec.delivery().timeout();
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| Failure::Retry(format!("SN0002 webhook {} timed out", spec.url)))?
            .map_err(|e| Failure::Retry(format!("SN0003 webhook {} failed: {e}", spec.url)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Failure::Retry(format!(
                "SN0004 webhook {} answered {}",
                spec.url,
                response.status()
            )))
        }
    }
}

/// The webhook's signing key, read now from the environment or the file; `None` when the
/// webhook is unsigned.
async fn webhook_key(spec: &WebhookSpec) -> Result<Option<Vec<u8>>, Failure> {
    let (text, source) = match (&spec.secret_env, &spec.secret_file) {
        (Some(var), _) => (
            std::env::var(var).map_err(|_| {
                Failure::Retry(format!(
                    "SN0005 webhook secret: environment variable {var} is not set"
                ))
            })?,
            format!("environment variable {var}"),
        ),
        (None, Some(path)) => (
            tokio::fs::read_to_string(path).await.map_err(|e| {
                Failure::Retry(format!(
                    "SN0005 webhook secret: cannot read {}: {e}",
                    path.display()
                ))
            })?,
            format!("file {}", path.display()),
        ),
        (None, None) => return Ok(None),
    };
    decode_secret(text.trim())
        .map(Some)
        .map_err(|m| Failure::Retry(format!("SN0006 webhook secret in {source}: {m}")))
}

/// The key of a Standard Webhooks secret: the base64-decoded part after `whsec_`.
///
/// # Errors
/// A message (without the secret) when the text is not of that form or the key is shorter
/// than 16 bytes.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let encoded = text
        .strip_prefix("whsec_")
        .ok_or("must be of the form whsec_<base64>")?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|e| format!("the part after whsec_ is not base64 ({e})"))?;
    if key.len() < 16 {
        return Err(format!(
            "the key is {} bytes; use at least 16 random bytes (24 to 64 recommended)",
            key.len()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` value: `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
///
/// # Errors
/// Never in practice (HMAC takes keys of any length).
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> Result<String, Failure> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|e| Failure::Permanent(format!("SN0006 webhook key: {e}")))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A user attribute as text in a template.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The subject and body of the reset email, with `{{token}}`, `{{url}}`, `{{expires_at}}`
/// (RFC 3339, UTC), `{{strategy}}` and the user's attributes (`{{id}}`, `{{name}}`...)
/// filled in. Line breaks in the subject become spaces.
pub fn render_reset_email(spec: &SmtpSpec, m: &ResetMessage) -> (String, String) {
    let expires_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(m.expires_at))
            .to_string();
    // A JWT is base64url and dots: safe in a URL as it is.
    let url = spec
        .reset_url
        .as_deref()
        .map(|t| render_template(t, |name| (name == "token").then(|| m.token.clone())));
    let value = |name: &str| match name {
        "token" => Some(m.token.clone()),
        "url" => url.clone(),
        "expires_at" => Some(expires_at.clone()),
        "strategy" => Some(m.strategy.clone()),
        attribute => m.user.get(attribute).map(plain),
    };
    let subject = render_template(spec.subject_template(), value).replace(['\r', '\n'], " ");
    let body = render_template(spec.body_template(), value);
    (subject, body)
}

/// One attempt of a reset email.
async fn smtp_reset(spec: &SmtpSpec, job: &Job) -> Result<(), Failure> {
    let message: ResetMessage = serde_json::from_value(job.payload.clone()).map_err(|_| {
        Failure::Permanent("SN0010 the payload is not a password-reset message".into())
    })?;
    let to_field = spec.to_field();
    let to: Mailbox = message
        .user
        .get(to_field)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Failure::Permanent(format!("SN0011 the user has no `{to_field}` to send to"))
        })?
        .parse()
        .map_err(|e| {
            Failure::Permanent(format!(
                "SN0012 the user's `{to_field}` is not an address: {e}"
            ))
        })?;
    let from: Mailbox = spec
        .from
        .parse()
        .map_err(|e| Failure::Permanent(format!("SN0013 smtp from `{}`: {e}", spec.from)))?;
    let (subject, body) = render_reset_email(spec, &message);
    // The same Message-ID on every attempt lets mail systems drop duplicates.
    let message_id = format!("<{}@{}>", job.message_id(), from.email.domain());
    let email = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(message_id))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Failure::Permanent(format!("SN0014 cannot build the email: {e}")))?;
    let timeout = spec.delivery().timeout();
    let transport = smtp_transport(spec, timeout)?;
    let relay = format!("{}:{}", spec.host, spec.port());
    match tokio::time::timeout(timeout, transport.send(email)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failure::Retry(format!("SN0015 smtp {relay}: {e}"))),
        Err(_) => Err(Failure::Retry(format!("SN0016 smtp {relay} timed out"))),
    }
}

/// A transport for one attempt (no pool: resets are rare), credentials read now.
fn smtp_transport(
    spec: &SmtpSpec,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, Failure> {
    let tls = |wrap: fn(TlsParameters) -> Tls| {
        TlsParameters::new(spec.host.clone())
            .map(wrap)
            .map_err(|e| Failure::Retry(format!("SN0017 smtp TLS setup: {e}")))
    };
    let tls = match spec.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => tls(Tls::Required)?,
        SmtpTls::Tls => tls(Tls::Wrapper)?,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(spec.host.as_str())
        .port(spec.port())
        .timeout(Some(timeout))
        .tls(tls);
    if let (Some(user_var), Some(password_var)) = (&spec.username_env, &spec.password_env) {
        let read = |var: &str| {
            std::env::var(var).map_err(|_| {
                Failure::Retry(format!(
                    "SN0018 smtp credentials: environment variable {var} is not set"
                ))
            })
        };
        builder = builder.credentials(Credentials::new(read(user_var)?, read(password_var)?));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_else(|e| panic!("{e}"));
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_16_bytes_or_more() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=").is_err(), "5 bytes");
        assert_eq!(
            decode_secret("whsec_AAAAAAAAAAAAAAAAAAAAAA==").map(|k| k.len()),
            Ok(16)
        );
    }

    #[tokio::test]
    async fn a_missing_secret_fails_the_attempt_clearly_and_is_retried() {
        let spec = WebhookSpec {
            url: "http://127.0.0.1:9/".into(),
            secret_env: Some("AUTHD_TEST_SECRET_THAT_IS_NEVER_SET".into()),
            secret_file: None,
            retry_base: None,
            give_up_after: None,
            timeout: None,
        };
        let Err(Failure::Retry(message)) = webhook_key(&spec).await else {
            panic!("a missing secret must fail the attempt")
        };
        assert!(
            message.contains("AUTHD_TEST_SECRET_THAT_IS_NEVER_SET is not set"),
            "{message}"
        );
        let spec = WebhookSpec {
            secret_env: None,
            secret_file: Some("/nonexistent/authd/secret".into()),
            ..spec
        };
        assert!(matches!(webhook_key(&spec).await, Err(Failure::Retry(_))));
    }

    #[test]
    fn reset_emails_fill_in_token_url_expiry_and_attributes() {
        let spec: SenderSpec = toml::from_str(
            "type = \"smtp\"\nhost = \"h\"\nfrom = \"a@b\"\n\
             subject = \"Hello {{name}}\\r\\nBcc: x@y\"\n\
             reset_url = \"https://app.example/reset?token={{token}}\"",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let SenderSpec::Smtp(spec) = spec else {
            panic!("not smtp")
        };
        let message = ResetMessage {
            subject: "user".into(),
            strategy: "password".into(),
            user: serde_json::json!({"id": "u1", "email": "ada@example.com", "name": "Ada"}),
            token: "a.b.c".into(),
            expires_at: 1_700_000_000,
        };
        let (subject, body) = render_reset_email(&spec, &message);
        assert_eq!(subject, "Hello Ada  Bcc: x@y");
        assert!(
            body.contains("https://app.example/reset?token=a.b.c"),
            "{body}"
        );
        assert!(body.contains("2023-11-14T22:13:20Z"), "{body}");
        let without_url = SmtpSpec {
            reset_url: None,
            ..spec
        };
        let (subject, body) = render_reset_email(&without_url, &message);
        assert_eq!(subject, "Hello Ada  Bcc: x@y");
        assert!(body.contains("\n\na.b.c\n\n"), "{body}");
    }
}
