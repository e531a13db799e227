//! One request in, one [`Reply`] out.
//!
//! The order of checks, and the answer to each failure:
//!
//! 1. signature (when [`SimOptions::verify_signatures`](super::SimOptions)): the verifier's
//!    vendor code, HTTP 401/400/403;
//! 2. `GET /` with a known `Action`, else 404 `InvalidActionOrVersion`;
//! 3. the action's sliding-second QPS limit: 429 `FlowLimitExceeded.QPSOverLimit`;
//! 4. a known `Version` for the action, else 404 `InvalidActionOrVersion`;
//! 5. an injected fault matching the request, if any (see [`super::fault`]);
//! 6. `AppId`, `RoomId` (and `TaskId` for records) present: 400 `MissingParameter`; IDs
//!    matching `[a-zA-Z0-9_@.-]{1,128}`: 400 `InvalidParameter.Illegal…`;
//! 7. the task (for a webcast request without TaskId, the room's newest started task):
//!    unknown, not started yet, or started over 72 h ago → HTTP **400**
//!    `InvalidParameter.ErrorActiveTaskNotFound` (the vendor documents no status for it; 400 is
//!    what its other `InvalidParameter.*` codes use, so clients must classify on `Code`);
//!    found → 200 with `Result`.
//!
//! Every request naming a known action is counted and logged with the outcome a correct
//! client should record.

use std::time::Duration;

use bytes::Bytes;
use hyper::HeaderMap;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::fault::Fault;
use super::traffic::RequestRecord;
use super::{lock, read, Simulator, SERVICE};
use crate::model::{Action, Kind, Outcome};

/// What the simulator was asked.
#[derive(Debug, Clone, Copy)]
pub struct SimRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw (still percent-encoded) query string, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// When it arrived (tokio's clock).
    pub arrived: Instant,
}

/// What the simulator answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Wait this long (tokio time) before answering.
    pub delay: Option<Duration>,
    /// Close (reset) the connection instead of answering.
    pub reset: bool,
    /// What a correct client should make of this answer.
    pub outcome: Outcome,
}

/// An answer before serialization.
struct Answer {
    status: u16,
    body: Value,
    outcome: Outcome,
}

/// The envelope's fixed fields.
struct Meta<'a> {
    request_id: String,
    action: &'a str,
    version: &'a str,
    region: &'a str,
}

impl Meta<'_> {
    fn json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("RequestId".into(), json!(self.request_id));
        m.insert("Action".into(), json!(self.action));
        m.insert("Version".into(), json!(self.version));
        m.insert("Service".into(), json!(SERVICE));
        m.insert("Region".into(), json!(self.region));
        m
    }

    fn ok(&self, result: Value) -> Answer {
        let mut env = Map::new();
        env.insert("ResponseMetadata".into(), Value::Object(self.json()));
        env.insert("Result".into(), result);
        Answer {
            status: 200,
            body: Value::Object(env),
            outcome: Outcome::Success,
        }
    }

    fn error(&self, status: u16, code: &str, message: &str) -> Answer {
        let mut meta = self.json();
        meta.insert("Error".into(), json!({ "Code": code, "Message": message }));
        let mut env = Map::new();
        env.insert("ResponseMetadata".into(), Value::Object(meta));
        Answer {
            status,
            body: Value::Object(env),
            outcome: classify(status, code),
        }
    }
}

/// The outcome a correct client gives an error answer: the code decides, then the status
/// (the exporter's own classification, [`crate::volc::parse::error_outcome`]).
pub fn classify(status: u16, code: &str) -> Outcome {
    crate::volc::parse::error_outcome(code, status)
}

/// Decoded query parameters, first occurrence of each name.
struct Params(Vec<(String, String)>);

