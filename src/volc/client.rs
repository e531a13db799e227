//! The HTTP client (reqwest, rustls): one signed GET per attempt, per-request timeout, body cap,
//! retries with jittered exponential backoff, every attempt inside the action's budget.
//!
//! - Each attempt (`attempt_with`) sends exactly one request and classifies the answer with
//!   [`parse::classify`]; it knows nothing of budgets. Every attempt is counted in
//!   [`Telemetry::observe_request`] with its outcome and latency.
//! - [`Client::fetch`] takes a slot from the action's [`Limiter`] before *every* attempt (so
//!   retries spend budget like first tries), retries server errors, timeouts, network errors and
//!   throttling (after telling the limiter) per the [`RetryPolicy`], and returns at once on
//!   anything else. [`Client::fetch_acquired`] is the same for a caller that already holds the
//!   first slot.
//!
//! The client has no concurrency limit of its own: the caller bounds requests in flight.
//! Every attempt takes the credentials current at that moment from its [`CredentialsHandle`],
//! so rotated credentials are used from the next request on, with no restart. An attempt
//! refused as `auth_error` makes [`Client::fetch`] re-read the `*_file` credentials at once;
//! if they changed (a token rotated just before the old one was refused), the request is sent
//! once more with the new ones, in the budget like any retry, so the poll does not fail.
//! Secrets stay inside: the `Authorization` and `X-Security-Token` headers are marked
//! sensitive, errors are built from status, code and message only, and a vendor message that
//! echoes the secret key or the session token has it replaced by `<redacted>`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, HOST};
use tokio::time::Instant;

use crate::budget::Limiter;
use crate::config::{ApiSettings, RetryPolicy};
use crate::credentials::{Credentials, CredentialsHandle};
use crate::metrics::own::Telemetry;
use crate::model::{Outcome, PerAction, TargetKey, TaskSnapshot};
use crate::volc::parse::{self, ApiError};
use crate::volc::sign::{self, SignRequest, Signed};

/// Answers larger than this are not read: a [`Outcome::DecodeError`]. Real answers are a few KiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

