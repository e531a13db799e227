//! A delivery's body read defensively: the envelope (a JSON object of strings, the nonce
//! spelled `Nonce` or `Noce`), then its `EventData` (a JSON document inside a string, parsed a
//! second time) as a typed [`Event`].
//!
//! Leniency, where the vendor's pages are unsure or a forwarding service may have changed the
//! shape: field names match whatever their ASCII case; numbers may be JSON numbers or decimal
//! strings; unknown fields are ignored; `EventData` may also be an object (as a forwarder that
//! parsed it might send; its signature then rarely holds) or a string holding a JSON string
//! holding the object. Names the pages do not confirm are recognised by shape (see
//! [`parse_event`]).

use serde_json::{Map, Value};

use crate::model::{is_valid_id, RecordFile};

/// The largest body accepted (64 KiB); a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The event types whose names and fields the vendor documents.
pub const RECORD_STARTED: &str = "RecordStarted";
/// See [`RECORD_STARTED`].
pub const RECORD_STOPPED: &str = "RecordStopped";

/// Web-capture failure reasons the vendor's SDK names.
pub const WEBCAST_REASONS: [&str; 4] =
    ["StartEventTimeout", "PageBlank", "PageFreeze", "PageCrash"];

/// A delivery's envelope: every field as the string that was signed (absent fields empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub event_type: String,
    pub event_data: String,
    pub event_time: String,
    pub event_id: String,
    pub app_id: String,
    pub version: String,
    /// The nonce under each spelling present (`Nonce`, then `Noce`); usually one.
    pub nonces: Vec<String>,
    /// `Signature`, when present.
    pub signature: Option<String>,
    /// `EventData` when it came as a JSON object instead of a string.
    data_object: Option<Map<String, Value>>,
}

/// Why a body is not a delivery (answered 400). Never contains the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn malformed(message: impl Into<String>) -> Malformed {
    Malformed(message.into())
}

/// Reads the envelope of a delivery body.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, Malformed> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "the body is not JSON ({} at line {} column {}); send the delivery unchanged",
            category(&e),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(fields) = value else {
        return Err(malformed("the body is not a JSON object"));
    };
    let mut env = Envelope::default();
    let mut nonce = None;
    let mut noce = None;
    for (name, value) in fields {
        let slot = match name.to_ascii_lowercase().as_str() {
            "eventtype" => &mut env.event_type,
            "eventtime" => &mut env.event_time,
            "eventid" => &mut env.event_id,
            "appid" => &mut env.app_id,
            "version" => &mut env.version,
            "eventdata" => {
                match value {
                    Value::Object(o) => {
                        env.event_data = Value::Object(o.clone()).to_string();
                        env.data_object = Some(o);
                    }
                    other => env.event_data = scalar(&name, other)?.unwrap_or_default(),
                }
                continue;
            }
            "nonce" => {
                nonce = scalar(&name, value)?;
                continue;
            }
            "noce" => {
                noce = scalar(&name, value)?;
                continue;
            }
            "signature" => {
                env.signature = scalar(&name, value)?;
                continue;
            }
            _ => continue,
        };
        *slot = scalar(&name, value)?.unwrap_or_default();
    }
    env.nonces = nonce.into_iter().chain(noce).collect();
    Ok(env)
}

/// A string field's value: strings as they are, numbers and booleans as JSON writes them,
/// `null` as absent.
fn scalar(name: &str, value: Value) -> Result<Option<String>, Malformed> {
    match value {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Array(_) | Value::Object(_) => Err(malformed(format!(
            "`{}` should be a string",
            clip(name, 40)
        ))),
    }
}

fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "ends early",
    }
}

/// At most `max` characters of `s`, on one line.
fn clip(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The task an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIds {
    pub app_id: String,
    /// `BusinessId`, when set.
    pub business_id: Option<String>,
    pub room_id: String,
    pub task_id: String,
}

/// What a verified delivery says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `RecordStarted`; `code` 0 is a start, 1 a failed start.
    RecordStarted {
        task: TaskIds,
        code: i64,
        error_message: Option<String>,
    },
    /// `RecordStopped` with its `RecordFileList` (there is no StopReason in it).
    RecordStopped {
        task: TaskIds,
        code: i64,
        files: Vec<RecordFile>,
    },
    /// A record event of an unconfirmed name about one task, without a file list: the
    /// upload-done event, recognised by shape.
    RecordUpload {
        task: TaskIds,
        code: Option<i64>,
        error_message: Option<String>,
    },
    /// A web-capture event (names unconfirmed), recognised by shape.
    WebCapture {
        task: TaskIds,
        /// 1 started, 4 the page refreshed, 5 rescheduled (per the vendor's SDK comments).
        status: Option<i64>,
        reason: Option<String>,
    },
    /// Any other event: counted, otherwise ignored.
    Unknown,
}

/// Which known shape an event type name suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Started,
    Stopped,
    Upload,
    WebCapture,
    Other,
}

fn shape_of(event_type: &str) -> Shape {
    match event_type {
        RECORD_STARTED => return Shape::Started,
        RECORD_STOPPED => return Shape::Stopped,
        _ => {}
    }
    let lower = event_type.to_ascii_lowercase();
    if lower.contains("webcast") || lower.contains("capture") || lower.contains("webpage") {
        Shape::WebCapture
    } else if lower.contains("upload") || lower.contains("record") {
        Shape::Upload
    } else {
        Shape::Other
    }
}

