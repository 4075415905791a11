//! Prometheus metrics, served on `admin_listen` at `/metrics` (with `/healthz` and `/readyz`).
//! Each counter is an atomic; a labelled family finds its counter under a read lock first
//! (`Family::get_or_create`), so the hot path takes a shared lock, never an exclusive one once
//! every label has been seen.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// The proxy's counters.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    logins: Family<Labels, Counter>,
    verifies: Family<Labels, Counter>,
    rejected: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every counter.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dap");
        let requests = Family::<Labels, Counter>::default();
        let logins = Family::<Labels, Counter>::default();
        let verifies = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests on the proxy port by outcome",
            requests.clone(),
        );
        registry.register("logins", "Login callbacks by result", logins.clone());
        registry.register(
            "verify",
            "verify (auth_request) answers by result",
            verifies.clone(),
        );
        let rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Client connections turned away at limits.max_connections",
            rejected.clone(),
        );
        Metrics {
            rejected,
            registry,
            requests,
            logins,
            verifies,
        }
    }

    /// Counts a request by outcome (`proxied`, `skipped`, `redirected`, `unauthenticated`, `forbidden`, `auth`, `not_found`).
    pub fn request(&self, outcome: &'static str) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Counts a login callback by result.
    pub fn login(&self, result: &'static str) {
        self.logins.get_or_create(&[("result", result)]).inc();
    }

    /// Counts a verify answer by result.
    pub fn verify(&self, result: &'static str) {
        self.verifies.get_or_create(&[("result", result)]).inc();
    }

    /// Counts a connection turned away at `limits.max_connections`.
    pub fn connection_rejected(&self) {
        self.rejected.inc();
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
