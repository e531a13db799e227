//! The exporter's own metrics (requests by outcome, latency, budget and rate gauges, scheduler
//! lag, targets by phase, build info, process metrics), kept in a `prometheus::Registry`, and
//! encoded in either exposition format.

use std::sync::Arc;
use std::time::Duration;

use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::exposition::{push_float, push_header, push_label, Format};
use crate::model::{Action, Outcome};
use crate::state::{Op, Stats};

/// The namespace of every self-metric.
const NS: &str = "volcengine_rtc";

/// `volcengine_rtc_credentials_reloads_total{outcome}`, read from the credentials handle when
/// gathered.
struct CredentialsCollector {
    handle: crate::credentials::CredentialsHandle,
    desc: Vec<prometheus::core::Desc>,
}

impl CredentialsCollector {
    fn counter(&self) -> Option<IntCounterVec> {
        let c = IntCounterVec::new(
            Opts::new(
                "credentials_reloads_total",
                "Re-reads of the *_file credentials after a change: success (new ones in use) or failure (unreadable or empty; the old ones kept).",
            )
            .namespace(NS),
            &["outcome"],
        )
        .ok()?;
        c.with_label_values(&["success"])
            .inc_by(self.handle.reloads());
        c.with_label_values(&["failure"])
            .inc_by(self.handle.reload_failures());
        Some(c)
    }
}

impl prometheus::core::Collector for CredentialsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.counter().map(|c| c.collect()).unwrap_or_default()
    }
}

/// The store's self-metrics, made from [`Stats`] when gathered.
struct StorageCollector {
    stats: Arc<Stats>,
    open_failures: u64,
    descs: Vec<prometheus::core::Desc>,
}

impl StorageCollector {
    fn new(stats: Arc<Stats>, open_failures: u64) -> StorageCollector {
        let mut me = StorageCollector {
            stats,
            open_failures,
            descs: Vec::new(),
        };
        if let Some((errors, size, last)) = me.metrics() {
            use prometheus::core::Collector;
            me.descs = [errors.desc(), size.desc(), last.desc()]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        }
        me
    }

    fn metrics(&self) -> Option<(IntCounterVec, prometheus::IntGauge, prometheus::Gauge)> {
        let errors = IntCounterVec::new(
            Opts::new(
                "storage_errors_total",
                "Failed store operations by op (open, load, commit, prune); failed writes are retried.",
            )
            .namespace(NS),
            &["op"],
        )
        .ok()?;
        for op in Op::ALL {
            let extra = if op == Op::Open {
                self.open_failures
            } else {
                0
            };
            errors
                .with_label_values(&[op.as_str()])
                .inc_by(self.stats.errors(op) + extra);
        }
        let size = prometheus::IntGauge::with_opts(
            Opts::new("storage_size_bytes", "Size of the store file in bytes.").namespace(NS),
        )
        .ok()?;
        size.set(i64::try_from(self.stats.size_bytes()).unwrap_or(i64::MAX));
        let last = prometheus::Gauge::with_opts(
            Opts::new(
                "storage_last_commit_timestamp_seconds",
                "When the last store write transaction succeeded; 0 before the first.",
            )
            .namespace(NS),
        )
        .ok()?;
        last.set(self.stats.last_commit_ms().unwrap_or(0) as f64 / 1000.0);
        Some((errors, size, last))
    }
}

impl prometheus::core::Collector for StorageCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some((errors, size, last)) = self.metrics() else {
            return Vec::new();
        };
        let mut out = errors.collect();
        out.extend(size.collect());
        out.extend(last.collect());
        out
    }
}

/// The process collector's start-time gauge: the `_created` time of the counters that exist
/// from the start.
const START_TIME: &str = "process_start_time_seconds";

/// Handles to every self-metric; cheap to share behind an `Arc`.
pub struct Telemetry {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub budget: GaugeVec,
    pub rate_limit: GaugeVec,
    pub scheduler_lag: GaugeVec,
    pub targets: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub target_file_ok: IntGaugeVec,
    /// `config_last_reload_successful`: 1 when the last (re)load of the config took, 0 when it
    /// was refused and the running config kept.
    pub reload_successful: IntGauge,
    /// `config_last_reload_success_timestamp_seconds`: when the config last (re)loaded well.
    pub reload_success_timestamp: Gauge,
}

/// The options of self-metric `volcengine_rtc_NAME`.
fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NS)
}

/// A labelled counter whose definition is written in this file (so it cannot be refused).
fn int_counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(opts(name, help), labels).expect("static metric definition")
}

/// A labelled gauge whose definition is written in this file.
fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(opts(name, help), labels).expect("static metric definition")
}

/// A labelled integer gauge whose definition is written in this file.
fn int_gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(opts(name, help), labels).expect("static metric definition")
}

