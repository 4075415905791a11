//! Prometheus metrics, served on `admin_listen` at `/metrics` (with `/healthz` and `/readyz`).
//!
//! The request path never takes a lock here: every label value it uses is known in advance
//! and its counter created at start-up, so counting is one atomic add (a value not known in
//! advance falls back to the family's own lookup). Latencies go into [`Histogram`], a fixed
//! set of atomic buckets. DingTalk calls (rare, and labelled by endpoint and errcode) use a
//! plain labelled family.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// A labelled counter family whose known label values are counted without a lock.
#[derive(Clone)]
struct Known {
    family: Family<Labels, Counter>,
    label: &'static str,
    known: Vec<(&'static str, Counter)>,
}

impl Known {
    fn new(label: &'static str, values: &[&'static str]) -> Known {
        let family = Family::<Labels, Counter>::default();
        let known = values
            .iter()
            .map(|v| (*v, family.get_or_create(&[(label, *v)]).clone()))
            .collect();
        Known {
            family,
            label,
            known,
        }
    }

    fn inc_by(&self, value: &'static str, n: u64) {
        match self.known.iter().find(|(k, _)| *k == value) {
            Some((_, c)) => {
                c.inc_by(n);
            }
            None => {
                self.family.get_or_create(&[(self.label, value)]).inc_by(n);
            }
        }
    }
}

/// Upper bounds (seconds) of the latency buckets: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram of atomic buckets: observing is a few atomic adds, never a lock.
/// Clones share the buckets.
#[derive(Clone, Debug, Default)]
pub struct Histogram(std::sync::Arc<Buckets>);

/// The shared counts behind a [`Histogram`].
#[derive(Debug, Default)]
pub struct Buckets {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d);
    }
}

impl Buckets {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&h.buckets)
            .map(|(b, c)| (b, c.load(Ordering::Relaxed)))
            .collect();
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let count = h.count.load(Ordering::Relaxed);
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The proxy's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Known,
    logins: Known,
    verifies: Known,
    sessions_ended: Known,
    sessions_created: Counter,
    rejected: Counter,
    redis_errors: Counter,
    dingtalk_calls: Family<[(&'static str, String); 2], Counter>,
    redis_latency: Histogram,
    upstream_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dap");
        let requests = Known::new(
            "outcome",
            &[
                "proxied",
                "skipped",
                "redirected",
                "unauthenticated",
                "forbidden",
                "auth",
                "not_found",
                "bad_request",
                "upstream_error",
                "store_unavailable",
            ],
        );
        let logins = Known::new(
            "result",
            &[
                "ok",
                "bad_state",
                "denied",
                "bad_request",
                "dingtalk_error",
                "inactive",
                "forbidden",
            ],
        );
        let verifies = Known::new(
            "result",
            &[
                "ok",
                "skip",
                "forbidden",
                "unauthenticated",
                "store_unavailable",
            ],
        );
        let sessions_ended = Known::new("reason", &["logout", "revoked"]);
        registry.register(
            "requests",
            "Requests on the proxy port by outcome",
            requests.family.clone(),
        );
        registry.register("logins", "Login callbacks by result", logins.family.clone());
        registry.register(
            "verify",
            "verify (auth_request) answers by result",
            verifies.family.clone(),
        );
        let sessions_created = Counter::default();
        registry.register(
            "sessions_created",
            "Sessions created by a login",
            sessions_created.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions ended, by reason (logout; revoked by revalidation)",
            sessions_ended.family.clone(),
        );
        let rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Client connections turned away at limits.max_connections",
            rejected.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Session-store calls to Redis that failed or timed out",
            redis_errors.clone(),
        );
        let redis_latency = Histogram::default();
        registry.register(
            "redis_latency_seconds",
            "Time of one session-store call to Redis",
            redis_latency.clone(),
        );
        let upstream_latency = Histogram::default();
        registry.register(
            "upstream_latency_seconds",
            "Time until the upstream's response headers arrived",
            upstream_latency.clone(),
        );
        let dingtalk_calls = Family::default();
        registry.register(
            "dingtalk_calls",
            "DingTalk API calls by endpoint and errcode (0 = success; a word for errors without one)",
            dingtalk_calls.clone(),
        );
        Metrics {
            registry,
            requests,
            logins,
            verifies,
            sessions_ended,
            sessions_created,
            rejected,
            redis_errors,
            dingtalk_calls,
            redis_latency,
            upstream_latency,
        }
    }

    /// Counts a request by outcome (`proxied`, `skipped`, `redirected`, …).
    pub fn request(&self, outcome: &'static str) {
        self.requests.inc_by(outcome, 1);
    }

    /// Counts a login callback by result.
    pub fn login(&self, result: &'static str) {
        self.logins.inc_by(result, 1);
        if result == "ok" {
            self.sessions_created.inc();
        }
    }

    /// Counts a verify answer by result.
    pub fn verify(&self, result: &'static str) {
        self.verifies.inc_by(result, 1);
    }

    /// Counts `n` sessions ended for `reason` (`logout`, `revoked`).
    pub fn sessions_ended(&self, reason: &'static str, n: u64) {
        self.sessions_ended.inc_by(reason, n);
    }

    /// Counts a connection turned away at `limits.max_connections`.
    pub fn connection_rejected(&self) {
        self.rejected.inc();
    }

    /// Records one Redis call: how long it took and whether it failed.
    pub fn redis_call(&self, took: Duration, ok: bool) {
        self.redis_latency.observe(took);
        if !ok {
            self.redis_errors.inc();
        }
    }

    /// Records the upstream's time to response headers.
    pub fn upstream(&self, took: Duration) {
        self.upstream_latency.observe(took);
    }

    /// Counts one DingTalk call to `endpoint` answered with `errcode`.
    pub fn dingtalk_call(&self, endpoint: &str, errcode: String) {
        self.dingtalk_calls
            .get_or_create(&[("endpoint", endpoint.to_string()), ("errcode", errcode)])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known and unknown label values both count; histograms render cumulative buckets.
    #[test]
    fn renders() {
        let m = Metrics::new();
        m.request("proxied");
        m.request("proxied");
        m.request("something_new");
        m.upstream(Duration::from_millis(3));
        m.upstream(Duration::from_secs(20));
        m.redis_call(Duration::from_micros(300), false);
        m.dingtalk_call("/gettoken", "0".into());
        let text = m.render();
        assert!(
            text.contains("dap_requests_total{outcome=\"proxied\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dap_requests_total{outcome=\"something_new\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dap_upstream_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dap_upstream_latency_seconds_bucket{le=\"10.0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dap_upstream_latency_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("dap_redis_errors_total 1"), "{text}");
        assert!(
            text.contains("dap_dingtalk_calls_total{endpoint=\"/gettoken\",errcode=\"0\"} 1"),
            "{text}"
        );
    }
}
