//! Parsing and classifying answers: HTTP status plus the envelope's `ResponseMetadata.Error`
//! become an [`crate::model::Outcome`]; `Result.RecordTask` / `Result.WebCastTask` become a
//! [`crate::model::TaskSnapshot`].
//!
//! [`classify`] is a pure function of (kind, HTTP status, body bytes). The rules, in order:
//!
//! 1. The body is always parsed. If it is not a JSON object with a `ResponseMetadata` object
//!    (an HTML error page, a truncated document, plain text), the HTTP status decides: 429 is
//!    `Throttled`, 401/403 `AuthError`, other 4xx `ClientError`, 5xx `ServerError`, 3xx
//!    `ClientError` (an unexpected redirect is a configuration problem), and 2xx
//!    `DecodeError`.
//! 2. An `Error` in `ResponseMetadata` is a failure whatever the HTTP status (a 200 can carry
//!    one). Its `Code` (never `CodeN`) decides: any code containing `FlowLimitExceeded` is
//!    `Throttled`; `InvalidParameter.ErrorActiveTaskNotFound` is `NotFound`; signature,
//!    credential and permission codes are `AuthError`; server codes are `ServerError`;
//!    parameter and routing codes are `ClientError`. A code not listed falls back to the HTTP
//!    status (and to `ClientError` when the status is 2xx: the vendor refused the request and
//!    repeating it will not help). HTTP 429 is `Throttled` whatever the code says.
//! 3. Without an `Error`, a non-2xx status still decides (429, 401/403, 4xx, 5xx as above).
//! 4. A success envelope whose task is absent, `null`, `{}` or blank (Status 0, no times, no
//!    stop reason, no files: the vendor's "empty result" for a task it cannot see, e.g. one
//!    started over 72 h ago) is `NotFound`.
//!
//! Parsing is tolerant: unknown fields are ignored; every field may be absent or `null`
//! (giving the model's default); the web-capture task is accepted as `WebCastTask` or
//! `WebcastTask`; times and sizes are 64-bit and may be given as JSON integers, as integral
//! floats (`1.7e12`), or as decimal strings (`"1700000000000"`) — some gateways re-encode
//! large numbers as strings. A field of any other type (an object where a number belongs, a
//! non-numeric string, a fraction) is a `DecodeError` naming the field: a wrong answer is never
//! silently turned into zeros. Fields the exporter does not use (`MonitorConfig`/`Monitor`,
//! `EventNotifyConfig`/`EventNotify`, `VideoSolutions`, `StreamList`, codecs, ...) are not
//! looked at, so their shape cannot break parsing.

use std::fmt;

use serde_json::{Map, Value};

use crate::model::{Kind, Outcome, RecordFile, TaskSnapshot};

/// Vendor messages longer than this (in characters) are cut in [`ApiError`].
pub const MAX_MESSAGE_CHARS: usize = 200;

/// `Code` and `RequestId` longer than this are cut too (they are short in real answers).
const MAX_ID_CHARS: usize = 128;

/// A failed request: its classification plus what the answer said about it.
///
/// `Display` is short and safe to log: outcome, code, HTTP status, the (truncated) message and
/// the request id. It never contains a header or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ApiError {
    pub outcome: Outcome,
    /// The HTTP status, when an answer arrived.
    pub http_status: Option<u16>,
    /// `ResponseMetadata.Error.Code`, when the answer had one.
    pub code: Option<String>,
    /// A one-line description: the vendor's message (truncated) or what went wrong locally.
    pub message: String,
    /// `ResponseMetadata.RequestId`, when the answer had one (quote it to the vendor).
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with only an outcome and a message (no answer, or no envelope).
    pub fn new(outcome: Outcome, http_status: Option<u16>, message: impl Into<String>) -> Self {
        ApiError {
            outcome,
            http_status,
            code: None,
            message: one_line(&message.into()),
            request_id: None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.outcome.as_str())?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [RequestId {id}]")?;
        }
        Ok(())
    }
}