impl Telemetry {
    pub fn new() -> Self {
        let telemetry = Telemetry {
            registry: Registry::new(),
            requests: int_counter_vec(
                "api_requests_total",
                "OpenAPI requests by action and outcome.",
                &["action", "outcome"],
            ),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "api_request_duration_seconds",
                    "OpenAPI request latency, per attempt.",
                )
                .namespace(NS)
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["action"],
            )
            .expect("static metric definition"),
            budget: gauge_vec(
                "api_budget_requests_per_second",
                "Configured request budget per action.",
                &["action"],
            ),
            rate_limit: gauge_vec(
                "api_rate_limit_requests_per_second",
                "Request rate in force now (below the budget after throttling).",
                &["action"],
            ),
            scheduler_lag: gauge_vec(
                "scheduler_lag_seconds",
                "How overdue the most overdue target is; 0 while the budget keeps up.",
                &["action"],
            ),
            targets: int_gauge_vec(
                "targets",
                "Targets by kind and scheduling phase.",
                &["kind", "phase"],
            ),
            build_info: int_gauge_vec(
                "exporter_build_info",
                "Build information; always 1.",
                &["version", "revision"],
            ),
            target_file_ok: int_gauge_vec(
                "target_file_last_load_successful",
                "1 if the target file's last load succeeded; 0 if it failed (its previous targets are kept).",
                &["file"],
            ),
            reload_successful: IntGauge::with_opts(opts(
                "config_last_reload_successful",
                "Whether the last configuration reload attempt was successful.",
            ))
            .expect("static metric definition"),
            reload_success_timestamp: Gauge::with_opts(opts(
                "config_last_reload_success_timestamp_seconds",
                "Timestamp of the last successful configuration reload.",
            ))
            .expect("static metric definition"),
        };
        telemetry.register_own();
        telemetry.set_initial_values();
        telemetry
    }

    /// Registers the metrics this struct holds, and the process collector (on Linux).
    fn register_own(&self) {
        for c in [
            Box::new(self.target_file_ok.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.requests.clone()),
            Box::new(self.reload_successful.clone()),
            Box::new(self.reload_success_timestamp.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.budget.clone()),
            Box::new(self.rate_limit.clone()),
            Box::new(self.scheduler_lag.clone()),
            Box::new(self.targets.clone()),
            Box::new(self.build_info.clone()),
        ] {
            self.registry
                .register(c)
                .expect("unique static metric names");
        }
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = self.registry.register(Box::new(pc));
        }
    }

    /// Every action's request series present from the start (at 0), and the build info at 1.
    fn set_initial_values(&self) {
        for a in Action::ALL {
            for o in Outcome::ALL {
                self.requests.with_label_values(&[a.as_str(), o.as_str()]);
            }
            self.request_duration.with_label_values(&[a.as_str()]);
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::REVISION])
            .set(1);
    }

    /// Records a configuration (re)load: `ok` with the wall time `at_seconds` of a success, or
    /// a failure (the timestamp of the last success stays).
    pub fn record_reload(&self, ok: bool, at_seconds: f64) {
        self.reload_successful.set(i64::from(ok));
        if ok {
            self.reload_success_timestamp.set(at_seconds);
        }
    }

    /// Adds the durable store's self-metrics, read from `stats` at scrape time:
    /// `volcengine_rtc_storage_errors_total{op}`, `volcengine_rtc_storage_size_bytes`,
    /// `volcengine_rtc_storage_last_commit_timestamp_seconds` and the commit duration
    /// histogram. `open_failed` counts a store that could not be opened (the exporter then
    /// keeps its state in memory) under `op="open"`.
    pub fn register_storage(&self, stats: Arc<Stats>, open_failed: bool) {
        let collector = StorageCollector::new(stats.clone(), u64::from(open_failed));
        let _ = self.registry.register(Box::new(collector));
        let _ = self
            .registry
            .register(Box::new(stats.commit_duration().clone()));
    }

    /// Adds `volcengine_rtc_credentials_reloads_total{outcome}` for `handle`.
    pub fn register_credentials(&self, handle: crate::credentials::CredentialsHandle) {
        let mut collector = CredentialsCollector {
            handle,
            desc: Vec::new(),
        };
        if let Some(c) = collector.counter() {
            use prometheus::core::Collector;
            collector.desc = c.desc().into_iter().cloned().collect();
        }
        let _ = self.registry.register(Box::new(collector));
    }

    /// Adds a collector made elsewhere, e.g. the HTTP server's counters
    /// (`crate::http::HttpStats::collector`), which this module cannot name without an
    /// import cycle.
    pub fn register_collector(&self, collector: Box<dyn prometheus::core::Collector>) {
        let _ = self.registry.register(collector);
    }

    /// Adds `volcengine_rtc_callbacks_total{event_type,outcome}`.
    pub fn register_callbacks(&self, metrics: &crate::callbacks::CallbackMetrics) {
        let _ = metrics.register(&self.registry);
    }

    /// Count one request attempt and its latency.
    pub fn observe_request(&self, action: Action, outcome: Outcome, latency: Duration) {
        self.requests
            .with_label_values(&[action.as_str(), outcome.as_str()])
            .inc();
        self.request_duration
            .with_label_values(&[action.as_str()])
            .observe(latency.as_secs_f64());
    }

    /// Every self-metric's current value.
    pub fn gather(&self) -> Gathered {
        Gathered(self.registry.gather())
    }
}

