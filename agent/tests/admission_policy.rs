//! `manifests/policy.yaml`: the ValidatingAdmissionPolicies that tie each agent's writes to
//! its own node. The shipped YAML is parsed and every matchCondition, variable, validation and
//! messageExpression in it is evaluated with the `cel` interpreter the way the API server
//! applies a policy: the resource rules, then the match conditions, then the variables, then
//! the validations, with failurePolicy Fail (an evaluation error refuses). The requests are
//! the ones the agent makes for its own node (allowed), the same for another node, without
//! the node-name claim, and from other users (not affected).
//!
//! Where the API server and this harness could differ: `object`/`oldObject` are plain JSON
//! maps here, as they are to the API server's CEL at run time (it compiles them as `dyn`);
//! `request` is the AdmissionRequest as JSON, without the fields no expression reads.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Value as Cel};
use rkos_agent::crd::{CORDON_ANNOTATION, GROUP, PLAN_LABEL};
use serde::Deserialize;
use serde_json::{json, Value};

const NODE_CLAIM: &str = "authentication.kubernetes.io/node-name";

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn policy_file() -> Vec<Value> {
    docs(include_str!("../manifests/policy.yaml"))
}

fn agent_file() -> Vec<Value> {
    docs(include_str!("../manifests/agent.yaml"))
}

