//! The exporter's own metrics (requests by outcome, latency, budget and rate gauges, scheduler
//! lag, targets by phase, build info, process metrics), kept in a `prometheus::Registry`.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::model::{Action, Outcome};

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
}

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new();
        let ns = "volcengine_rtc";
        let requests = IntCounterVec::new(
            Opts::new(
                "api_requests_total",
                "OpenAPI requests by action and outcome.",
            )
            .namespace(ns),
            &["action", "outcome"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "api_request_duration_seconds",
                "OpenAPI request latency, per attempt.",
            )
            .namespace(ns)
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["action"],
        )
        .expect("static metric definition");
        let budget = GaugeVec::new(
            Opts::new(
                "api_budget_requests_per_second",
                "Configured request budget per action.",
            )
            .namespace(ns),
            &["action"],
        )
        .expect("static metric definition");
        let rate_limit = GaugeVec::new(
            Opts::new(
                "api_rate_limit_requests_per_second",
                "Request rate in force now (below the budget after throttling).",
            )
            .namespace(ns),
            &["action"],
        )
        .expect("static metric definition");
        let scheduler_lag = GaugeVec::new(
            Opts::new(
                "scheduler_lag_seconds",
                "How overdue the most overdue target is; 0 while the budget keeps up.",
            )
            .namespace(ns),
            &["action"],
        )
        .expect("static metric definition");
        let targets = IntGaugeVec::new(
            Opts::new("targets", "Targets by kind and scheduling phase.").namespace(ns),
            &["kind", "phase"],
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new("exporter_build_info", "Build information; always 1.").namespace(ns),
            &["version", "revision"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(budget.clone()),
            Box::new(rate_limit.clone()),
            Box::new(scheduler_lag.clone()),
            Box::new(targets.clone()),
            Box::new(build_info.clone()),
        ] {
            registry.register(c).expect("unique static metric names");
        }
        for a in Action::ALL {
            for o in Outcome::ALL {
                requests.with_label_values(&[a.as_str(), o.as_str()]);
            }
            request_duration.with_label_values(&[a.as_str()]);
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::REVISION])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(pc));
        }
        Telemetry {
            registry,
            requests,
            request_duration,
            budget,
            rate_limit,
            scheduler_lag,
            targets,
            build_info,
        }
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

    /// Append the text exposition of every self-metric.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, out);
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