/// The self-metrics as gathered at one moment.
pub struct Gathered(Vec<MetricFamily>);

impl Gathered {
    /// When this process started (`process_start_time_seconds`), where the process collector
    /// knows it: the `_created` time of every counter that exists from the start.
    pub fn start_time_seconds(&self) -> Option<f64> {
        let family = self.0.iter().find(|f| f.name() == START_TIME)?;
        let value = family.get_metric().first()?.get_gauge().get_value();
        (value > 0.0).then_some(value)
    }

    /// Append the families in `format`. No `# EOF`: the caller ends the page.
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        match format {
            // Encoding into a Vec cannot fail for well-formed families.
            Format::Text => drop(TextEncoder::new().encode(&self.0, out)),
            Format::OpenMetrics => self.encode_openmetrics(out),
        }
    }

    /// OpenMetrics 1.0: counters are named without `_total` in `# HELP`/`# TYPE` and get a
    /// `_created` sample (the process start time) after each `_total`.
    fn encode_openmetrics(&self, out: &mut Vec<u8>) {
        let created = self.start_time_seconds();
        let mut line = String::with_capacity(256);
        for family in &self.0 {
            let name = family.name();
            let kind = family.get_field_type();
            let (type_name, kind_name) = match kind {
                MetricType::COUNTER => (name.strip_suffix("_total").unwrap_or(name), "counter"),
                MetricType::GAUGE => (name, "gauge"),
                MetricType::HISTOGRAM => (name, "histogram"),
                MetricType::SUMMARY => (name, "summary"),
                MetricType::UNTYPED => (name, "unknown"),
            };
            push_header(
                out,
                Format::OpenMetrics,
                type_name,
                family.help(),
                kind_name,
            );
            for m in family.get_metric() {
                line.clear();
                match kind {
                    MetricType::COUNTER => {
                        let total = format!("{type_name}_total");
                        sample(&mut line, &total, m, None, m.get_counter().get_value());
                        if let Some(t) = created {
                            sample(&mut line, &format!("{type_name}_created"), m, None, t);
                        }
                    }
                    MetricType::GAUGE => {
                        sample(&mut line, name, m, None, m.get_gauge().get_value())
                    }
                    // The registry holds no untyped metrics (and the text encoder refuses them).
                    MetricType::UNTYPED => {}
                    MetricType::HISTOGRAM => {
                        let h = m.get_histogram();
                        let bucket = format!("{name}_bucket");
                        let mut inf_seen = false;
                        for b in h.get_bucket() {
                            let le = b.upper_bound();
                            inf_seen |= le.is_infinite() && le > 0.0;
                            let mut bound = String::new();
                            push_float(&mut bound, le);
                            if le.is_finite() && !bound.contains(['.', 'e']) {
                                bound.push_str(".0");
                            }
                            let count = b.cumulative_count() as f64;
                            sample(&mut line, &bucket, m, Some(("le", &bound)), count);
                        }
                        let count = h.get_sample_count() as f64;
                        if !inf_seen {
                            sample(&mut line, &bucket, m, Some(("le", "+Inf")), count);
                        }
                        sample(&mut line, &format!("{name}_count"), m, None, count);
                        sample(
                            &mut line,
                            &format!("{name}_sum"),
                            m,
                            None,
                            h.get_sample_sum(),
                        );
                    }
                    MetricType::SUMMARY => {
                        let s = m.get_summary();
                        for q in s.get_quantile() {
                            let mut quantile = String::new();
                            push_float(&mut quantile, q.quantile());
                            sample(&mut line, name, m, Some(("quantile", &quantile)), q.value());
                        }
                        let count = s.sample_count() as f64;
                        sample(&mut line, &format!("{name}_count"), m, None, count);
                        sample(&mut line, &format!("{name}_sum"), m, None, s.sample_sum());
                    }
                }
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
}

/// Append one sample line: `name{labels[,extra]} value`.
fn sample(line: &mut String, name: &str, m: &Metric, extra: Option<(&str, &str)>, value: f64) {
    line.push_str(name);
    let labels = m.get_label();
    if !labels.is_empty() || extra.is_some() {
        line.push('{');
        let mut first = true;
        for (k, v) in labels.iter().map(|l| (l.name(), l.value())).chain(extra) {
            if !first {
                line.push(',');
            }
            first = false;
            push_label(line, k, v);
        }
        line.push('}');
    }
    line.push(' ');
    push_float(line, value);
    line.push('\n');
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