fn of_kind(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter().filter(|d| d["kind"] == kind).cloned().collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The agent's ServiceAccount (namespace, name), as agent.yaml defines it.
fn agent_account() -> (String, String) {
    let sa = &of_kind(&agent_file(), "ServiceAccount")[0]["metadata"];
    let s = |k: &str| sa[k].as_str().unwrap().to_string();
    (s("namespace"), s("name"))
}

/// Who sends a request: the user name and the extras the authenticator attached.
#[derive(Clone, Debug)]
struct User {
    name: String,
    extra: Option<Value>,
}

impl User {
    /// The agent with the token the kubelet mounts into its pod on `node`.
    fn agent_on(node: &str) -> User {
        let mut u = User::agent_without_claim();
        u.extra.as_mut().unwrap()[NODE_CLAIM] = json!([node]);
        u.extra.as_mut().unwrap()["authentication.kubernetes.io/node-uid"] = json!(["uid-1"]);
        u
    }

    /// The agent's account with a token that names a pod but no node (issued before
    /// Kubernetes 1.30, or with ServiceAccountTokenPodNodeInfo off).
    fn agent_without_claim() -> User {
        let (ns, name) = agent_account();
        User {
            name: format!("system:serviceaccount:{ns}:{name}"),
            extra: Some(json!({
                "authentication.kubernetes.io/pod-name": ["rkos-agent-x7k2p"],
                "authentication.kubernetes.io/pod-uid": ["uid-2"],
                "authentication.kubernetes.io/credential-id": ["JTI=3f1c"],
            })),
        }
    }

    /// The agent's account with a token bound to nothing (a legacy Secret token): no extras.
    fn agent_unbound() -> User {
        User {
            extra: None,
            ..User::agent_without_claim()
        }
    }

    fn other(name: &str, node: Option<&str>) -> User {
        User {
            name: name.into(),
            extra: node.map(|n| json!({ NODE_CLAIM: [n] })),
        }
    }
}

/// One admission request as the API server hands it to a policy.
#[derive(Clone, Debug)]
struct Req {
    op: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    sub: &'static str,
    namespace: &'static str,
    name: String,
    object: Option<Value>,
    old: Option<Value>,
}

impl Req {
    fn request(&self, user: &User) -> Value {
        let mut r = json!({
            "operation": self.op,
            "resource": {"group": self.group, "version": self.version, "resource": self.resource},
            "name": self.name,
            "userInfo": {"username": user.name, "uid": "u-1", "groups": ["system:authenticated"]},
            "dryRun": false,
        });
        if !self.sub.is_empty() {
            r["subResource"] = json!(self.sub);
        }
        if !self.namespace.is_empty() {
            r["namespace"] = json!(self.namespace);
        }
        if let Some(e) = &user.extra {
            r["userInfo"]["extra"] = e.clone();
        }
        r
    }
}

/// What the policies made of a request.
#[derive(Debug, Default)]
struct Verdict {
    /// Policies whose rules and match conditions selected the request.
    matched: Vec<String>,
    /// Messages of the validations that came out false.
    refused: Vec<String>,
    /// Evaluation errors (each refuses too, with failurePolicy Fail).
    errors: Vec<String>,
}

impl Verdict {
    fn allowed(&self) -> bool {
        self.refused.is_empty() && self.errors.is_empty()
    }

    #[track_caller]
    fn assert_refused(&self, because: &str) {
        assert!(
            self.errors.is_empty(),
            "evaluation errors: {:?}",
            self.errors
        );
        assert!(
            self.refused.iter().any(|m| m.contains(because)),
            "expected a refusal containing {because:?}, got {self:?}"
        );
    }

    #[track_caller]
    fn assert_allowed(&self) {
        assert!(!self.matched.is_empty(), "no policy checked this request");
        assert!(self.allowed(), "refused: {self:?}");
    }
}

fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Cel::Int)
            .unwrap_or(Cel::Float(n.as_f64().unwrap())),
        Value::String(s) => Cel::from(s.as_str()),
        Value::Array(a) => Cel::from(a.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(o) => Cel::from(
            o.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// Kubernetes' resourceRules: `pods` is the resource itself, `pods/eviction` one subresource,
/// `*` every resource (no subresource), `pods/*` every subresource of pods.
fn rule_matches(rule: &Value, req: &Req) -> bool {
    for k in rule.as_object().unwrap().keys() {
        assert!(
            ["apiGroups", "apiVersions", "operations", "resources"].contains(&k.as_str()),
            "the harness does not model {k}"
        );
    }
    let any = |k: &str, want: &str| strs(&rule[k]).iter().any(|s| s == "*" || s == want);
    let resource = strs(&rule["resources"]).iter().any(|r| {
        let (res, sub) = r
            .split_once('/')
            .map_or((r.as_str(), None), |(a, b)| (a, Some(b)));
        (res == "*" || res == req.resource)
            && match sub {
                None => req.sub.is_empty(),
                Some(s) => !req.sub.is_empty() && (s == "*" || s == req.sub),
            }
    });
    any("apiGroups", req.group)
        && any("apiVersions", req.version)
        && any("operations", req.op)
        && resource
}

/// Evaluates the CEL expression `src` (a YAML string) in `ctx`.
fn eval(env: &Arc<Env>, ctx: &Context, src: &Value) -> Result<Cel, String> {
    let src = src
        .as_str()
        .unwrap_or_else(|| panic!("an expression must be a YAML string: {src}"));
    let program = env.compile(src).map_err(|e| format!("{src}: {e:?}"))?;
    program.execute(ctx).map_err(|e| format!("{src}: {e:?}"))
}

/// Applies every policy of `policies` to `req` from `user`.
fn admit(policies: &[Value], user: &User, req: &Req) -> Verdict {
    let env = Arc::new(Env::stdlib());
    let mut verdict = Verdict::default();
    for p in policies {
        let name = p["metadata"]["name"].as_str().unwrap();
        let spec = &p["spec"];
        let constraints = spec["matchConstraints"].as_object().unwrap();
        assert_eq!(
            constraints.keys().collect::<Vec<_>>(),
            ["resourceRules"],
            "the harness models only resourceRules"
        );
        let rules = spec["matchConstraints"]["resourceRules"]
            .as_array()
            .unwrap();
        if !rules.iter().any(|r| rule_matches(r, req)) {
            continue;
        }
        let mut ctx = Context::with_env(env.clone());
        ctx.add_variable_from_value("request", to_cel(&req.request(user)));
        let obj = |o: &Option<Value>| o.as_ref().map_or(Cel::Null, to_cel);
        ctx.add_variable_from_value("object", obj(&req.object));
        ctx.add_variable_from_value("oldObject", obj(&req.old));
        ctx.add_variable_from_value("params", Cel::Null);
        ctx.add_variable_from_value("namespaceObject", Cel::Null);
        let mut selected = true;
        for c in spec["matchConditions"].as_array().unwrap() {
            match eval(&env, &ctx, &c["expression"]) {
                Ok(Cel::Bool(b)) => selected &= b,
                other => verdict.errors.push(format!("{name}: condition: {other:?}")),
            }
        }
        if !selected {
            continue;
        }
        verdict.matched.push(name.into());
        let mut vars = HashMap::new();
        for v in spec["variables"].as_array().into_iter().flatten() {
            match eval(&env, &ctx, &v["expression"]) {
                Ok(val) => {
                    vars.insert(v["name"].as_str().unwrap().to_string(), val);
                }
                Err(e) => verdict.errors.push(format!("{name}: variable: {e}")),
            }
            ctx.add_variable_from_value("variables", Cel::from(vars.clone()));
        }
        for v in spec["validations"].as_array().unwrap() {
            match eval(&env, &ctx, &v["expression"]) {
                Ok(Cel::Bool(true)) => {}
                Ok(Cel::Bool(false)) => {
                    let msg = match v.get("messageExpression") {
                        Some(m) => match eval(&env, &ctx, m) {
                            Ok(Cel::String(s)) => s.to_string(),
                            other => {
                                verdict.errors.push(format!("{name}: message: {other:?}"));
                                continue;
                            }
                        },
                        None => v["message"].as_str().unwrap().to_string(),
                    };
                    verdict.refused.push(format!("{name}: {msg}"));
                }
                other => verdict
                    .errors
                    .push(format!("{name}: validation: {other:?}")),
            }
        }
    }
    verdict
}

fn check(user: &User, req: &Req) -> Verdict {
    admit(
        &of_kind(&policy_file(), "ValidatingAdmissionPolicy"),
        user,
        req,
    )
}

// --- the objects and requests the agent writes (agent/src/kube_io.rs) ---

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "pool": "edge"},
            "annotations": {"k3s.io/node-args": "[\"agent\"]", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "podCIDR": "10.42.1.0/24",
            "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
        },
    })
}