/// The event in `envelope`, after its signature was checked.
///
/// `RecordStarted` and `RecordStopped` must name a valid task; anything else is
/// [`Malformed`]. Other names are guessed from their shape, and a guess that does not fit is
/// [`Event::Unknown`] rather than an error:
/// - a name containing `webcast`, `capture` or `webpage`, or data whose `Reason` is one of
///   [`WEBCAST_REASONS`], with room and task IDs: [`Event::WebCapture`];
/// - a name containing `upload` or `record`, with room and task IDs: [`Event::RecordUpload`].
pub fn parse_event(envelope: &Envelope) -> Result<Event, Malformed> {
    let shape = shape_of(&envelope.event_type);
    let data = match event_data(envelope) {
        Ok(data) => data,
        Err(e) if matches!(shape, Shape::Started | Shape::Stopped) => return Err(e),
        Err(_) => return Ok(Event::Unknown),
    };
    let strict = matches!(shape, Shape::Started | Shape::Stopped);
    let task = match task_ids(envelope, &data) {
        Ok(task) => task,
        Err(e) if strict => return Err(e),
        Err(_) => return Ok(Event::Unknown),
    };
    let webcast_reason = text(&data, "Reason").filter(|r| WEBCAST_REASONS.contains(&r.as_str()));
    Ok(match shape {
        Shape::Started => Event::RecordStarted {
            task,
            code: int(&data, "Code").unwrap_or(0),
            error_message: text(&data, "ErrorMessage").filter(|m| !m.is_empty()),
        },
        Shape::Stopped => Event::RecordStopped {
            task,
            code: int(&data, "Code").unwrap_or(0),
            files: files(&data),
        },
        Shape::WebCapture => Event::WebCapture {
            task,
            status: int(&data, "Status"),
            reason: text(&data, "Reason").filter(|r| !r.is_empty()),
        },
        Shape::Upload | Shape::Other if webcast_reason.is_some() => Event::WebCapture {
            task,
            status: int(&data, "Status"),
            reason: webcast_reason,
        },
        Shape::Upload => Event::RecordUpload {
            task,
            code: int(&data, "Code"),
            error_message: text(&data, "ErrorMessage").filter(|m| !m.is_empty()),
        },
        Shape::Other => Event::Unknown,
    })
}

/// `EventData` as an object: parsed once, or twice when it holds a JSON string.
fn event_data(envelope: &Envelope) -> Result<Map<String, Value>, Malformed> {
    if let Some(o) = &envelope.data_object {
        return Ok(o.clone());
    }
    let mut value: Value = serde_json::from_str(&envelope.event_data)
        .map_err(|e| malformed(format!("`EventData` is not JSON ({})", category(&e))))?;
    if let Value::String(inner) = &value {
        value = serde_json::from_str(inner)
            .map_err(|e| malformed(format!("`EventData` is not JSON ({})", category(&e))))?;
    }
    match value {
        Value::Object(o) => Ok(o),
        _ => Err(malformed("`EventData` is not a JSON object")),
    }
}

/// A field of `obj` by name, whatever its ASCII case (the exact name first).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// A string field (numbers written out); `None` when absent, null or of another type.
fn text(obj: &Map<String, Value>, name: &str) -> Option<String> {
    match field(obj, name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field: a JSON integer, an integral float, or a decimal string.
fn int(obj: &Map<String, Value>, name: &str) -> Option<i64> {
    match field(obj, name)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn task_ids(envelope: &Envelope, data: &Map<String, Value>) -> Result<TaskIds, Malformed> {
    let app_id = match text(data, "AppId") {
        Some(a) if !a.is_empty() && a != envelope.app_id => {
            return Err(malformed(
                "`AppId` in `EventData` differs from the delivery's `AppId`",
            ))
        }
        _ => envelope.app_id.clone(),
    };
    let id = |value: Option<String>, name: &str| match value {
        Some(v) if is_valid_id(&v) => Ok(v),
        Some(_) => Err(malformed(format!(
            "`{name}` in `EventData` is not 1 to 128 of a-z A-Z 0-9 _ @ . -"
        ))),
        None => Err(malformed(format!("`EventData` has no `{name}`"))),
    };
    Ok(TaskIds {
        app_id: id(Some(app_id), "AppId")?,
        business_id: text(data, "BusinessId").filter(|b| !b.is_empty()),
        room_id: id(text(data, "RoomId"), "RoomId")?,
        task_id: id(text(data, "TaskId"), "TaskId")?,
    })
}

/// `RecordFileList`, leniently: entries that are not objects are skipped, fields of the wrong
/// type are absent, empty `Vid`/`ObjectKey` are absent.
fn files(data: &Map<String, Value>) -> Vec<RecordFile> {
    let Some(Value::Array(items)) = field(data, "RecordFileList") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Object(f) => Some(RecordFile {
                vid: text(f, "Vid").filter(|v| !v.is_empty()),
                object_key: text(f, "ObjectKey").filter(|k| !k.is_empty()),
                duration_ms: int(f, "Duration"),
                size_bytes: int(f, "Size"),
                start_time_ms: int(f, "StartTime"),
            }),
            _ => None,
        })
        .collect()
}
