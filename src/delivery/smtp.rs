//! One email attempt: the message rendered into the sender's templates (or the kind's own),
//! sent through the relay with lettre. Credentials are read at each attempt.

use std::time::{Duration, UNIX_EPOCH};

use authd_strategy_api::{Message, SmtpSpec, SmtpTls, render_template};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use super::Failure;

/// A user attribute or a message variable as text in a template.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The subject and body of the email, with `{{token}}`, `{{url}}` (the kind's link template
/// with the token in it), `{{expires_at}}` (RFC 3339, UTC), `{{strategy}}`, the message's own
/// variables and the user's attributes (`{{id}}`, `{{name}}`...) filled in. Line breaks in the
/// subject become spaces.
pub fn render_email(spec: &SmtpSpec, m: &Message) -> (String, String) {
    let expires_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(m.expires_at))
            .to_string();
    let token = m.token.clone().unwrap_or_default();
    // A JWT is base64url and dots: safe in a URL as it is.
    let url = spec
        .url_template(&m.kind)
        .map(|t| render_template(t, |name| (name == "token").then(|| token.clone())));
    let value = |name: &str| match name {
        "token" => Some(token.clone()),
        "url" => url.clone(),
        "expires_at" => Some(expires_at.clone()),
        "strategy" => Some(m.strategy.clone()),
        other => m.data.get(other).or_else(|| m.user.get(other)).map(plain),
    };
    let subject = render_template(spec.subject_template(m), value).replace(['\r', '\n'], " ");
    let body = render_template(spec.body_template(m), value);
    (subject, body)
}

/// One attempt of an email; `message_id` is the job's, the same on every attempt.
pub(super) async fn attempt(
    spec: &SmtpSpec,
    message_id: &str,
    message: &Message,
) -> Result<(), Failure> {
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
        .map_err(|e| Failure::Permanent(format!("SN0013 smtp from: {e}")))?;
    let (subject, body) = render_email(spec, message);
    // The same Message-ID on every attempt lets mail systems drop duplicates.
    let message_id = format!("<{message_id}@{}>", from.email.domain());
    let email = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(message_id))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Failure::Permanent(format!("SN0014 cannot build the email: {e}")))?;
    let timeout = authd_strategy_api::SenderSpec::Smtp(spec.clone())
        .delivery()
        .unwrap_or_default()
        .timeout;
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use authd_strategy_api::SenderSpec;

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
        let message = Message {
            kind: authd_strategy_api::kinds::PASSWORD_RESET.into(),
            subject: "user".into(),
            strategy: "password".into(),
            user: serde_json::json!({"id": "u1", "email": "ada@example.com", "name": "Ada"}),
            token: Some("a.b.c".into()),
            expires_at: 1_700_000_000,
            data: serde_json::Map::new(),
            templates: authd_strategy_api::Templates {
                subject: "Reset".into(),
                body_with_url: "Open {{url}} before {{expires_at}}".into(),
                body_with_token: "Use\n\n{{token}}\n\nbefore {{expires_at}}".into(),
            },
        };
        let (subject, body) = render_email(&spec, &message);
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
        let (subject, body) = render_email(&without_url, &message);
        assert_eq!(subject, "Hello Ada  Bcc: x@y");
        assert!(body.contains("\n\na.b.c\n\n"), "{body}");
    }
}