const USER_AGENT: &str = concat!("volcengine-rtc-exporter/", env!("CARGO_PKG_VERSION"));

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("api.endpoint scheme {0:?} is not supported (use http or https)")]
    Scheme(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// The OpenAPI client; cheap to share behind an `Arc`.
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    host: String,
    region: String,
    service: String,
    versions: PerAction<String>,
    timeout: Duration,
    creds: CredentialsHandle,
    limiters: PerAction<Arc<Limiter>>,
    telemetry: Arc<Telemetry>,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .field("credentials", &self.creds)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `api`, signing with `creds` (fixed [`Credentials`], or a
    /// [`CredentialsHandle`] whose current values each request reads), spending budget from
    /// `limiters` (one per action) and counting attempts in `telemetry`.
    pub fn new(
        api: &ApiSettings,
        creds: impl Into<CredentialsHandle>,
        limiters: PerAction<Arc<Limiter>>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Client, ClientError> {
        let scheme = api.endpoint.scheme.as_str();
        if scheme != "http" && scheme != "https" {
            return Err(ClientError::Scheme(scheme.to_string()));
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(api.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(ClientError::Build)?;
        Ok(Client {
            http,
            base_url: api.endpoint.base_url(),
            host: api.endpoint.host_header(),
            region: api.region.clone(),
            service: api.service.clone(),
            versions: PerAction::new(|a| api.version_for(a).to_string()),
            timeout: api.timeout,
            creds: creds.into(),
            limiters,
            telemetry,
            retry: api.retry,
        })
    }

    /// The credentials this client signs with (rotate them through the handle).
    pub fn credentials(&self) -> &CredentialsHandle {
        &self.creds
    }

    /// The query parameters for `key`, unencoded.
    fn query<'a>(&'a self, key: &'a TargetKey) -> Vec<(&'a str, &'a str)> {
        let action = key.kind.action();
        let mut q = vec![
            ("Action", action.as_str()),
            ("Version", self.versions[action].as_str()),
            ("AppId", key.app_id.as_str()),
            ("RoomId", key.room_id.as_str()),
        ];
        if let Some(task) = &key.task_id {
            q.push(("TaskId", task.as_str()));
        }
        q
    }

    /// Sign the GET for `query` now with `creds`. The one place that talks to [`sign`].
    fn sign(&self, query: &[(&str, &str)], creds: &Credentials) -> Signed {
        sign::sign(
            &SignRequest {
                method: "GET",
                host: &self.host,
                path: "/",
                query,
                body: b"",
                region: &self.region,
                service: &self.service,
            },
            creds,
            crate::clock::now(),
        )
    }

    /// The headers of a signed request; secrets are marked sensitive.
    fn headers(&self, signed: &Signed, creds: &Credentials) -> Result<HeaderMap, ApiError> {
        let value = |v: &str, what: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                ApiError::new(
                    Outcome::ClientError,
                    None,
                    format!("{what} is not a valid HTTP header value"),
                )
            })
        };
        let mut h = HeaderMap::with_capacity(5);
        h.insert(HOST, value(&self.host, "the endpoint host")?);
        h.insert(
            HeaderName::from_static("x-date"),
            value(&signed.x_date, "X-Date")?,
        );
        h.insert(
            HeaderName::from_static("x-content-sha256"),
            value(&signed.content_sha256, "X-Content-Sha256")?,
        );
        let mut auth = value(&signed.authorization, "the Authorization header")?;
        auth.set_sensitive(true);
        h.insert(AUTHORIZATION, auth);
        if signed.signs_security_token() {
            if let Some(token) = &creds.session_token {
                let mut v = HeaderValue::from_str(token.expose()).map_err(|_| {
                    ApiError::new(
                        Outcome::AuthError,
                        None,
                        "the session token is not a valid HTTP header value",
                    )
                })?;
                v.set_sensitive(true);
                h.insert(HeaderName::from_static("x-security-token"), v);
            }
        }
        Ok(h)
    }

    /// One signed GET for `key` signed with `creds`, classified; no budget, no retry. Counted in
    /// telemetry. One snapshot of the credentials per attempt, so signature, token header and
    /// redaction agree.
    async fn attempt_with(
        &self,
        key: &TargetKey,
        creds: &Credentials,
    ) -> Result<TaskSnapshot, ApiError> {
        let action = key.kind.action();
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.exchange(key, creds)).await {
            Ok(Ok((status, body))) => parse::classify(key.kind, status, &body),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::new(
                Outcome::Timeout,
                None,
                format!("no complete answer within {:?}", self.timeout),
            )),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => e.outcome,
        };
        self.telemetry
            .observe_request(action, outcome, started.elapsed());
        result.map_err(|e| redact(e, creds))
    }

    /// Send the request and read the whole body (up to the cap).
    async fn exchange(
        &self,
        key: &TargetKey,
        creds: &Credentials,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let query = self.query(key);
        let signed = self.sign(&query, creds);
        let headers = self.headers(&signed, creds)?;
        let url = format!("{}/?{}", self.base_url, signed.query);
        let mut response = self
            .http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| transport_error(e, None))?;
        let status = response.status().as_u16();
        let too_big = || {
            ApiError::new(
                Outcome::DecodeError,
                Some(status),
                format!("HTTP {status} with a body over {} bytes", MAX_BODY_BYTES),
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::with_capacity(
            response
                .content_length()
                .map_or(4096, |n| n as usize)
                .min(MAX_BODY_BYTES),
        );
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(e, Some(status)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// One GET with retries, taking the action's budget before every attempt.
    pub async fn fetch(&self, key: &TargetKey) -> Result<TaskSnapshot, ApiError> {
        self.fetch_inner(key, false).await
    }

    /// [`Client::fetch`] for a caller that already took the first attempt's budget slot.
    pub async fn fetch_acquired(&self, key: &TargetKey) -> Result<TaskSnapshot, ApiError> {
        self.fetch_inner(key, true).await
    }

    async fn fetch_inner(
        &self,
        key: &TargetKey,
        first_acquired: bool,
    ) -> Result<TaskSnapshot, ApiError> {
        let action = key.kind.action();
        let limiter = &self.limiters[action];
        let attempts = self.retry.attempts.max(1);
        let mut made = 0;
        let mut renewed = false;
        loop {
            if made > 0 || !first_acquired {
                limiter.acquire().await;
            }
            made += 1;
            let used = self.creds.current();
            let e = match self.attempt_with(key, &used).await {
                Ok(snapshot) => return Ok(snapshot),
                Err(e) => e,
            };
            // Refused with credentials that were rotated just now: one more attempt (in the
            // budget) with the new ones, so a rotation costs no failed poll.
            if e.outcome == Outcome::AuthError && !renewed && self.renewed_since(&used).await {
                renewed = true;
                tracing::debug!(
                    action = action.as_str(),
                    app_id = %key.app_id,
                    room_id = %key.room_id,
                    task_id = key.task_id.as_deref().unwrap_or(""),
                    error = %e,
                    "refused with the previous credentials; trying again with the new ones"
                );
                continue;
            }
            if e.outcome == Outcome::Throttled {
                limiter.on_throttled();
            }
            let retryable = e.outcome.is_retryable() || e.outcome == Outcome::Throttled;
            if !retryable || made >= attempts {
                return Err(e);
            }
            let wait = self.retry.backoff(made);
            tracing::debug!(
                action = action.as_str(),
                app_id = %key.app_id,
                room_id = %key.room_id,
                task_id = key.task_id.as_deref().unwrap_or(""),
                attempt = made,
                backoff_ms = wait.as_millis() as u64,
                error = %e,
                "retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// After an authentication failure signed with `used`: re-reads the `*_file` credentials
    /// at once (off the runtime's threads: a hung network mount must not stall polling) and
    /// says whether other credentials are in use now, from that re-read or from the watcher.
    async fn renewed_since(&self, used: &Credentials) -> bool {
        if self.creds.watches_files() {
            let handle = self.creds.clone();
            let _ = tokio::task::spawn_blocking(move || handle.reload_now()).await;
        }
        *self.creds.current() != *used
    }
}

/// Replace any echo of the secret key or session token of `creds` in an error's text.
fn redact(mut e: ApiError, creds: &Credentials) -> ApiError {
    let secrets = [
        Some(creds.secret_access_key.expose()),
        creds.session_token.as_ref().map(|t| t.expose()),
    ];
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        for field in [Some(&mut e.message), e.code.as_mut(), e.request_id.as_mut()]
            .into_iter()
            .flatten()
        {
            if field.contains(secret) {
                *field = field.replace(secret, "<redacted>");
            }
        }
    }
    e
}

/// Classify a reqwest failure: timeouts, everything else on the wire is a network error.
fn transport_error(e: reqwest::Error, status: Option<u16>) -> ApiError {
    let outcome = if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_builder() {
        Outcome::ClientError
    } else {
        Outcome::NetworkError
    };
    ApiError::new(outcome, status, error_chain(&e.without_url()))
}

/// `error: cause: cause`, without repeating a cause already in its parent's text.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_cap_with_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(250));
        assert_eq!(p.ceiling(2), Duration::from_millis(500));
        assert_eq!(p.ceiling(3), Duration::from_secs(1));
        assert_eq!(p.ceiling(4), Duration::from_secs(2));
        assert_eq!(p.ceiling(40), Duration::from_secs(2));
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let b = p.backoff(2);
            assert!(b <= Duration::from_millis(500));
            distinct.insert(b.as_millis());
        }
        // Jittered: not one fixed value.
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn error_chain_skips_repeated_causes() {
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connection reset")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("request failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            error_chain(&Outer(Inner)),
            "request failed: connection reset"
        );
    }
}
