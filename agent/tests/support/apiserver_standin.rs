//! A Kubernetes API server STAND-IN, for tests only.
//!
//! A real API server cannot be run here, so this in-process HTTP server speaks the real
//! Kubernetes REST and watch protocol for exactly what the agent uses, with the semantics the
//! agent relies on:
//! - nodes (cluster), pods (namespaced, listed across namespaces with a `spec.nodeName` field
//!   selector), leases (coordination.k8s.io/v1, namespaced), and the two CRDs of
//!   upgrade.rkos.io/v1alpha1 (cluster) with their `/status` subresource;
//! - list (`labelSelector` equality terms, `fieldSelector` on any dotted path) with a
//!   `resourceVersion`; watch (`?watch=1&resourceVersion=N`, newline-delimited JSON events
//!   `{"type","object"}` from that version on, ended after `timeoutSeconds`);
//! - create (409 AlreadyExists), replace with an optimistic-concurrency check (409 Conflict on
//!   a stale `metadata.resourceVersion`), JSON merge patch (strategic merge patches are applied
//!   as merge patches: the agent's patches touch no lists), status-only writes through
//!   `/status` and status ignored elsewhere for the CRDs;
//! - delete with `preconditions.resourceVersion` (409), finalizers (deletionTimestamp first,
//!   gone when the last finalizer is removed), and background garbage collection of objects
//!   whose ownerReferences name the deleted object;
//! - pods/eviction (policy/v1): 201 and the pod deleted, or 429 TooManyRequests with a
//!   `DisruptionBudget` cause naming the budget when a PodDisruptionBudget it holds (namespace,
//!   matchLabels, minAvailable) would be violated.
//!
//! It also records what a test wants to assert on: the most NodeUpgrades ever seen past
//! `Waiting` at once, and the most nodes ever cordoned at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    pub name: String,
    pub match_labels: BTreeMap<String, String>,
    pub min_available: usize,
}

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    coll: String,
    ns: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// (collection, namespace, name) -> object. Collection is `group/version/plural`.
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Event>,
    pdbs: Vec<Pdb>,
    max_in_flight: usize,
    max_cordoned: usize,
    uid: u64,
    requests: u64,
}

pub struct Inner {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
}

/// A running stand-in; dropped with the test's runtime.
#[derive(Clone)]
pub struct StandIn {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

pub const NODES: &str = "/v1/nodes";
pub const PODS: &str = "/v1/pods";
pub const LEASES: &str = "coordination.k8s.io/v1/leases";
pub const PLANS: &str = "upgrade.rkos.io/v1alpha1/upgradeplans";
pub const NUS: &str = "upgrade.rkos.io/v1alpha1/nodeupgrades";

fn kind_of(plural: &str) -> Option<(&'static str, bool, bool)> {
    // (kind, namespaced, has a status subresource that main writes ignore)
    Some(match plural {
        "nodes" => ("Node", false, false),
        "pods" => ("Pod", true, false),
        "leases" => ("Lease", true, false),
        "upgradeplans" => ("UpgradePlan", false, true),
        "nodeupgrades" => ("NodeUpgrade", false, true),
        _ => return None,
    })
}

fn status_err(code: u16, reason: &str, message: &str) -> Response {
    status_err_details(code, reason, message, Value::Null)
}

fn status_err_details(code: u16, reason: &str, message: &str, details: Value) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if !details.is_null() {
        body["details"] = details;
    }
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

/// RFC 7386 JSON merge patch. Written here because it is ten lines and the stand-in should
/// not pull in a patch crate for it.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn get_path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}

fn label_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let labels = &obj["metadata"]["labels"];
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k).and_then(Value::as_str) != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            let v = v.trim_start_matches('=');
            labels.get(k).and_then(Value::as_str) == Some(v)
        } else {
            labels.get(term).is_some()
        }
    })
}

fn field_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        let v = v.trim_start_matches('=');
        let actual = get_path(obj, k).and_then(Value::as_str).unwrap_or("");
        actual == v
    })
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const IN_FLIGHT: [&str; 4] = ["Draining", "Staging", "Rebooting", "Verifying"];

