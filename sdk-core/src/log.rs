//! Logs an app can turn on: the core's `tracing` events, handed one by one to a function
//! of the binding (which passes them to the app's log handler), at a level the app picks.
//!
//! Owns: a minimal `tracing` subscriber (events only; the core opens no spans it needs to
//! report), the level switch, and the record an event becomes. Must never decide what an
//! event says: that is the code that logs it, and that code never logs a token, a key or a
//! message body (secrets are `secret::Secret`s, redacted in `Debug`; bodies are never
//! fields). Sends carry their W3C trace id as the field `trace`, as the region sees it in
//! the send's `traceparent`.
//!
//! `tracing-subscriber` would do this and much more; the web build would pay for all of it,
//! and the bindings need no more than this.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// How much to log: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Failures the SDK could not handle by itself.
    Error,
    /// Things that went wrong and were handled (a refused frame, a failed refresh).
    Warn,
    /// The client's life: connected, resumed, a region refused.
    Info,
    /// Each connection, send and retry, with trace ids.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Parses `off`, `error`, `warn`, `info`, `debug` or `trace`.
    pub fn parse(text: &str) -> crate::Result<Self> {
        Ok(match text {
            "off" => Self::Off,
            "error" => Self::Error,
            "warn" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            other => {
                return Err(crate::Error::InvalidInput(format!(
                    "unknown log level \"{}\": use off, error, warn, info, debug or trace",
                    other.escape_default()
                )));
            }
        })
    }

    /// The name `parse` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    fn of(level: &Level) -> Self {
        match *level {
            Level::ERROR => Self::Error,
            Level::WARN => Self::Warn,
            Level::INFO => Self::Info,
            Level::DEBUG => Self::Debug,
            Level::TRACE => Self::Trace,
        }
    }

    fn from_u8(value: u8) -> Self {
        [
            Self::Off,
            Self::Error,
            Self::Warn,
            Self::Info,
            Self::Debug,
            Self::Trace,
        ]
        .get(usize::from(value))
        .copied()
        .unwrap_or(Self::Off)
    }
}

/// One event, as a log handler gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// The module that logged it, e.g. `meridian::session`.
    pub target: String,
    /// What happened, e.g. `connected`.
    pub message: String,
    /// Its fields in the order written, e.g. `("region", "eu-west")`, `("trace", "4bf9…")`.
    pub fields: Vec<(String, String)>,
}

impl fmt::Display for LogRecord {
    /// `info meridian::session: connected region=eu-west`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.level.as_str(),
            self.target,
            self.message
        )?;
        for (name, value) in &self.fields {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

/// Where records go: set once per process by the binding ([`install`]).
static FORWARD: OnceLock<fn(LogRecord)> = OnceLock::new();
/// The level, changed at will ([`set_level`]): `Off` until an app asks.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Makes the core's events reach `forward` (at the level of [`set_level`]). Returns false,
/// and changes nothing, when the process already has a `tracing` subscriber (an app that
/// installed its own gets the events there) or `install` was called before.
pub fn install(forward: fn(LogRecord)) -> bool {
    if FORWARD.set(forward).is_err() {
        return false;
    }
    tracing::subscriber::set_global_default(Forwarder).is_ok()
}

/// Sets the level of what reaches the handler (`Off` for nothing).
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// The level now.
pub fn level() -> LogLevel {
    LogLevel::from_u8(LEVEL.load(Ordering::Relaxed))
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or(traceparent)
}

struct Forwarder;

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level changes at run time: ask `enabled` each time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && LogLevel::of(metadata.level()) <= level()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        Some(match level() {
            LogLevel::Off => LevelFilter::OFF,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(forward) = FORWARD.get() else {
            return;
        };
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        forward(LogRecord {
            level: LogLevel::of(metadata.level()),
            target: metadata.target().to_owned(),
            message: fields.message,
            fields: fields.rest,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.rest.push((field.name().to_owned(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(LogLevel::parse("debug").unwrap(), LogLevel::Debug);
        assert!(LogLevel::parse("verbose").is_err());
        assert!(LogLevel::Error < LogLevel::Trace);
        for level in [LogLevel::Off, LogLevel::Warn, LogLevel::Trace] {
            assert_eq!(LogLevel::from_u8(level as u8), level);
            assert_eq!(LogLevel::parse(level.as_str()).unwrap(), level);
        }
        assert_eq!(LogLevel::from_u8(200), LogLevel::Off);
    }

    #[test]
    fn the_trace_id_is_the_second_part_of_a_traceparent() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(parent), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace_id("garbage"), "garbage");
    }
}
