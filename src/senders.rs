//! Senders of password-reset messages: `log` (development) and `webhook` (HTTP POST of JSON).
//!
//! Strategies name a sender as data ([`SenderSpec`]); this module builds the live ones. A
//! sender never logs a token, except the `log` sender, whose purpose is to.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authd_strategy_api::{ResetMessage, Sender, SenderSpec, Senders};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one webhook delivery may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds senders; holds the HTTP client they share.
pub struct DaemonSenders {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl DaemonSenders {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(WEBHOOK_TIMEOUT));
        DaemonSenders {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Default for DaemonSenders {
    fn default() -> Self {
        Self::new()
    }
}

impl Senders for DaemonSenders {
    fn build(&self, spec: &SenderSpec) -> Arc<dyn Sender> {
        match spec {
            SenderSpec::Log {} => Arc::new(LogSender),
            SenderSpec::Webhook { url } => Arc::new(WebhookSender {
                url: url.clone(),
                client: self.client.clone(),
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

/// POSTs `{"subject", "strategy", "user", "token", "expires_at"}` to a URL; 2xx is success.
struct WebhookSender {
    url: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[async_trait]
impl Sender for WebhookSender {
    async fn send_reset(&self, m: ResetMessage) -> Result<(), String> {
        let body = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
        let request = Request::post(self.url.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("authd/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("SN0001 bad webhook request: {e}"))?;
        let response = tokio::time::timeout(WEBHOOK_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("SN0002 webhook {} timed out", self.url))?
            .map_err(|e| format!("SN0003 webhook {} failed: {e}", self.url))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "SN0004 webhook {} answered {}",
                self.url,
                response.status()
            ))
        }
    }
}