impl Store {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(
        &mut self,
        tx: &broadcast::Sender<Event>,
        coll: &str,
        ns: &str,
        kind: &'static str,
        obj: &Value,
    ) {
        let ev = Event {
            rv: rv_of(obj),
            coll: coll.into(),
            ns: ns.into(),
            kind,
            object: obj.clone(),
        };
        self.history.push(ev.clone());
        let _ = tx.send(ev);
        self.record();
    }

    fn record(&mut self) {
        let in_flight = self
            .objects
            .iter()
            .filter(|((c, _, _), o)| {
                c == NUS && IN_FLIGHT.contains(&o["status"]["phase"].as_str().unwrap_or(""))
            })
            .count();
        self.max_in_flight = self.max_in_flight.max(in_flight);
        let cordoned = self
            .objects
            .iter()
            .filter(|((c, _, _), o)| c == NODES && o["spec"]["unschedulable"] == json!(true))
            .count();
        self.max_cordoned = self.max_cordoned.max(cordoned);
    }

    /// Removes an object (and, by garbage collection, what it owns).
    fn remove(&mut self, tx: &broadcast::Sender<Event>, key: &(String, String, String)) {
        if let Some(mut obj) = self.objects.remove(key) {
            let rv = self.bump();
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
            self.emit(tx, &key.0, &key.1, "DELETED", &obj);
            let owned: Vec<_> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in owned {
                self.delete_or_finalize(tx, &k);
            }
        }
    }

    fn delete_or_finalize(
        &mut self,
        tx: &broadcast::Sender<Event>,
        key: &(String, String, String),
    ) {
        let Some(obj) = self.objects.get(key) else {
            return;
        };
        let has_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                let rv = self.bump();
                let obj = self.objects.get_mut(key).unwrap();
                obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                let obj = obj.clone();
                self.emit(tx, &key.0, &key.1, "MODIFIED", &obj);
            }
        } else {
            self.remove(tx, key);
        }
    }
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap()
        .to_string()
}

struct Target {
    coll: String,
    api_version: String,
    kind: &'static str,
    namespaced: bool,
    status_sub: bool,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, group, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), String::new(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), g.to_string(), rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let (kind, namespaced, status_sub) = kind_of(plural)?;
    let version = api_version.rsplit('/').next().unwrap_or("v1");
    Some(Target {
        coll: format!("{group}/{version}/{plural}"),
        api_version,
        kind,
        namespaced,
        status_sub,
        ns,
        name,
        sub,
    })
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(t) = parse_path(uri.path()) else {
        return status_err(
            404,
            "NotFound",
            &format!("the stand-in does not serve {}", uri.path()),
        );
    };
    inner.store.lock().unwrap().requests += 1;
    if std::env::var_os("STANDIN_LOG").is_some() {
        eprintln!("{method} {uri}");
    }
    let ns = t.ns.clone().unwrap_or_default();
    match (&method, &t.name, t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            let watching = matches!(q.get("watch").map(String::as_str), Some("1") | Some("true"));
            if watching {
                watch(inner, t, q)
            } else {
                list(&inner, &t, &q)
            }
        }
        (&Method::POST, None, None) => create(&inner, &t, &body),
        (&Method::GET, Some(name), None) => {
            let s = inner.store.lock().unwrap();
            match s.objects.get(&(t.coll.clone(), ns, name.clone())) {
                Some(o) => ok_json(StatusCode::OK, o),
                None => status_err(404, "NotFound", &format!("{} {name:?} not found", t.kind)),
            }
        }
        (&Method::GET, Some(name), Some("status")) => {
            let s = inner.store.lock().unwrap();
            match s.objects.get(&(t.coll.clone(), ns, name.clone())) {
                Some(o) => ok_json(StatusCode::OK, o),
                None => status_err(404, "NotFound", &format!("{} {name:?} not found", t.kind)),
            }
        }
        (&Method::PUT, Some(name), sub) => replace(&inner, &t, name, sub, &body),
        (&Method::PATCH, Some(name), sub) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct.contains("merge-patch+json") {
                return status_err(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the stand-in applies merge and strategic-merge patches only, not {ct:?}"
                    ),
                );
            }
            patch(&inner, &t, name, sub, &body)
        }
        (&Method::DELETE, Some(name), None) => delete(&inner, &t, name, &body),
        (&Method::POST, Some(name), Some("eviction")) if t.kind == "Pod" => {
            evict(&inner, &ns, name)
        }
        _ => status_err(405, "MethodNotAllowed", &format!("{method} {}", uri.path())),
    }
}