/// Classify one answer: a snapshot of the task, or the error with its [`Outcome`].
pub fn classify(kind: Kind, http_status: u16, body: &[u8]) -> Result<TaskSnapshot, ApiError> {
    let envelope = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut root)) => match root.remove("ResponseMetadata") {
            Some(Value::Object(meta)) => Some((meta, root.remove("Result"))),
            _ => None,
        },
        _ => None,
    };
    let Some((meta, result)) = envelope else {
        return Err(not_an_envelope(http_status, body));
    };
    let request_id = opt_str(&meta, "RequestId", MAX_ID_CHARS);

    if let Some(Value::Object(error)) = meta.get("Error") {
        let code = opt_str(error, "Code", MAX_ID_CHARS).filter(|c| !c.is_empty());
        let message = opt_str(error, "Message", MAX_MESSAGE_CHARS).unwrap_or_default();
        // An `Error` object with neither code nor message is how some serializers write "no
        // error"; treat it as absent.
        if code.is_some() || !message.is_empty() {
            let outcome = outcome_for(code.as_deref(), http_status);
            return Err(ApiError {
                outcome,
                http_status: Some(http_status),
                code,
                message,
                request_id,
            });
        }
    }

    if !(200..300).contains(&http_status) {
        return Err(ApiError {
            outcome: status_outcome(http_status),
            http_status: Some(http_status),
            code: None,
            message: format!("HTTP {http_status} without an error code"),
            request_id,
        });
    }

    let fail = |outcome: Outcome, message: String| ApiError {
        outcome,
        http_status: Some(http_status),
        code: None,
        message,
        request_id: request_id.clone(),
    };
    let task = match result {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut r)) => match kind {
            Kind::Record => r.remove("RecordTask"),
            Kind::Webcast => r.remove("WebCastTask").or_else(|| r.remove("WebcastTask")),
        },
        Some(other) => {
            return Err(fail(
                Outcome::DecodeError,
                format!("Result is {}, not an object", type_name(&other)),
            ))
        }
    };
    let task = match task {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) if t.is_empty() => None,
        Some(Value::Object(t)) => Some(t),
        Some(other) => {
            return Err(fail(
                Outcome::DecodeError,
                format!("{} is {}, not an object", task_key(kind), type_name(&other)),
            ))
        }
    };
    let Some(task) = task else {
        return Err(fail(
            Outcome::NotFound,
            format!("the answer holds no {}", task_key(kind)),
        ));
    };
    let snapshot = snapshot(kind, &task)
        .map_err(|e| fail(Outcome::DecodeError, e.within(task_key(kind)).describe()))?;
    if is_blank(&snapshot) {
        return Err(fail(
            Outcome::NotFound,
            format!("the answer's {} is empty", task_key(kind)),
        ));
    }
    Ok(snapshot)
}

/// A task object holding only zero values (`Status` 0, no times, no stop reason, no files):
/// what a serializer writes for "no task". `UserId`/`MaxRunningTime` do not count: a blank
/// web-capture task may still carry `"MaxRunningTime": 0, "UserId": ""`.
fn is_blank(s: &TaskSnapshot) -> bool {
    s.status == 0
        && s.start_time_ms == 0
        && s.end_time_ms == 0
        && s.stop_reason.is_empty()
        && s.files.is_empty()
}

/// The outcome an answer with error `code` and HTTP status `http_status` means.
pub fn error_outcome(code: &str, http_status: u16) -> Outcome {
    outcome_for(Some(code), http_status)
}

/// The outcome for an error `Code` (if any) and the HTTP status.
fn outcome_for(code: Option<&str>, http_status: u16) -> Outcome {
    if http_status == 429 {
        return Outcome::Throttled;
    }
    if let Some(code) = code {
        if let Some(outcome) = code_outcome(code) {
            return outcome;
        }
    }
    if (200..300).contains(&http_status) {
        Outcome::ClientError
    } else {
        status_outcome(http_status)
    }
}

/// The outcome a known `Code` means, or `None` for a code not in the vendor's documents.
fn code_outcome(code: &str) -> Option<Outcome> {
    if code.contains("FlowLimitExceeded") {
        return Some(Outcome::Throttled);
    }
    if code == "InvalidParameter.ErrorActiveTaskNotFound" {
        return Some(Outcome::NotFound);
    }
    // `AccessDenied.RecordNotEnabled` and the like: match on the part before the first dot.
    let base = code.split('.').next().unwrap_or(code);
    let outcome = match base {
        "SignatureDoesNotMatch"
        | "InvalidAccessKey"
        | "InvalidTimestamp"
        | "InvalidSecretToken"
        | "MissingSignature"
        | "MissingAuthenticationToken"
        | "InvalidAuthorization"
        | "InvalidCredential"
        | "AccessDenied"
        | "LackPolicy" => Outcome::AuthError,
        "InternalError"
        | "UndefinedError"
        | "InternalServiceTimeout"
        | "FailToConnect"
        | "InternalServiceError"
        | "ServiceUnavailableTemp" => Outcome::ServerError,
        "InvalidParameter" | "MissingParameter" | "InvalidActionOrVersion" | "ServiceNotFound" => {
            Outcome::ClientError
        }
        _ => return None,
    };
    Some(outcome)
}

