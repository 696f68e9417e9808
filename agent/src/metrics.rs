//! Prometheus metrics of one agent, served as text on `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::Phase;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    node: String,
    phase: Family<Labels, Gauge>,
    version: Family<Labels, Gauge>,
    attempts: Family<Labels, Gauge>,
    plan_failures: Family<Labels, Gauge>,
    failures: Family<Labels, Counter>,
    bytes: Family<Labels, Counter<u64, AtomicU64>>,
}

impl Metrics {
    pub fn new(node: &str) -> Arc<Self> {
        let mut registry = Registry::with_prefix("rkos_upgrade");
        let phase = Family::<Labels, Gauge>::default();
        let version = Family::<Labels, Gauge>::default();
        let attempts = Family::<Labels, Gauge>::default();
        let plan_failures = Family::<Labels, Gauge>::default();
        let failures = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter<u64, AtomicU64>>::default();
        registry.register(
            "phase",
            "1 for the phase this node's upgrade is in, 0 for the others",
            phase.clone(),
        );
        registry.register(
            "version_info",
            "The OS version the node runs and the one it is asked to run",
            version.clone(),
        );
        registry.register(
            "attempts",
            "Upgrade attempts to the current target",
            attempts.clone(),
        );
        registry.register(
            "plan_failures",
            "Failed plus RolledBack nodes of the plan for its current version",
            plan_failures.clone(),
        );
        registry.register(
            "node_failures",
            "Upgrades of this node that ended Failed or RolledBack",
            failures.clone(),
        );
        registry.register(
            "downloaded_bytes",
            "Bytes of upgrade bundles staged on this node",
            bytes.clone(),
        );
        Arc::new(Metrics {
            registry,
            node: node.to_string(),
            phase,
            version,
            attempts,
            plan_failures,
            failures,
            bytes,
        })
    }

    fn node_labels(&self) -> Labels {
        vec![("node".into(), self.node.clone())]
    }

    pub fn observe(&self, phase: Phase, current: &str, target: &str, attempts: u32) {
        for p in Phase::ALL {
            let mut l = self.node_labels();
            l.push(("phase".into(), p.as_str().into()));
            self.phase.get_or_create(&l).set(i64::from(p == phase));
        }
        // Versions are labels, so an old pair must go when it changes.
        self.version.clear();
        let mut l = self.node_labels();
        l.push(("current".into(), current.into()));
        l.push(("target".into(), target.into()));
        self.version.get_or_create(&l).set(1);
        self.attempts
            .get_or_create(&self.node_labels())
            .set(attempts.into());
    }

    pub fn plan_failures(&self, plan: &str, n: u32) {
        self.plan_failures
            .get_or_create(&vec![("plan".into(), plan.into())])
            .set(n.into());
    }

    pub fn failed(&self, phase: Phase) {
        let mut l = self.node_labels();
        l.push(("phase".into(), phase.as_str().into()));
        self.failures.get_or_create(&l).inc();
    }

    pub fn downloaded(&self, bytes: u64) {
        self.bytes.get_or_create(&self.node_labels()).inc_by(bytes);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `/metrics` and `/healthz` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_phase_versions_failures_bytes() {
        let m = Metrics::new("n1");
        m.observe(Phase::Staging, "1", "2", 1);
        m.observe(Phase::Succeeded, "2", "2", 1);
        m.downloaded(1234);
        m.failed(Phase::RolledBack);
        m.plan_failures("p", 1);
        let text = m.render();
        assert!(
            text.contains(r#"rkos_upgrade_phase{node="n1",phase="Succeeded"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"rkos_upgrade_phase{node="n1",phase="Staging"} 0"#));
        assert!(text.contains(r#"rkos_upgrade_version_info{node="n1",current="2",target="2"} 1"#));
        assert!(
            !text.contains(r#"current="1""#),
            "stale version series: {text}"
        );
        assert!(text.contains(r#"rkos_upgrade_downloaded_bytes_total{node="n1"} 1234"#));
        assert!(
            text.contains(r#"rkos_upgrade_node_failures_total{node="n1",phase="RolledBack"} 1"#)
        );
        assert!(text.contains(r#"rkos_upgrade_plan_failures{plan="p"} 1"#));
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn served_over_http() {
        let m = Metrics::new("n1");
        m.downloaded(7);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = tokio::spawn(serve(addr, m));
        let mut body = String::new();
        for _ in 0..50 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                s.read_to_string(&mut body).await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        server.abort();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("rkos_upgrade_downloaded_bytes_total{node=\"n1\"} 7"));
    }
}