fn matches_query(t: &Target, q: &HashMap<String, String>, ns: &str, obj: &Value) -> bool {
    (t.ns.is_none() || t.ns.as_deref() == Some(ns))
        && q.get("labelSelector").is_none_or(|s| label_match(obj, s))
        && q.get("fieldSelector").is_none_or(|s| field_match(obj, s))
}

fn list(inner: &Inner, t: &Target, q: &HashMap<String, String>) -> Response {
    let s = inner.store.lock().unwrap();
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|((c, ns, _), o)| *c == t.coll && matches_query(t, q, ns, o))
        .map(|(_, o)| o.clone())
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({
            "apiVersion": t.api_version,
            "kind": format!("{}List", t.kind),
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": items,
        }),
    )
}

fn watch(inner: Arc<Inner>, t: Target, q: HashMap<String, String>) -> Response {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(290u64);
    let (backlog, rx) = {
        let s = inner.store.lock().unwrap();
        let rx = inner.events.subscribe();
        let backlog: Vec<Event> = if from == 0 {
            // "Any version": the current state as ADDED events.
            s.objects
                .iter()
                .filter(|((c, _, _), _)| *c == t.coll)
                .map(|((c, ns, _), o)| Event {
                    rv: rv_of(o),
                    coll: c.clone(),
                    ns: ns.clone(),
                    kind: "ADDED",
                    object: o.clone(),
                })
                .collect()
        } else {
            s.history.iter().filter(|e| e.rv > from).cloned().collect()
        };
        (backlog, rx)
    };
    let last = backlog.iter().map(|e| e.rv).max().unwrap_or(from);
    let t = Arc::new(t);
    let q = Arc::new(q);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let line =
        |e: &Event| Bytes::from(format!("{}\n", json!({"type": e.kind, "object": e.object})));
    let t1 = t.clone();
    let q1 = q.clone();
    let first: Vec<Result<Bytes, std::io::Error>> = backlog
        .iter()
        .filter(|e| e.coll == t1.coll && matches_query(&t1, &q1, &e.ns, &e.object))
        .map(|e| Ok(line(e)))
        .collect();
    let live = futures::stream::unfold((rx, last), move |(mut rx, last)| {
        let t = t.clone();
        let q = q.clone();
        async move {
            loop {
                let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => return None,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => return None,
                    Ok(Ok(ev)) => ev,
                };
                if ev.rv <= last || ev.coll != t.coll || !matches_query(&t, &q, &ev.ns, &ev.object)
                {
                    continue;
                }
                let rv = ev.rv;
                return Some((Ok(line(&ev)), (rx, rv)));
            }
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::iter(first), live);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn create(inner: &Inner, t: &Target, body: &[u8]) -> Response {
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return status_err(400, "BadRequest", "body is not JSON");
    };
    let Some(name) = obj["metadata"]["name"].as_str().map(String::from) else {
        return status_err(422, "Invalid", "metadata.name is required");
    };
    let ns = if t.namespaced {
        t.ns.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let mut s = inner.store.lock().unwrap();
    let key = (t.coll.clone(), ns.clone(), name.clone());
    if s.objects.contains_key(&key) {
        return status_err(
            409,
            "AlreadyExists",
            &format!("{} {name:?} already exists", t.kind),
        );
    }
    let rv = s.bump();
    s.uid += 1;
    let uid = format!("uid-{}", s.uid);
    obj["apiVersion"] = json!(t.api_version);
    obj["kind"] = json!(t.kind);
    let meta = &mut obj["metadata"];
    meta["resourceVersion"] = json!(rv.to_string());
    meta["uid"] = json!(uid);
    meta["creationTimestamp"] = json!(now_rfc3339());
    meta["generation"] = json!(1);
    if t.namespaced {
        meta["namespace"] = json!(ns);
    }
    if t.status_sub {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    s.objects.insert(key, obj.clone());
    s.emit(&inner.events, &t.coll, &ns, "ADDED", &obj);
    ok_json(StatusCode::CREATED, &obj)
}

/// Keeps the parts a write may not change through this endpoint: status on the main
/// resource of a CRD with a status subresource, everything but status on `/status`.
fn guard(t: &Target, sub: Option<&str>, old: &Value, new: &mut Value) {
    if !t.status_sub {
        return;
    }
    if sub == Some("status") {
        let status = new.get("status").cloned();
        *new = old.clone();
        match status {
            Some(st) => new["status"] = st,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    } else {
        match old.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
}

fn store_update(
    inner: &Inner,
    s: &mut Store,
    t: &Target,
    key: (String, String, String),
    mut obj: Value,
) -> Response {
    let old = s.objects.get(&key).cloned().unwrap_or(Value::Null);
    // Identity fields are the server's.
    for f in ["uid", "creationTimestamp", "namespace", "name"] {
        if !old["metadata"][f].is_null() {
            obj["metadata"][f] = old["metadata"][f].clone();
        }
    }
    obj["apiVersion"] = json!(t.api_version);
    obj["kind"] = json!(t.kind);
    if !old["metadata"]["deletionTimestamp"].is_null() {
        obj["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"].clone();
    }
    let rv = s.bump();
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    s.objects.insert(key.clone(), obj.clone());
    s.emit(&inner.events, &t.coll, &key.1, "MODIFIED", &obj);
    let finalized = !obj["metadata"]["deletionTimestamp"].is_null()
        && obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
    if finalized {
        s.remove(&inner.events, &key);
    }
    ok_json(StatusCode::OK, &obj)
}

fn replace(inner: &Inner, t: &Target, name: &str, sub: Option<&str>, body: &[u8]) -> Response {
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return status_err(400, "BadRequest", "body is not JSON");
    };
    let ns = t.ns.clone().unwrap_or_default();
    let key = (t.coll.clone(), ns, name.to_string());
    let mut s = inner.store.lock().unwrap();
    let Some(old) = s.objects.get(&key).cloned() else {
        return status_err(404, "NotFound", &format!("{} {name:?} not found", t.kind));
    };
    if let Some(want) = obj["metadata"]["resourceVersion"].as_str() {
        if want != old["metadata"]["resourceVersion"].as_str().unwrap_or("") {
            return status_err(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                     please apply your changes to the latest version and try again",
                    t.kind
                ),
            );
        }
    }
    guard(t, sub, &old, &mut obj);
    store_update(inner, &mut s, t, key, obj)
}

fn patch(inner: &Inner, t: &Target, name: &str, sub: Option<&str>, body: &[u8]) -> Response {
    let Ok(p) = serde_json::from_slice::<Value>(body) else {
        return status_err(400, "BadRequest", "patch is not JSON");
    };
    let ns = t.ns.clone().unwrap_or_default();
    let key = (t.coll.clone(), ns, name.to_string());
    let mut s = inner.store.lock().unwrap();
    let Some(old) = s.objects.get(&key).cloned() else {
        return status_err(404, "NotFound", &format!("{} {name:?} not found", t.kind));
    };
    let mut obj = old.clone();
    merge_patch(&mut obj, &p);
    guard(t, sub, &old, &mut obj);
    store_update(inner, &mut s, t, key, obj)
}

fn delete(inner: &Inner, t: &Target, name: &str, body: &[u8]) -> Response {
    let opts: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let ns = t.ns.clone().unwrap_or_default();
    let key = (t.coll.clone(), ns, name.to_string());
    let mut s = inner.store.lock().unwrap();
    let Some(old) = s.objects.get(&key).cloned() else {
        return status_err(404, "NotFound", &format!("{} {name:?} not found", t.kind));
    };
    if let Some(want) = opts["preconditions"]["resourceVersion"].as_str() {
        if want != old["metadata"]["resourceVersion"].as_str().unwrap_or("") {
            return status_err(
                409,
                "Conflict",
                &format!(
                    "Precondition failed for {} {name:?}: resourceVersion {want}",
                    t.kind
                ),
            );
        }
    }
    s.delete_or_finalize(&inner.events, &key);
    let now = s.objects.get(&key).cloned();
    match now {
        Some(o) => ok_json(StatusCode::OK, &o),
        None => ok_json(
            StatusCode::OK,
            &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",
                    "details":{"name": name, "kind": t.kind}}),
        ),
    }
}

fn evict(inner: &Inner, ns: &str, name: &str) -> Response {
    let mut s = inner.store.lock().unwrap();
    let key = (PODS.to_string(), ns.to_string(), name.to_string());
    let Some(pod) = s.objects.get(&key).cloned() else {
        return status_err(404, "NotFound", &format!("pods {name:?} not found"));
    };
    let covering: Vec<Pdb> = s
        .pdbs
        .iter()
        .filter(|b| {
            b.namespace == ns
                && b.match_labels
                    .iter()
                    .all(|(k, v)| pod["metadata"]["labels"][k].as_str() == Some(v))
        })
        .cloned()
        .collect();
    for b in covering {
        let healthy = s
            .objects
            .iter()
            .filter(|((c, pns, _), o)| {
                c == PODS
                    && pns == ns
                    && o["metadata"]["deletionTimestamp"].is_null()
                    && b.match_labels
                        .iter()
                        .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v))
            })
            .count();
        if healthy <= b.min_available {
            return status_err_details(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                json!({"causes": [{
                    "reason": "DisruptionBudget",
                    "message": format!(
                        "The disruption budget {} needs {} healthy pods and has {} currently",
                        b.name, b.min_available, healthy
                    ),
                }]}),
            );
        }
    }
    s.delete_or_finalize(&inner.events, &key);
    ok_json(
        StatusCode::CREATED,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
    )
}