impl Params {
    /// Decoded as the signature verifier reads the query (`+` is a space).
    fn parse(raw: &str) -> Self {
        Params(super::verify::parse_query(raw))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Present and non-empty.
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

use crate::model::is_valid_id as valid_id;

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

impl Simulator {
    /// Answers one request (and counts and logs it). Pure apart from the simulator's state:
    /// the server only adds the delay and the reset.
    pub fn answer(&self, req: &SimRequest<'_>) -> Reply {
        let params = Params::parse(req.query);
        let action_raw = params.get("Action").unwrap_or("");
        let action = Action::ALL.into_iter().find(|a| a.as_str() == action_raw);
        let options = self.options();
        let seq = self
            .request_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let meta = Meta {
            request_id: request_id(self.clock.now_ms(), seq),
            action: action_raw,
            version: params.get("Version").unwrap_or(""),
            region: &options.region,
        };
        let reply = self.decide(req, &params, action, &meta, &options);
        if let Some(action) = action {
            self.traffic.record(
                action,
                RequestRecord {
                    at: req.arrived,
                    outcome: reply.outcome,
                },
                options.request_log_capacity,
            );
        }
        reply
    }

    fn decide(
        &self,
        req: &SimRequest<'_>,
        params: &Params,
        action: Option<Action>,
        meta: &Meta<'_>,
        options: &super::SimOptions,
    ) -> Reply {
        if options.verify_signatures {
            if let Err((status, code, message)) = self.verify_signature(req, options) {
                return finish(meta.error(status, &code, &message));
            }
        }
        let Some(action) = action.filter(|_| req.method == "GET" && req.path == "/") else {
            return finish(no_such_operation(meta));
        };
        if !self
            .traffic
            .admit(action, req.arrived, options.qps_limit[action])
        {
            return finish(throttled(meta));
        }
        if !action.versions().contains(&meta.version) {
            return finish(no_such_operation(meta));
        }
        let (app, room, task) = (
            params.value("AppId"),
            params.value("RoomId"),
            params.value("TaskId"),
        );
        let fault = lock(&self.faults).take(action, app, room, task);
        let fault = match fault {
            None => None,
            Some(Fault::HttpError { status, code }) => {
                return finish(meta.error(status, &code, "injected fault"))
            }
            Some(Fault::ErrorInOk { code }) => {
                let mut a = meta.error(200, &code, "injected fault");
                a.outcome = classify(0, &code);
                return finish(a);
            }
            Some(Fault::Throttle) => return finish(throttled(meta)),
            Some(Fault::HtmlBadGateway) => {
                return Reply {
                    status: 502,
                    content_type: "text/html",
                    body: Bytes::from_static(HTML_502.as_bytes()),
                    delay: None,
                    reset: false,
                    outcome: Outcome::ServerError,
                }
            }
            Some(Fault::ResetConnection) => {
                return Reply {
                    status: 500,
                    content_type: "text/plain",
                    body: Bytes::new(),
                    delay: None,
                    reset: true,
                    outcome: Outcome::NetworkError,
                }
            }
            Some(other) => Some(other),
        };
        let answer = self.lookup(action, app, room, task, meta);
        match fault {
            None => finish(answer),
            Some(fault) => apply(fault, answer),
        }
    }

    fn lookup(
        &self,
        action: Action,
        app: Option<&str>,
        room: Option<&str>,
        task: Option<&str>,
        meta: &Meta<'_>,
    ) -> Answer {
        let kind = action.kind();
        let missing = [("AppId", app), ("RoomId", room)]
            .into_iter()
            .chain((kind == Kind::Record).then_some(("TaskId", task)))
            .find(|(_, v)| v.is_none());
        if let Some((name, _)) = missing {
            return meta.error(
                400,
                "MissingParameter",
                &format!("The request must contain parameter {name}"),
            );
        }
        let (app, room) = (app.unwrap_or(""), room.unwrap_or(""));
        for (value, code) in [
            (Some(app), "InvalidParameter.IllegalAppId"),
            (Some(room), "InvalidParameter.IllegalRoomID"),
            (task, "InvalidParameter.IllegalTaskID"),
        ] {
            if let Some(v) = value {
                if !valid_id(v) {
                    return meta.error(400, code, "The parameter is not valid");
                }
            }
        }
        let now = self.clock.now_ms();
        let store = read(&self.tasks);
        let found = match task {
            Some(task) => {
                store
                    .by_key
                    .get(&(kind, app.to_owned(), room.to_owned(), task.to_owned()))
            }
            None => store
                .webcast_rooms
                .get(&(app.to_owned(), room.to_owned()))
                .and_then(|ids| {
                    ids.iter()
                        .filter_map(|id| {
                            store
                                .by_key
                                .get(&(kind, app.to_owned(), room.to_owned(), id.clone()))
                        })
                        .filter(|t| t.start_ms <= now)
                        .max_by_key(|t| t.start_ms)
                }),
        };
        match found.and_then(|t| t.result_json(now)) {
            Some(result) => meta.ok(result),
            None => meta.error(
                400,
                "InvalidParameter.ErrorActiveTaskNotFound",
                "The task does not exist or was started more than 72 hours ago",
            ),
        }
    }

    /// Checks the request's V4 signature against the accepted keys, at the crate's wall time
    /// (the client signs with it; the simulator's own clock may be far ahead in tests).
    fn verify_signature(
        &self,
        req: &SimRequest<'_>,
        options: &super::SimOptions,
    ) -> Result<(), (u16, String, String)> {
        // Header values that are not visible ASCII cannot be part of a valid signature; they
        // are left out, which makes the check fail if one was signed.
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let verify_req = super::verify::VerifyRequest {
            method: req.method,
            path: req.path,
            raw_query: req.query,
            headers: &headers,
            body: &[],
            region: Some(&options.region),
            service: SERVICE,
        };
        super::verify::verify(
            &verify_req,
            |ak| self.lookup_key(ak),
            crate::clock::now(),
            options.max_skew,
        )
        .map(drop)
        .map_err(|e| (e.http_status(), e.code().to_owned(), e.to_string()))
    }
}

fn throttled(meta: &Meta<'_>) -> Answer {
    meta.error(
        429,
        "FlowLimitExceeded.QPSOverLimit",
        "Request rate exceeds the action's QPS limit",
    )
}

fn request_id(now_ms: i64, seq: u64) -> String {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year][month][day][hour][minute][second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| "00000000000000".into());
    format!("{stamp}{seq:018X}")
}

fn serialize(value: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail (its keys are strings).
    serde_json::to_vec(value).unwrap_or_default()
}

fn finish(answer: Answer) -> Reply {
    Reply {
        status: answer.status,
        content_type: "application/json",
        body: Bytes::from(serialize(&answer.body)),
        delay: None,
        reset: false,
        outcome: answer.outcome,
    }
}

/// Applies a fault that changes the normal answer rather than replacing it.
fn apply(fault: Fault, mut answer: Answer) -> Reply {
    match fault {
        Fault::Slow(delay) => {
            let mut r = finish(answer);
            r.delay = Some(delay);
            r
        }
        Fault::MalformedJson => {
            let text = String::from_utf8_lossy(&serialize(&answer.body)).replacen(':', "=", 1);
            Reply {
                status: 200,
                outcome: Outcome::DecodeError,
                body: Bytes::from(text),
                ..finish(answer)
            }
        }
        Fault::TruncatedJson => {
            let mut bytes = serialize(&answer.body);
            bytes.truncate(bytes.len() / 2);
            Reply {
                status: 200,
                outcome: Outcome::DecodeError,
                body: Bytes::from(bytes),
                ..finish(answer)
            }
        }
        Fault::HugeBody { bytes } => {
            if let Value::Object(env) = &mut answer.body {
                env.insert("Padding".into(), Value::String("x".repeat(bytes)));
            }
            answer.outcome = Outcome::DecodeError;
            finish(answer)
        }
        Fault::WebcastSpelling => {
            if let Some(result) = answer.body.get_mut("Result").and_then(Value::as_object_mut) {
                rename(result, "WebCastTask", "WebcastTask");
            }
            finish(answer)
        }
        Fault::ShortConfigSpellings => {
            for task in tasks_mut(&mut answer.body) {
                rename(task, "MonitorConfig", "Monitor");
                rename(task, "EventNotifyConfig", "EventNotify");
            }
            finish(answer)
        }
        Fault::ExtraFields => {
            add_extra_fields(&mut answer.body);
            finish(answer)
        }
        Fault::MissingOptionalFields => {
            remove_optional_fields(&mut answer.body);
            finish(answer)
        }
        Fault::LargeNumbers => {
            for task in tasks_mut(&mut answer.body) {
                for file in files_mut(task) {
                    bump(file, "Size", 3 << 32);
                    bump(file, "Duration", 1 << 32);
                }
            }
            finish(answer)
        }
        // Handled before the lookup; answered normally if they ever get here.
        Fault::HttpError { .. }
        | Fault::ErrorInOk { .. }
        | Fault::Throttle
        | Fault::HtmlBadGateway
        | Fault::ResetConnection => finish(answer),
    }
}

fn rename(obj: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = obj.remove(from) {
        obj.insert(to.into(), v);
    }
}

fn bump(obj: &mut Map<String, Value>, key: &str, by: i64) {
    let old = obj.get(key).and_then(Value::as_i64).unwrap_or(0);
    obj.insert(key.into(), json!(old.saturating_add(by)));
}

/// The task objects in an envelope (`Result.RecordTask`, `Result.WebCastTask` or
/// `Result.WebcastTask`).
fn tasks_mut(body: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    body.get_mut("Result")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|r| r.iter_mut())
        .filter(|(k, _)| matches!(k.as_str(), "RecordTask" | "WebCastTask" | "WebcastTask"))
        .filter_map(|(_, v)| v.as_object_mut())
}