fn cordoned(name: &str) -> Value {
    let mut n = node(name);
    n["spec"]["unschedulable"] = json!(true);
    n["metadata"]["annotations"][CORDON_ANNOTATION] = json!("fleet");
    n
}

fn node_update(name: &str, old: Value, new: Value) -> Req {
    Req {
        op: "UPDATE",
        group: "",
        version: "v1",
        resource: "nodes",
        sub: "",
        namespace: "",
        name: name.into(),
        object: Some(new),
        old: Some(old),
    }
}

fn cordon(name: &str) -> Req {
    node_update(name, node(name), cordoned(name))
}

fn nodeupgrade(name: &str, plan: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1alpha1"), "kind": "NodeUpgrade",
        "metadata": {"name": name, "labels": {PLAN_LABEL: plan}},
        "spec": {"plan": plan, "targetVersion": "2"},
        "status": {"phase": "Waiting"},
    })
}

fn nu_req(op: &'static str, sub: &'static str, name: &str) -> Req {
    let old = (op != "CREATE").then(|| nodeupgrade(name, "fleet"));
    let object = (op != "DELETE").then(|| {
        let mut n = nodeupgrade(name, "fleet");
        n["status"]["phase"] = json!("Draining");
        n
    });
    Req {
        op,
        group: GROUP,
        version: "v1alpha1",
        resource: "nodeupgrades",
        sub,
        namespace: "",
        name: name.into(),
        object,
        old,
    }
}

fn lease(holder: Option<&str>) -> Value {
    let mut spec = json!({"leaseDurationSeconds": 900, "leaseTransitions": 0});
    if let Some(h) = holder {
        spec["holderIdentity"] = json!(h);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "rkos-upgrade-fleet-0", "namespace": "rkos-system",
                     "labels": {PLAN_LABEL: "fleet"}},
        "spec": spec,
    })
}

