//! Runs the API server stand-in (tests only, never shipped) as a process, for
//! `agent/bench/idle-rss.sh`: one Ready node `bench-node` and a plan whose version that node
//! already runs, so an agent pointed at it settles into its idle loop.
//!
//! Prints the server URL on the first line, then `requests N` (API requests served so far)
//! every second, until stdin closes.

#[path = "../tests/support/apiserver_standin.rs"]
#[allow(dead_code)]
mod apiserver_standin;

use std::io::Write;
use std::time::Duration;

use apiserver_standin::{StandIn, NODES, PLANS, PODS};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let api = StandIn::start().await;
    api.seed(
        NODES,
        "",
        json!({"metadata": {"name": "bench-node", "labels": {"pool": "bench"}}, "spec": {},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    for i in 0..20 {
        api.seed(
            PODS,
            "default",
            json!({"metadata": {"name": format!("web-{i}"), "namespace": "default"},
                   "spec": {"nodeName": "bench-node", "containers": []}}),
        );
    }
    api.seed(
        PLANS,
        "",
        json!({"metadata": {"name": "bench"},
               "spec": {"version": "1", "bundleUrl": "http://127.0.0.1:1/none", "concurrency": 1}}),
    );
    println!("{}", api.url());
    std::io::stdout().flush().unwrap();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    });
    tokio::pin!(stdin_closed);
    loop {
        tokio::select! {
            _ = &mut stdin_closed => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                println!("requests {}", api.requests());
                std::io::stdout().flush().unwrap();
            }
        }
    }
}