fn files_mut(task: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    task.get_mut("RecordFileList")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
        .filter_map(Value::as_object_mut)
}

fn add_extra_fields(body: &mut Value) {
    if let Some(env) = body.as_object_mut() {
        env.insert(
            "TraceContext".into(),
            json!({"Sampled": true, "Spans": [1, 2]}),
        );
    }
    if let Some(meta) = body
        .get_mut("ResponseMetadata")
        .and_then(Value::as_object_mut)
    {
        meta.insert("RequestTime".into(), json!("2024-01-01T00:00:00Z"));
        if let Some(err) = meta.get_mut("Error").and_then(Value::as_object_mut) {
            err.insert("CodeN".into(), json!(10_001));
            err.insert("Data".into(), json!({"Hint": null}));
        }
    }
    if let Some(result) = body.get_mut("Result").and_then(Value::as_object_mut) {
        result.insert("BusinessId".into(), json!("biz-1"));
    }
    for task in tasks_mut(body) {
        task.insert(
            "Layout".into(),
            json!({"Mode": 0, "Regions": [], "Extra": null}),
        );
        task.insert("FutureFlag".into(), json!(true));
        for file in files_mut(task) {
            file.insert("Bucket".into(), json!("sim-bucket"));
            file.insert("Checksum".into(), Value::Null);
        }
    }
}

