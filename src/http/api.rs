//! `/api/v1/targets` (`--web.enable-targets-api`): `GET` lists the targets as JSON
//! ([`targets_json`]); `POST` registers and `DELETE` unregisters the targets of its body, read
//! before its request takes a place, under one of [`MAX_UPLOADS`] upload slots, and parsed and
//! applied on the blocking pool. Errors answer as the Prometheus API does.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::app::{ApiRefusal, Shared, MAX_UPLOADS};
use super::body::{json, text, Answer, RequestBody};
use super::pages::{self, TargetRow};
use crate::clock::rfc3339_ms;
use crate::targets::{api, Source};

/// What a request to `/api/v1/targets` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ApiCall {
    /// The API is off (`404`).
    Off,
    /// `GET` or `HEAD`.
    List,
    /// `POST` or `DELETE`: a body to read.
    Write,
    /// Another method (`405`).
    Other,
}

impl ApiCall {
    pub(super) fn of(shared: &Shared, method: &Method) -> ApiCall {
        if !shared.app.options.enable_targets_api {
            ApiCall::Off
        } else if method == Method::GET || method == Method::HEAD {
            ApiCall::List
        } else if method == Method::POST || method == Method::DELETE {
            ApiCall::Write
        } else {
            ApiCall::Other
        }
    }
}

/// A registration body and the upload slot (one of [`MAX_UPLOADS`]) it holds until it has
/// been applied; or the answer refusing it (`503` with every slot taken, `408`, `413`, `400`).
pub(super) async fn read_upload(
    shared: &Shared,
    body: &mut RequestBody,
) -> Result<(Bytes, OwnedSemaphorePermit), Answer> {
    let Ok(slot) = shared.uploads.clone().try_acquire_owned() else {
        tracing::debug!(
            limit = MAX_UPLOADS,
            "request refused: too many uploads in flight"
        );
        return Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Limit of concurrent uploads reached ({MAX_UPLOADS}), try again later.\n"),
        ));
    };
    match body.read(api::MAX_BODY_BYTES).await {
        Ok(bytes) => Ok((bytes, slot)),
        Err(err) => Err(body_error(&err)),
    }
}

/// `GET /api/v1/targets`.
pub(super) async fn targets_list(shared: &Arc<Shared>) -> Answer {
    let job = shared.clone();
    match tokio::task::spawn_blocking(move || targets_json(&job.app.targets.target_rows())).await {
        Ok(body) => json(StatusCode::OK, body),
        Err(err) => {
            tracing::error!(error = %err, "listing the targets failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                api_error("internal", "listing the targets failed"),
            )
        }
    }
}

/// `POST` (register) or `DELETE` (unregister) `/api/v1/targets` with its body, parsed and
/// applied on the blocking pool while `_slot` (its upload slot) is held, so at most
/// [`MAX_UPLOADS`] bodies are in memory and parsed at once.
pub(super) async fn targets_write(
    shared: &Arc<Shared>,
    method: &Method,
    body: Bytes,
    _slot: OwnedSemaphorePermit,
) -> Answer {
    let targets = shared.app.targets.clone();
    let register = method == Method::POST;
    let done = tokio::task::spawn_blocking(move || {
        if register {
            let parsed = api::parse_register(&body).map_err(WriteError::Body)?;
            let count = parsed.len();
            let r = targets
                .register(parsed, Source::Api)
                .map_err(WriteError::Refused)?;
            tracing::info!(
                targets = count,
                added = r.added,
                existing = r.existing,
                "targets registered through the API"
            );
            Ok(serde_json::json!({"added": r.added, "existing": r.existing}))
        } else {
            let keys = api::parse_deregister(&body).map_err(WriteError::Body)?;
            let count = keys.len();
            let r = targets
                .unregister(keys, Source::Api)
                .map_err(WriteError::Refused)?;
            tracing::info!(
                targets = count,
                removed = r.removed,
                unknown = r.unknown,
                "targets unregistered through the API"
            );
            Ok(serde_json::json!({"removed": r.removed, "unknown": r.unknown}))
        }
    })
    .await;
    match done {
        Ok(Ok(data)) => json(
            StatusCode::OK,
            serde_json::json!({"status": "success", "data": data}).to_string(),
        ),
        Ok(Err(WriteError::Body(err))) => body_error(&err),
        Ok(Err(WriteError::Refused(refusal))) => json(
            StatusCode::NOT_IMPLEMENTED,
            api_error("unavailable", &refusal.to_string()),
        ),
        Err(err) => {
            tracing::error!(error = %err, "a registration API request failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                api_error("internal", "the request could not be completed"),
            )
        }
    }
}

/// Why a registration write was not applied.
enum WriteError {
    /// The body was refused (`400`, `413`).
    Body(api::BodyError),
    /// The targets could not be taken.
    Refused(ApiRefusal),
}

fn body_error(err: &api::BodyError) -> Answer {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, err.to_json())
}

/// `{"status":"error","errorType":kind,"error":message}`, as the Prometheus API answers.
pub(super) fn api_error(kind: &str, message: &str) -> String {
    serde_json::json!({"status": "error", "errorType": kind, "error": message}).to_string()
}

/// `GET /api/v1/targets`: `{"status":"success","data":[…]}`, one object per target with its
/// key, labels, sources, phase, health, task status, last poll (time, outcome, error) and next
/// due time. Times are RFC 3339 in UTC, `null` when unknown.
fn targets_json(rows: &[TargetRow]) -> String {
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let labels: serde_json::Map<String, serde_json::Value> = row
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().into()))
                .collect();
            serde_json::json!({
                "kind": row.kind.as_str(),
                "app_id": row.app_id,
                "room_id": row.room_id,
                "task_id": row.task_id,
                "labels": labels,
                "sources": row.sources,
                "phase": row.phase.as_str(),
                "health": health_str(row),
                "status": row.status,
                "stop_reason": row.stop_reason,
                "last_poll": row.last_poll_ms.map(rfc3339_ms),
                "last_outcome": row.last_outcome,
                "last_error": row.last_error,
                "next_due": row.next_due_ms.map(rfc3339_ms),
                "end_time": row.end_time_ms.map(rfc3339_ms),
            })
        })
        .collect();
    serde_json::json!({"status": "success", "data": data}).to_string()
}

fn health_str(row: &TargetRow) -> &'static str {
    match row.health() {
        pages::Health::Up => "up",
        pages::Health::Down => "down",
        pages::Health::Pending => "pending",
    }
}
