//! One webhook attempt: POST the message as JSON, signed as the Standard Webhooks
//! specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`).
//! The secret is read at each attempt, never stored in the outbox.

use std::time::{SystemTime, UNIX_EPOCH};

use authd_strategy_api::WebhookSpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use serde_json::Value;
use sha2::Sha256;

use super::Failure;
use super::HttpClient;

/// One attempt: POST `body`, signed if a secret is configured. 2xx is success.
pub(super) async fn attempt(
    client: &HttpClient,
    spec: &WebhookSpec,
    id: &str,
    body: &Value,
) -> Result<(), Failure> {
    let key = webhook_key(spec).await?;
    let body = serde_json::to_vec(body)
        .map_err(|_| Failure::Permanent("SN0010 unreadable payload".into()))?;
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut request = Request::post(spec.url.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("authd/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(key) = key {
        request = request.header("webhook-signature", sign(&key, id, timestamp, &body)?);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure::Permanent(format!("SN0001 bad webhook request: {e}")))?;
    let timeout = authd_strategy_api::SenderSpec::Webhook(spec.clone())
        .delivery()
        .unwrap_or_default()
        .timeout;
    let response = tokio::time::timeout(timeout, client.request(request))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
}