fn remove_optional_fields(body: &mut Value) {
    if let Some(meta) = body
        .get_mut("ResponseMetadata")
        .and_then(Value::as_object_mut)
    {
        meta.remove("Service");
        meta.remove("Region");
    }
    for task in tasks_mut(body) {
        if task.get("EndTime").and_then(Value::as_i64) == Some(0) {
            task.remove("EndTime");
        }
        if task.get("StopReason").and_then(Value::as_str) == Some("") {
            task.remove("StopReason");
        }
        for key in [
            "UserId",
            "SourceURL",
            "MaxRunningTime",
            "VideoSolutions",
            "MonitorConfig",
            "EventNotifyConfig",
        ] {
            task.remove(key);
        }
        for file in files_mut(task) {
            for key in ["Vid", "ObjectKey"] {
                if file.get(key).and_then(Value::as_str) == Some("") {
                    file.remove(key);
                }
            }
            for key in [
                "StartTime",
                "StreamList",
                "VideoCodec",
                "AudioCodec",
                "VideoWidth",
                "VideoHeight",
            ] {
                file.remove(key);
            }
        }
        if task
            .get("RecordFileList")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            task.remove("RecordFileList");
        }
    }
}

/// The answer for an Action/Version pair the API does not have.
fn no_such_operation(meta: &Meta<'_>) -> Answer {
    meta.error(
        404,
        "InvalidActionOrVersion",
        &format!(
            "Could not find operation {} for version {}",
            meta.action, meta.version
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_the_spec() {
        assert_eq!(
            classify(429, "FlowLimitExceeded.QPSOverLimit"),
            Outcome::Throttled
        );
        assert_eq!(
            classify(200, "AccountFlowLimitExceeded"),
            Outcome::Throttled
        );
        assert_eq!(classify(401, "SignatureDoesNotMatch"), Outcome::AuthError);
        assert_eq!(
            classify(403, "AccessDenied.RecordNotEnabled"),
            Outcome::AuthError
        );
        assert_eq!(
            classify(400, "InvalidParameter.ErrorActiveTaskNotFound"),
            Outcome::NotFound
        );
        assert_eq!(
            classify(503, "ServiceUnavailableTemp"),
            Outcome::ServerError
        );
        assert_eq!(classify(200, "InternalError"), Outcome::ServerError);
        assert_eq!(classify(400, "MissingParameter"), Outcome::ClientError);
    }

    #[test]
    fn params_decode_and_ids_validate() {
        let p = Params::parse("Action=GetRecordTask&RoomId=user%40example.com&TaskId=&X");
        assert_eq!(p.get("RoomId"), Some("user@example.com"));
        assert_eq!(p.value("TaskId"), None);
        assert_eq!(p.get("X"), Some(""));
        assert!(valid_id("rec.task-01_@x"));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn request_ids_carry_the_time() {
        assert_eq!(
            request_id(1_704_067_200_000, 255),
            concat!("20240101000000", "0000000000000000FF")
        );
    }
}
