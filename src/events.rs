//! The daemon's side of [`Events`]: what strategies and the daemon report becomes Prometheus
//! series (with `[metrics]`) and account events for the `[events]` webhook.
//!
//! An account event is queued in memory at once (the caller's path does no I/O) and written
//! into the store's durable outbox by one task, which delivers it like any webhook message:
//! signed per Standard Webhooks, retried until it is given up. The event's id (`evt_...`,
//! made when it happened) is its `webhook-id`, the same at every attempt. A queue that is
//! full drops the event and counts it (`authd_events_dropped_total`), never blocks a request.
//!
//! The body carries the type, id, time, resource, strategy and user id: never a password, a
//! hash, a token, an identity or an address.

use std::sync::Arc;

use authd_strategy_api::{Clock, Event, Events, Message, Sender, kinds};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::EventsConfig;
use crate::metrics::Metrics;

/// Events waiting to be written into the outbox.
const QUEUE: usize = 1024;
/// An event is given up this long after it happened at the latest (the sender's
/// `give_up_after` may shorten it).
const EVENT_LIFETIME_SECS: u64 = 3 * 24 * 3600;

/// One event on its way to the outbox, with the sender of the generation it happened in.
pub struct Queued {
    sender: Arc<dyn Sender>,
    message: Message,
}

/// The queue between [`DaemonEvents`] and the outbox.
#[derive(Clone)]
pub struct EventQueue(mpsc::Sender<Queued>);

impl EventQueue {
    /// The queue and the task that empties it into the outbox until `stop`.
    pub fn new(stop: CancellationToken) -> (EventQueue, impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE);
        let task = async move {
            loop {
                let queued = tokio::select! {
                    q = rx.recv() => match q {
                        Some(q) => q,
                        None => return,
                    },
                    () = stop.cancelled() => return,
                };
                if let Err(e) = queued.sender.send(queued.message).await {
                    tracing::warn!("EV0002 an event could not be queued for delivery: {e}");
                }
            }
        };
        (EventQueue(tx), task)
    }
}

/// What one generation does with events.
pub struct DaemonEvents {
    metrics: Option<Arc<Metrics>>,
    hooks: Option<Hooks>,
    clock: Clock,
}

struct Hooks {
    config: EventsConfig,
    sender: Arc<dyn Sender>,
    queue: EventQueue,
}

impl DaemonEvents {
    pub fn new(
        metrics: Option<Arc<Metrics>>,
        events: Option<(&EventsConfig, Arc<dyn Sender>, EventQueue)>,
        clock: Clock,
    ) -> DaemonEvents {
        DaemonEvents {
            metrics,
            hooks: events.map(|(config, sender, queue)| Hooks {
                config: config.clone(),
                sender,
                queue,
            }),
            clock,
        }
    }

    /// The webhook message of an account event: kind `event`, the event itself in
    /// `data.event` (what the receiver gets).
    fn message(
        &self,
        name: &str,
        subject: &str,
        strategy: Option<&str>,
        user: Option<&authd_strategy_api::UserRecord>,
    ) -> Message {
        let now_ms = self.clock.now_ms();
        let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let user_id = user.map(|u| u.id.to_string());
        let event = json!({
            "type": name,
            "id": id,
            "timestamp": crate::sessions::rfc3339(now_ms / 1000),
            "data": {
                "resource": subject,
                "user_id": user_id,
                "strategy": strategy,
            },
        });
        let mut data = Map::new();
        data.insert("event".into(), event);
        Message {
            kind: kinds::EVENT.into(),
            subject: subject.into(),
            strategy: strategy.unwrap_or_default().into(),
            user: user_id.map_or(Value::Null, |id| json!({ "id": id })),
            token: None,
            expires_at: now_ms / 1000 + EVENT_LIFETIME_SECS,
            data,
            templates: Default::default(),
        }
    }
}

impl Events for DaemonEvents {
    fn emit(&self, event: Event<'_>) {
        match event {
            Event::Hashed {
                algorithm,
                verify,
                seconds,
            } => {
                if let Some(m) = &self.metrics {
                    m.hashed(algorithm, verify, seconds);
                }
            }
            Event::Rehashed { from, to } => {
                if let Some(m) = &self.metrics {
                    m.rehashed(from, to);
                }
            }
            Event::TokenIssued { purpose } => {
                if let Some(m) = &self.metrics {
                    m.token_issued(purpose);
                }
            }
            Event::LockedOut { kind } => {
                if let Some(m) = &self.metrics {
                    m.locked_out(kind);
                }
            }
            Event::Account {
                name,
                subject,
                strategy,
                user,
            } => {
                let Some(hooks) = &self.hooks else {
                    return;
                };
                if !hooks.config.sends(name) {
                    return;
                }
                let queued = Queued {
                    sender: Arc::clone(&hooks.sender),
                    message: self.message(name, subject, strategy, user),
                };
                if hooks.queue.0.try_send(queued).is_err() {
                    tracing::warn!(
                        event = name,
                        "EV0001 the event queue is full: event dropped"
                    );
                    if let Some(m) = &self.metrics {
                        m.event_dropped();
                    }
                }
            }
            _ => {}
        }
    }
}

/// The body and id a webhook receiver gets for an event message, when `message` is one.
pub fn webhook_event(message: &Message) -> Option<(&str, &Value)> {
    if message.kind != kinds::EVENT {
        return None;
    }
    let event = message.data.get("event")?;
    let id = event.get("id")?.as_str()?;
    Some((id, event))
}
