//! `[metrics]`, `[log]` and `[events]`: what operators see of the daemon. Validated here,
//! purely (no socket bound, no environment read), like the rest of the file.

use std::net::SocketAddr;

use authd_strategy_api::{Problems, ResourceSpec, SenderSpec, TableReader, event_names};

use super::raw::{RawEvents, RawLog, RawMetrics};

/// `[metrics]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `"text"` or `"json"`.
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[log]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `[events]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// A `webhook` sender.
    pub sender: SenderSpec,
    /// The event types sent, each one of [`event_names::ALL`].
    pub types: Vec<&'static str>,
}

impl EventsConfig {
    /// Whether events of type `name` are sent.
    pub fn sends(&self, name: &str) -> bool {
        self.types.contains(&name)
    }
}

pub(super) fn check_metrics(raw: RawMetrics, problems: &mut Problems) -> MetricsConfig {
    MetricsConfig {
        listen: super::check_listen("metrics.listen", &raw.listen, problems),
    }
}

pub(super) fn check_log(raw: RawLog, problems: &mut Problems) -> LogConfig {
    let format = match raw.format.as_deref() {
        None => LogFormat::Text,
        Some(text) => LogFormat::parse(text).unwrap_or_else(|| {
            problems.push("log.format", "must be \"text\" or \"json\"");
            LogFormat::Text
        }),
    };
    LogConfig { format }
}

pub(super) fn check_events(raw: RawEvents, problems: &mut Problems) -> Option<EventsConfig> {
    let sender = TableReader::read::<SenderSpec>("events.sender", raw.sender, problems)?;
    if !matches!(sender, SenderSpec::Webhook(_)) {
        problems.push(
            "events.sender.type",
            "must be \"webhook\" (events go to a webhook)",
        );
    }
    // A webhook's checks do not read the resource.
    let nobody = ResourceSpec {
        name: "events".into(),
        attributes: Vec::new(),
        confirmation: None,
    };
    if let Err(p) = sender.validate("events.sender", &nobody, &[]) {
        problems.extend(p);
    }
    let types = match raw.types {
        None => event_names::ALL.to_vec(),
        Some(list) => {
            let mut types = Vec::with_capacity(list.len());
            for (i, name) in list.iter().enumerate() {
                match event_names::ALL
                    .iter()
                    .find(|known| **known == name.as_str())
                {
                    Some(known) if !types.contains(known) => types.push(*known),
                    Some(_) => problems.push(format!("events.types[{i}]"), "is listed twice"),
                    None => problems.push(
                        format!("events.types[{i}]"),
                        format!(
                            "unknown event type (expected {})",
                            event_names::ALL.join(", ")
                        ),
                    ),
                }
            }
            if list.is_empty() {
                problems.push(
                    "events.types",
                    "must name at least one type (remove [events] to send none)",
                );
            }
            types
        }
    };
    Some(EventsConfig { sender, types })
}
