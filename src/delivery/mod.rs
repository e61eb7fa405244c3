//! Delivery of messages: the senders strategies are given (`log`, and `webhook`/`smtp`, which
//! only enqueue into the durable outbox), and the carrying out of each attempt. The only
//! outbound HTTP and SMTP of the daemon.
//!
//! Strategies name a sender as data ([`SenderSpec`]); [`DaemonSenders::build`] turns it into
//! a live one. The outbox worker ([`worker`]) claims due jobs from the store and calls
//! [`DaemonSenders::deliver`] for each attempt. Secrets (webhook key, SMTP credentials) are
//! read when an attempt is made, never stored in the outbox. A sender never logs a token,
//! except the `log` sender, whose purpose is to.

mod links;
pub mod smtp;
pub mod webhook;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authd_strategy_api::store::{Job, NewJob};
use authd_strategy_api::{Clock, Message, OutboxStore, Sender, SenderSpec, Senders};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::Notify;

pub use links::PageLinks;
pub use worker::{Limits, backoff};

/// The longest a TCP connect to a webhook may take (the sender's `timeout` bounds the whole
/// attempt too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than one attempt a claim keeps a job from other workers.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again later (the receiver is down, answered non-2xx, timed out; a secret
    /// is missing).
    Retry(String),
    /// Can never succeed (the user has no address): the job is dropped at once.
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(m) | Failure::Permanent(m) => f.write_str(m),
        }
    }
}

/// Builds senders; holds the HTTP client they share, the store they enqueue into, and the
/// handle that wakes the worker.
pub struct DaemonSenders {
    client: HttpClient,
    outbox: Arc<dyn OutboxStore>,
    wake: Arc<Notify>,
    limits: Limits,
    clock: Clock,
}

impl DaemonSenders {
    pub fn new(outbox: Arc<dyn OutboxStore>, limits: Limits, clock: Clock) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        DaemonSenders {
            client: Client::builder(TokioExecutor::new()).build(connector),
            outbox,
            wake: Arc::new(Notify::new()),
            limits,
            clock,
        }
    }

    /// Wakes the worker when a job is enqueued.
    pub fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Carries out one attempt of `job`.
    ///
    /// # Errors
    /// Why the attempt failed, and whether to retry.
    pub async fn deliver(&self, job: &Job) -> Result<(), Failure> {
        let spec: SenderSpec = serde_json::from_value(job.channel.clone())
            .map_err(|e| Failure::Permanent(format!("SN0007 unreadable sender spec: {e}")))?;
        let message: Message = serde_json::from_value(job.payload.clone())
            .map_err(|_| Failure::Permanent("SN0010 the payload is not a message".into()))?;
        match &spec {
            SenderSpec::Webhook(w) => match crate::events::webhook_event(&message) {
                // An account event: its own body, and its own id at every attempt.
                Some((id, event)) => webhook::attempt(&self.client, w, id, event).await,
                None => {
                    webhook::attempt(&self.client, w, &job.message_id(), &webhook_body(&message))
                        .await
                }
            },
            SenderSpec::Smtp(s) => smtp::attempt(s, &job.message_id(), &message).await,
            SenderSpec::Log {} => Err(Failure::Permanent(
                "SN0008 the log sender does not deliver from the outbox".into(),
            )),
        }
    }
}

/// What a webhook receiver gets: the message without the email templates.
fn webhook_body(message: &Message) -> Value {
    let mut body = serde_json::to_value(message).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.remove("templates");
    }
    body
}

impl Senders for DaemonSenders {
    fn build(&self, spec: &SenderSpec) -> Arc<dyn Sender> {
        match spec {
            SenderSpec::Log {} => Arc::new(LogSender),
            SenderSpec::Webhook(_) | SenderSpec::Smtp(_) => Arc::new(OutboxSender {
                spec: spec.clone(),
                outbox: Arc::clone(&self.outbox),
                wake: Arc::clone(&self.wake),
                limits: self.limits,
                clock: self.clock.clone(),
            }),
        }
    }
}

/// Writes the message to the log at INFO, token included. Development only: anyone who reads
/// the log can use the token.
struct LogSender;

#[async_trait]
impl Sender for LogSender {
    async fn send(&self, m: Message) -> Result<(), String> {
        tracing::info!(
            kind = %m.kind,
            subject = %m.subject,
            strategy = %m.strategy,
            user = %m.user,
            token = m.token.as_deref().unwrap_or(""),
            expires_at = m.expires_at,
            "message (log sender)"
        );
        Ok(())
    }
}

/// Queues the message in the outbox, addressed with the sender's spec; the worker delivers it.
struct OutboxSender {
    spec: SenderSpec,
    outbox: Arc<dyn OutboxStore>,
    wake: Arc<Notify>,
    limits: Limits,
    clock: Clock,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Sender for OutboxSender {
    async fn send(&self, m: Message) -> Result<(), String> {
        let delivery = self.spec.delivery().unwrap_or_default();
        let now = self.clock.now_ms();
        // A message is useless once its token expired: that is the latest deadline.
        let expires_ms = m.expires_at.saturating_mul(1000);
        let deadline_ms = match delivery.give_up_after {
            Some(d) => expires_ms.min(now.saturating_add(millis(d))),
            None => expires_ms,
        };
        let channel = serde_json::to_value(&self.spec)
            .map_err(|e| format!("SN0009 cannot record the sender: {e}"))?;
        let payload =
            serde_json::to_value(&m).map_err(|_| "SN0009 cannot record the message".to_string())?;
        let job = NewJob {
            kind: m.kind.clone(),
            channel,
            payload,
            deadline_ms,
            retry_base_ms: millis(delivery.retry_base),
            lease_ms: millis(delivery.timeout + LEASE_MARGIN),
        };
        match self
            .outbox
            .outbox_enqueue(job, self.limits.max_jobs, now)
            .await
        {
            Ok(Ok(_)) => {
                self.wake.notify_one();
                Ok(())
            }
            Ok(Err(full)) => Err(format!(
                "OB0001 the outbox is full ({} jobs waiting): message dropped",
                full.depth
            )),
            Err(e) => Err(format!(
                "OB0006 the outbox could not store the message: {e}"
            )),
        }
    }
}