/// A lease write: CREATE (no old holder), UPDATE (old -> new) or DELETE (no new holder).
fn lease_req(op: &'static str, old: Option<&str>, new: Option<&str>) -> Req {
    Req {
        op,
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        sub: "",
        namespace: "rkos-system",
        name: "rkos-upgrade-fleet-0".into(),
        object: (op != "DELETE").then(|| lease(new)),
        old: (op != "CREATE").then(|| lease(old)),
    }
}

fn eviction(namespace: &'static str, pod: &str, delete_options: Option<Value>) -> Req {
    // kube-rs sends only the pod's name; the API server decodes it as a policy/v1 Eviction.
    let mut ev = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": pod, "namespace": namespace}});
    if let Some(d) = delete_options {
        ev["deleteOptions"] = d;
    }
    Req {
        op: "CREATE",
        group: "",
        version: "v1",
        resource: "pods",
        sub: "eviction",
        namespace,
        name: pod.into(),
        object: Some(ev),
        old: None,
    }
}

fn plan_status() -> Req {
    let plan = |succeeded: i64| {
        json!({"apiVersion": format!("{GROUP}/v1alpha1"), "kind": "UpgradePlan",
               "metadata": {"name": "fleet"}, "spec": {"version": "2"},
               "status": {"nodes": 3, "succeeded": succeeded}})
    };
    Req {
        op: "UPDATE",
        group: GROUP,
        version: "v1alpha1",
        resource: "upgradeplans",
        sub: "status",
        namespace: "",
        name: "fleet".into(),
        object: Some(plan(1)),
        old: Some(plan(0)),
    }
}

/// The request the agent on `node` makes for a write RBAC grants it, on its own objects.
fn own_write(group: &str, resource: &str, verb: &str, node: &str) -> Req {
    let op = match verb {
        "create" => "CREATE",
        "update" | "patch" => "UPDATE",
        "delete" => "DELETE",
        v => panic!("not a write: {v}"),
    };
    match (group, resource, op) {
        ("", "nodes", "UPDATE") => cordon(node),
        ("", "pods/eviction", "CREATE") => eviction("shop", "web-0", None),
        (GROUP, "nodeupgrades", _) => nu_req(op, "", node),
        (GROUP, "nodeupgrades/status", "UPDATE") => nu_req(op, "status", node),
        (GROUP, "upgradeplans/status", "UPDATE") => plan_status(),
        ("coordination.k8s.io", "leases", "CREATE") => lease_req(op, None, Some(node)),
        ("coordination.k8s.io", "leases", "UPDATE") => lease_req(op, Some(node), Some(node)),
        ("coordination.k8s.io", "leases", "DELETE") => lease_req(op, Some(node), None),
        _ => panic!("agent.yaml grants {verb} on {group}/{resource}: model that write here"),
    }
}