impl StandIn {
    pub async fn start() -> StandIn {
        let (tx, _) = broadcast::channel(65_536);
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::default()),
            events: tx,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client configured as the agent's own (`api::client`).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        rkos_agent::api::client(config).unwrap()
    }

    /// Puts an object in place as if created through the API.
    pub fn seed(&self, coll: &str, ns: &str, mut obj: Value) {
        let (api_version, kind) = match coll {
            NODES => ("v1", "Node"),
            PODS => ("v1", "Pod"),
            LEASES => ("coordination.k8s.io/v1", "Lease"),
            PLANS => ("upgrade.rkos.io/v1alpha1", "UpgradePlan"),
            NUS => ("upgrade.rkos.io/v1alpha1", "NodeUpgrade"),
            _ => panic!("unknown collection {coll}"),
        };
        let mut s = self.inner.store.lock().unwrap();
        let rv = s.bump();
        s.uid += 1;
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["metadata"]["uid"] = json!(format!("uid-{}", s.uid));
        obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        if !ns.is_empty() {
            obj["metadata"]["namespace"] = json!(ns);
        }
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        s.objects
            .insert((coll.into(), ns.into(), name), obj.clone());
        s.emit(&self.inner.events, coll, ns, "ADDED", &obj);
    }

    pub fn get(&self, coll: &str, ns: &str, name: &str) -> Option<Value> {
        let s = self.inner.store.lock().unwrap();
        s.objects
            .get(&(coll.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn all(&self, coll: &str) -> Vec<Value> {
        let s = self.inner.store.lock().unwrap();
        s.objects
            .iter()
            .filter(|((c, _, _), _)| c == coll)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Deletes as a `kubectl delete` would (finalizers and garbage collection included).
    pub fn delete(&self, coll: &str, ns: &str, name: &str) {
        let mut s = self.inner.store.lock().unwrap();
        s.delete_or_finalize(
            &self.inner.events,
            &(coll.to_string(), ns.to_string(), name.to_string()),
        );
    }

    pub fn add_pdb(&self, pdb: Pdb) {
        self.inner.store.lock().unwrap().pdbs.push(pdb);
    }

    /// The most NodeUpgrades ever seen past `Waiting` at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.inner.store.lock().unwrap().max_in_flight
    }

    pub fn max_cordoned(&self) -> usize {
        self.inner.store.lock().unwrap().max_cordoned
    }

    pub fn requests(&self) -> u64 {
        self.inner.store.lock().unwrap().requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 9}, "e": [1]}));
        assert_eq!(t, json!({"b": {"c": 9, "d": 3}, "e": [1]}));
    }

    #[test]
    fn selectors() {
        let o =
            json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"nodeName": "n1"}});
        assert!(label_match(&o, "a=1"));
        assert!(!label_match(&o, "a=2"));
        assert!(label_match(&o, "a==1,b!=2"));
        assert!(field_match(&o, "spec.nodeName=n1"));
        assert!(!field_match(&o, "metadata.name=y"));
    }
}
