//! Line formats for [`crate::logging`]: flat JSON objects, and field
//! formatters for both formats that redact secret-looking fields.
//!
//! A JSON line is one object that starts with `timestamp` (RFC 3339, UTC),
//! `level`, `target` and `message`, followed, sorted by name, by the event's
//! own fields, the fields of every enclosing span (an inner span's field
//! replaces an outer one of the same name, and the event's fields replace
//! both), `span` (the name of the innermost span) and `node_id` (from the
//! spans, else the process-wide value set with
//! [`crate::logging::set_node_id`]). An event field named like one of the
//! fixed keys is written as `field.<name>`.
//!
//! Values of fields whose name suggests a secret ([`is_secret_field`]) are
//! written as `"<redacted>"` in both formats. This is a safety net: code
//! must not log secrets in the first place.

use std::{
    fmt::{self as stdfmt},
    sync::OnceLock,
};

use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    field::{RecordFields, Visit},
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// Replacement written instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// Whether a field's value must never be logged: its name contains `token`,
/// `passphrase`, `password`, `secret`, `authorization`, `private_key` or
/// `api_key` (case-insensitive).
pub fn is_secret_field(name: &str) -> bool {
    const MARKERS: [&str; 7] = [
        "token",
        "passphrase",
        "password",
        "secret",
        "authorization",
        "private_key",
        "api_key",
    ];
    let lower = name.to_ascii_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

pub(crate) static NODE_ID: OnceLock<String> = OnceLock::new();

/// Collects fields into a JSON map, redacting secrets.
struct JsonVisitor<'a> {
    map: &'a mut Map<String, Value>,
}

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let value = if name != "message" && is_secret_field(name) {
            Value::from(REDACTED)
        } else {
            value
        };
        // `r#type` style raw identifiers reach us as `r#type`.
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.map.insert(name.to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(value.to_string()));
        self.put(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn stdfmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// Span fields stored as a JSON object (redacted), merged when a span
/// records more fields later.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedactingJsonFields;

impl<'writer> FormatFields<'writer> for RedactingJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> stdfmt::Result {
        let mut map = Map::new();
        fields.record(&mut JsonVisitor { map: &mut map });
        let text = serde_json::to_string(&map).map_err(|_| stdfmt::Error)?;
        writer.write_str(&text)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> stdfmt::Result {
        let mut map: Map<String, Value> = serde_json::from_str(&current.fields).unwrap_or_default();
        fields.record(&mut JsonVisitor { map: &mut map });
        current.fields = serde_json::to_string(&map).map_err(|_| stdfmt::Error)?;
        Ok(())
    }
}

/// The JSON event format described in the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

impl<S> FormatEvent<S, RedactingJsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, RedactingJsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> stdfmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();

        let mut span_fields = Map::new();
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<RedactingJsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields)
                {
                    span_fields.extend(map);
                }
                innermost = Some(span.name());
            }
        }
        let mut event_fields = Map::new();
        event.record(&mut JsonVisitor {
            map: &mut event_fields,
        });
        let message = event_fields.remove("message").unwrap_or(Value::from(""));

        // The fixed fields first, in this order; then the others by name.
        let mut rest = Map::new();
        const RESERVED: [&str; 5] = ["timestamp", "level", "target", "message", "span"];
        for (k, v) in span_fields.into_iter().chain(event_fields) {
            if RESERVED.contains(&k.as_str()) {
                rest.insert(format!("field.{k}"), v);
            } else {
                rest.insert(k, v);
            }
        }
        if let Some(name) = innermost {
            rest.insert("span".into(), Value::from(name));
        }
        if !rest.contains_key("node_id")
            && let Some(id) = NODE_ID.get()
        {
            rest.insert("node_id".into(), Value::from(id.as_str()));
        }
        let json = |v: &Value| serde_json::to_string(v).map_err(|_| stdfmt::Error);
        let mut text = String::with_capacity(256);
        text.push_str("{\"timestamp\":");
        text.push_str(&json(&Value::from(timestamp.trim()))?);
        text.push_str(",\"level\":");
        text.push_str(&json(&Value::from(meta.level().as_str()))?);
        text.push_str(",\"target\":");
        text.push_str(&json(&Value::from(meta.target()))?);
        text.push_str(",\"message\":");
        text.push_str(&json(&message)?);
        for (k, v) in &rest {
            text.push(',');
            text.push_str(&json(&Value::from(k.as_str()))?);
            text.push(':');
            text.push_str(&json(v)?);
        }
        text.push('}');
        writeln!(writer, "{text}")
    }
}

/// Text fields like tracing's default (`message` first, then
/// `name=value`), with secrets redacted.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedactingTextFields;

struct TextVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: stdfmt::Result,
}

impl TextVisitor<'_, '_> {
    fn write(&mut self, field: &Field, value: stdfmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name();
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value}")
        } else if is_secret_field(name) {
            write!(self.writer, "{sep}{name}={REDACTED}")
        } else {
            write!(self.writer, "{sep}{name}={value}")
        };
    }
}

impl Visit for TextVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn stdfmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

impl<'writer> FormatFields<'writer> for RedactingTextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> stdfmt::Result {
        let mut v = TextVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{fmt, layer::SubscriberExt as _};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn json_lines_are_flat_with_span_fields_and_redaction() {
        let buf = Buffer::default();
        let layer = fmt::layer()
            .fmt_fields(RedactingJsonFields)
            .event_format(FlatJson)
            .with_writer(buf.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let outer =
                tracing::info_span!("call", node_id = "12D3KooWNode", peer_id = "12D3KooWPeer");
            let _o = outer.enter();
            let inner =
                tracing::info_span!("inbound_call", request_id = 7_u64, api_token = "dawn_abc");
            let _i = inner.enter();
            tracing::info!(
                status = "ok",
                elapsed_ms = 1.5,
                passphrase = "hunter2",
                "call handled"
            );
        });
        let text = buf.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        assert!(text.contains("\"level\":\"INFO\",\"target\":"), "{text}");
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "call handled");
        assert!(v["target"].as_str().unwrap().contains("log_format"));
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
        assert_eq!(v["node_id"], "12D3KooWNode");
        assert_eq!(v["peer_id"], "12D3KooWPeer");
        assert_eq!(v["request_id"], 7);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["elapsed_ms"], 1.5);
        assert_eq!(v["span"], "inbound_call");
        assert_eq!(v["api_token"], REDACTED);
        assert_eq!(v["passphrase"], REDACTED);
        assert!(!text.contains("hunter2") && !text.contains("dawn_abc"));
    }

    #[test]
    fn text_fields_redact_secrets() {
        let buf = Buffer::default();
        let layer = fmt::layer()
            .fmt_fields(RedactingTextFields)
            .with_ansi(false)
            .with_writer(buf.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("req", bearer_token = "dawn_xyz", peer = "p1");
            let _e = span.enter();
            tracing::warn!(secret = "s3cret", count = 3, "something happened");
        });
        let text = buf.text();
        assert!(text.contains("something happened"), "{text}");
        assert!(text.contains("count=3"), "{text}");
        assert!(text.contains("peer=\"p1\""), "{text}");
        assert!(text.contains("secret=<redacted>"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("dawn_xyz"),
            "{text}"
        );
    }

    #[test]
    fn secret_names() {
        for name in [
            "api_token",
            "passphrase",
            "DAWN_PASSPHRASE",
            "secret",
            "authorization",
            "private_key",
            "password",
        ] {
            assert!(is_secret_field(name), "{name}");
        }
        for name in ["peer_id", "node_id", "message", "status", "key_path"] {
            assert!(!is_secret_field(name), "{name}");
        }
    }
}