/// The outcome the HTTP status alone means (for answers without a usable error code).
fn status_outcome(http_status: u16) -> Outcome {
    match http_status {
        429 => Outcome::Throttled,
        401 | 403 => Outcome::AuthError,
        500..=599 => Outcome::ServerError,
        200..=299 => Outcome::DecodeError,
        _ => Outcome::ClientError,
    }
}

fn not_an_envelope(http_status: u16, body: &[u8]) -> ApiError {
    let outcome = status_outcome(http_status);
    let what = if body.is_empty() {
        "an empty body".to_string()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(_)) => "a JSON object without ResponseMetadata".to_string(),
            Ok(other) => format!("JSON {}, not an envelope", type_name(&other)),
            Err(e) if e.is_eof() => format!("truncated JSON ({} bytes)", body.len()),
            Err(_) => {
                let looks_html = body
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'<');
                if looks_html {
                    "an HTML page".to_string()
                } else {
                    "a body that is not JSON".to_string()
                }
            }
        }
    };
    ApiError::new(
        outcome,
        Some(http_status),
        format!("HTTP {http_status} with {what}"),
    )
}

fn task_key(kind: Kind) -> &'static str {
    match kind {
        Kind::Record => "RecordTask",
        Kind::Webcast => "WebCastTask",
    }
}

/// Build the snapshot from the task object.
fn snapshot(kind: Kind, task: &Map<String, Value>) -> Result<TaskSnapshot, FieldError> {
    let mut s = TaskSnapshot {
        status: int(task, "Status")?.unwrap_or(0),
        start_time_ms: int(task, "StartTime")?.unwrap_or(0),
        end_time_ms: int(task, "EndTime")?.unwrap_or(0),
        stop_reason: string(task, "StopReason")?.unwrap_or_default(),
        ..TaskSnapshot::default()
    };
    match kind {
        Kind::Record => {
            if let Some(list) = task.get("RecordFileList") {
                s.files = files(list)?;
            }
        }
        Kind::Webcast => {
            s.max_running_time_s = int(task, "MaxRunningTime")?;
            s.user_id = string(task, "UserId")?;
        }
    }
    Ok(s)
}

fn files(list: &Value) -> Result<Vec<RecordFile>, FieldError> {
    let items = match list {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(FieldError::new("RecordFileList", "an array", other)),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |e: FieldError| e.within(&format!("RecordFileList[{i}]"));
            let obj = match item {
                Value::Object(o) => o,
                other => {
                    return Err(FieldError::new(
                        &format!("RecordFileList[{i}]"),
                        "an object",
                        other,
                    ))
                }
            };
            Ok(RecordFile {
                vid: string(obj, "Vid").map_err(at)?.filter(|v| !v.is_empty()),
                object_key: string(obj, "ObjectKey")
                    .map_err(at)?
                    .filter(|k| !k.is_empty()),
                duration_ms: int(obj, "Duration").map_err(at)?,
                size_bytes: int(obj, "Size").map_err(at)?,
                start_time_ms: int(obj, "StartTime").map_err(at)?,
            })
        })
        .collect()
}

/// A field of the wrong type: its path, what was expected, what was found.
#[derive(Debug)]
struct FieldError {
    path: String,
    expected: &'static str,
    found: String,
}

impl FieldError {
    fn new(path: &str, expected: &'static str, found: &Value) -> Self {
        let found = match found {
            Value::String(s) => format!("the string \"{}\"", truncate_to(s, 40)),
            Value::Number(n) => format!("the number {n}"),
            other => type_name(other).to_string(),
        };
        FieldError {
            path: path.to_string(),
            expected,
            found,
        }
    }

    /// The same error, seen from the object that holds this one.
    fn within(mut self, parent: &str) -> Self {
        self.path = format!("{parent}.{}", self.path);
        self
    }

    fn describe(&self) -> String {
        format!(
            "{} should be {} but is {}",
            self.path, self.expected, self.found
        )
    }
}

/// An optional 64-bit integer: a JSON integer, an integral float, or a decimal string.
fn int(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, FieldError> {
    let v = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let parsed = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(i) => Ok(Some(i)),
        None => Err(FieldError::new(key, "a 64-bit integer", v)),
    }
}

/// An optional string (`null` and absent are `None`).
fn string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(FieldError::new(key, "a string", other)),
    }
}

/// A string field of the envelope itself, made one line and cut to `max` characters
/// (lenient: anything but a string is ignored).
fn opt_str(obj: &Map<String, Value>, key: &str, max: usize) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) => Some(truncate_to(&one_line(s), max)),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Control characters (newlines included) become spaces, so a message stays one log line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters; a cut string ends with `…`.
fn truncate_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_to("héllo", 2), "hé…");
        assert_eq!(truncate_to("héllo", 5), "héllo");
        assert_eq!(truncate_to("", 0), "");
    }
}