/// Every write (group, resource, verb) agent.yaml's ClusterRole and Role grant.
fn granted_writes() -> Vec<(String, String, String)> {
    let d = agent_file();
    let mut out = Vec::new();
    for role in of_kind(&d, "ClusterRole")
        .iter()
        .chain(&of_kind(&d, "Role"))
    {
        for rule in role["rules"].as_array().unwrap() {
            for g in strs(&rule["apiGroups"]) {
                for r in strs(&rule["resources"]) {
                    for v in strs(&rule["verbs"]) {
                        if !["get", "list", "watch"].contains(&v.as_str()) {
                            out.push((g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
    }
    out
}

// --- the tests ---

#[test]
fn every_policy_is_bound_enforced_and_selects_only_the_agent() {
    let d = policy_file();
    let policies = of_kind(&d, "ValidatingAdmissionPolicy");
    let bindings = of_kind(&d, "ValidatingAdmissionPolicyBinding");
    assert_eq!(d.len(), policies.len() + bindings.len(), "unexpected kinds");
    assert!(policies.len() >= 4);
    let (ns, name) = agent_account();
    for p in &policies {
        let pname = &p["metadata"]["name"];
        assert_eq!(
            p["apiVersion"], "admissionregistration.k8s.io/v1",
            "{pname}"
        );
        assert_eq!(p["spec"]["failurePolicy"], "Fail", "{pname}");
        assert!(p["spec"]["paramKind"].is_null(), "{pname}");
        let bound: Vec<_> = bindings
            .iter()
            .filter(|b| b["spec"]["policyName"] == *pname)
            .collect();
        assert_eq!(bound.len(), 1, "{pname}: one binding");
        let b = &bound[0];
        assert_eq!(b["apiVersion"], "admissionregistration.k8s.io/v1");
        assert_eq!(strs(&b["spec"]["validationActions"]), ["Deny"], "{pname}");
        // No paramRef, no matchResources: the binding applies the policy cluster-wide.
        assert_eq!(b["spec"].as_object().unwrap().len(), 2, "{pname}: {b}");
        // The match condition names the ServiceAccount agent.yaml defines.
        let cond = p["spec"]["matchConditions"][0]["expression"]
            .as_str()
            .unwrap();
        assert!(
            cond.contains(&format!("system:serviceaccount:{ns}:{name}")),
            "{cond}"
        );
    }
}

#[test]
fn every_write_rbac_grants_is_checked_and_needs_the_node_claim() {
    let writes = granted_writes();
    assert!(writes.len() >= 10, "{writes:?}");
    for (g, r, v) in &writes {
        let req = own_write(g, r, v, "n1");
        let ok = check(&User::agent_on("n1"), &req);
        assert!(ok.allowed(), "{v} {g}/{r} on its own node: {ok:?}");
        assert!(
            !ok.matched.is_empty(),
            "{v} {g}/{r} is checked by no policy"
        );
        for user in [User::agent_without_claim(), User::agent_unbound()] {
            check(&user, &req).assert_refused("need a service-account token bound to a pod");
        }
    }
}

#[test]
fn own_node_cordon_and_uncordon_are_allowed() {
    let me = User::agent_on("n1");
    check(&me, &cordon("n1")).assert_allowed();
    // The uncordon patch removes the annotation and spec.unschedulable.
    check(&me, &node_update("n1", cordoned("n1"), node("n1"))).assert_allowed();
    // A node without any annotations or labels before (a bare node object).
    let mut bare = node("n1");
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    bare["metadata"].as_object_mut().unwrap().remove("labels");
    bare["spec"].as_object_mut().unwrap().remove("taints");
    let mut bare_cordoned = bare.clone();
    bare_cordoned["spec"]["unschedulable"] = json!(true);
    bare_cordoned["metadata"]["annotations"] = json!({ CORDON_ANNOTATION: "fleet" });
    check(&me, &node_update("n1", bare, bare_cordoned)).assert_allowed();
}

#[test]
fn another_node_is_refused() {
    let v = check(&User::agent_on("n1"), &cordon("n2"));
    v.assert_refused("rkos-agent on node n1 may not change node n2");
    let v = check(
        &User::agent_on("n1"),
        &node_update("n2", cordoned("n2"), node("n2")),
    );
    v.assert_refused("may not change node n2");
}

#[test]
fn own_node_labels_taints_and_other_annotations_are_refused() {
    let me = User::agent_on("n1");
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 5] = [
        ("label added", |n| {
            n["metadata"]["labels"]["node-restriction.kubernetes.io/trusted"] = json!("true")
        }),
        ("label changed", |n| {
            n["metadata"]["labels"]["pool"] = json!("db")
        }),
        ("taint dropped", |n| n["spec"]["taints"] = json!([])),
        ("annotation changed", |n| {
            n["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = json!("5")
        }),
        ("annotation removed", |n| {
            n["metadata"]["annotations"]
                .as_object_mut()
                .unwrap()
                .remove("k3s.io/node-args");
        }),
    ];
    for (what, edit) in edits {
        let mut new = cordoned("n1");
        edit(&mut new);
        let v = check(&me, &node_update("n1", node("n1"), new));
        assert!(!v.allowed(), "{what}: {v:?}");
        v.assert_refused("may change only spec.unschedulable");
    }
}

#[test]
fn own_nodeupgrade_is_allowed_and_no_other() {
    let me = User::agent_on("n1");
    let writes = [
        ("CREATE", ""),
        ("UPDATE", ""),
        ("UPDATE", "status"),
        ("DELETE", ""),
    ];
    for (op, sub) in writes {
        check(&me, &nu_req(op, sub, "n1")).assert_allowed();
        let v = check(&me, &nu_req(op, sub, "n2"));
        v.assert_refused("rkos-agent on node n1 may not write NodeUpgrade n2");
    }
}

#[test]
fn leases_only_with_itself_as_holder() {
    let me = User::agent_on("n1");
    // Take a free slot, renew it, take over one that expired, release it.
    check(&me, &lease_req("CREATE", None, Some("n1"))).assert_allowed();
    check(&me, &lease_req("UPDATE", Some("n1"), Some("n1"))).assert_allowed();
    check(&me, &lease_req("UPDATE", Some("n2"), Some("n1"))).assert_allowed();
    check(&me, &lease_req("DELETE", Some("n1"), None)).assert_allowed();

    check(&me, &lease_req("CREATE", None, Some("n2"))).assert_refused("held by n2");
    // Renewing another node's lease (keeping it alive for them), or emptying one.
    check(&me, &lease_req("UPDATE", Some("n2"), Some("n2"))).assert_refused("held by n2");
    check(&me, &lease_req("UPDATE", Some("n1"), None)).assert_refused("without a holder");
    // Releasing another node's lease.
    check(&me, &lease_req("DELETE", Some("n2"), None))
        .assert_refused("may not delete lease rkos-upgrade-fleet-0 held by n2");
}

#[test]
fn evictions_and_the_plan_roll_up_name_no_node() {
    // The residual risk docs/upgrades.md states: an Eviction names a pod, not its node, and
    // the roll-up is every agent's to write, so another node's agent passes too.
    for node in ["n1", "n2"] {
        let me = User::agent_on(node);
        check(&me, &eviction("shop", "web-0", None)).assert_allowed();
        check(&me, &eviction("kube-system", "coredns-1", Some(json!({})))).assert_allowed();
        check(&me, &plan_status()).assert_allowed();
    }
    let me = User::agent_on("n1");
    let (agent_ns, _) = agent_account();
    assert_eq!(agent_ns, "rkos-system");
    check(&me, &eviction("rkos-system", "rkos-agent-x", None))
        .assert_refused("evicts no pod in rkos-system");
    let now = Some(json!({"gracePeriodSeconds": 0}));
    check(&me, &eviction("shop", "web-0", now)).assert_refused("own termination grace period");
}

#[test]
fn other_users_are_not_affected() {
    let others = [
        User::other("system:admin", None),
        User::other("system:node:n2", None),
        User::other(
            "system:serviceaccount:kube-system:generic-garbage-collector",
            None,
        ),
        // Same name, another namespace; and another account of the agent's namespace, even
        // with a node claim of its own.
        User::other("system:serviceaccount:default:rkos-agent", Some("n1")),
        User::other("system:serviceaccount:rkos-system:default", Some("n1")),
    ];
    let mut writes: Vec<Req> = granted_writes()
        .iter()
        .map(|(g, r, v)| own_write(g, r, v, "n2"))
        .collect();
    let mut relabel = cordoned("n2");
    relabel["metadata"]["labels"]["pool"] = json!("db");
    writes.push(node_update("n2", node("n2"), relabel));
    writes.push(eviction("rkos-system", "rkos-agent-x", None));
    for user in &others {
        for req in &writes {
            let v = check(user, req);
            assert!(
                v.matched.is_empty() && v.allowed(),
                "{user:?} {req:?}: {v:?}"
            );
        }
    }
}
