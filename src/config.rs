//! Configuration: the YAML file (SPEC §3) parsed into raw serde structs, then converted in one
//! step into typed, validated [`Settings`], reporting every problem at once with its place.
//!
//! SKELETON: the types below are the contract other modules code against; `load`/`parse` are
//! being implemented.

use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::Credentials;
use crate::model::{Action, Target};

/// The API endpoint split into parts: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    /// The `Host` header value as sent and signed: the port is kept unless it is the scheme's
    /// default (`:80` for http, `:443` for https).
    pub fn host_header(&self) -> String {
        match (self.scheme.as_str(), self.port) {
            (_, None) | ("http", Some(80)) | ("https", Some(443)) => self.host.clone(),
            (_, Some(p)) => format!("{}:{}", self.host, p),
        }
    }

    /// `scheme://host[:port]` with no trailing slash.
    pub fn base_url(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{}", self.scheme, self.host, p),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub endpoint: Endpoint,
    pub region: String,
    /// Always `rtc`.
    pub service: String,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub record_version: String,
    pub webcast_version: String,
}

impl ApiSettings {
    pub fn version_for(&self, action: Action) -> &str {
        match action {
            Action::GetRecordTask => &self.record_version,
            Action::GetWebCastTask => &self.webcast_version,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    pub active_interval: Duration,
    pub settle_interval: Duration,
    pub retention: Duration,
}

/// Where the credentials came from (for `check`; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Files,
    Inline,
    Environment,
    SharedFile(PathBuf),
}

/// Everything the exporter runs on, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub credentials: Credentials,
    pub credential_source: CredentialSource,
    /// Requests per second per action, indexed by [`Action::index`].
    pub budget: [f64; 2],
    pub schedule: ScheduleSettings,
    pub targets: Vec<Target>,
    /// Non-fatal findings (e.g. a budget above 60/s).
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn budget_for(&self, action: Action) -> f64 {
        self.budget[action.index()]
    }
}
