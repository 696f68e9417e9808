//! The lab's network (root): a namespace named after the lab holding a bridge (the nodes'
//! gateway, `.1/24`) and one tap per VM, a veth pair whose host end has `.254/24` (so the
//! host reaches the nodes, and the namespace routes out through the host), and NAT on the
//! host through iptables where the host has it. Without iptables the nodes reach each other
//! and the host, not the outside; `up` says so. The command lines are pure ([`setup`],
//! [`taps`], [`nat_rules`], [`teardown`]) and tested; [`apply`] runs them.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::plan::Plan;
use crate::state::Nat;
use crate::{argv, run, Result};

fn ip_ns(plan: &Plan, rest: &[&str]) -> Vec<String> {
    let mut v = argv(&["ip", "-n", &plan.namespace]);
    v.extend(argv(rest));
    v
}

/// The namespace, its bridge and the veth pair, in order.
pub fn setup(plan: &Plan) -> Vec<Vec<String>> {
    let gw = format!("{}/24", plan.gateway);
    let host = format!("{}/24", plan.host_address);
    let br = plan.bridge.as_str();
    vec![
        argv(&["ip", "netns", "add", &plan.namespace]),
        ip_ns(plan, &["link", "set", "lo", "up"]),
        ip_ns(plan, &["link", "add", br, "type", "bridge"]),
        ip_ns(plan, &["addr", "add", &gw, "dev", br]),
        ip_ns(plan, &["link", "set", br, "up"]),
        argv(&[
            "ip",
            "link",
            "add",
            &plan.veth_host,
            "type",
            "veth",
            "peer",
            "name",
            &plan.veth_lab,
            "netns",
            &plan.namespace,
        ]),
        ip_ns(plan, &["link", "set", &plan.veth_lab, "master", br]),
        ip_ns(plan, &["link", "set", &plan.veth_lab, "up"]),
        argv(&["ip", "addr", "add", &host, "dev", &plan.veth_host]),
        argv(&["ip", "link", "set", &plan.veth_host, "up"]),
        ip_ns(
            plan,
            &[
                "route",
                "add",
                "default",
                "via",
                &plan.host_address.to_string(),
            ],
        ),
    ]
}

/// One tap per node, a port of the bridge.
pub fn taps(plan: &Plan) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    for n in &plan.nodes {
        cmds.push(ip_ns(plan, &["tuntap", "add", &n.tap, "mode", "tap"]));
        cmds.push(ip_ns(
            plan,
            &["link", "set", &n.tap, "master", &plan.bridge],
        ));
        cmds.push(ip_ns(plan, &["link", "set", &n.tap, "up"]));
    }
    cmds
}

/// The iptables rules of the lab's NAT, each `[table, chain, match...]`: masquerade what
/// leaves the lab's network, and accept forwarding through the host's veth end ahead of a
/// host's own `FORWARD` policy (Docker's is DROP).
pub fn nat_rules(plan: &Plan) -> Vec<Vec<String>> {
    let cidr = plan.cidr();
    vec![
        argv(&[
            "nat",
            "POSTROUTING",
            "-s",
            &cidr,
            "!",
            "-d",
            &cidr,
            "-j",
            "MASQUERADE",
        ]),
        argv(&["filter", "FORWARD", "-i", &plan.veth_host, "-j", "ACCEPT"]),
        argv(&["filter", "FORWARD", "-o", &plan.veth_host, "-j", "ACCEPT"]),
    ]
}

/// `iptables` adding (`-I`: ahead of the host's rules) or deleting (`-D`) one rule.
pub fn iptables(rule: &[String], add: bool) -> Vec<String> {
    let mut v = argv(&[
        "iptables",
        "-w",
        "-t",
        &rule[0],
        if add { "-I" } else { "-D" },
    ]);
    v.extend(rule[1..].iter().cloned());
    v
}

/// What removes the lab's network, whatever part of it exists: the NAT rules, the namespace
/// (with it the bridge, the taps and the veth pair) and the host's veth end if it outlived it.
pub fn teardown(plan: &Plan, nat: Option<&Nat>) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = nat
        .map(|n| n.rules.iter().map(|r| iptables(r, false)).collect())
        .unwrap_or_default();
    cmds.push(argv(&["ip", "netns", "del", &plan.namespace]));
    cmds.push(argv(&["ip", "link", "del", &plan.veth_host]));
    cmds
}

fn parse_net(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, mask))
}

/// The first host route (`ip -4 route` output) that overlaps the lab's network, if any: the
/// lab would shadow it, or be shadowed. The default route does not count.
pub fn route_conflict(routes: &str, plan: &Plan) -> Option<String> {
    let (ours, our_mask) = parse_net(&plan.cidr())?;
    routes
        .lines()
        .filter(|l| !l.starts_with("default"))
        .find(|l| {
            let Some((net, mask)) = l.split_whitespace().next().and_then(parse_net) else {
                return false;
            };
            let m = mask & our_mask;
            net & m == ours & m
        })
        .map(str::to_string)
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Builds the network: namespace, bridge, veth, taps, then NAT where the host can. An error
/// leaves what was made for [`remove`] (`down`) to clean.
pub fn apply(plan: &Plan) -> Result<Nat> {
    if let Ok(routes) = run(&argv(&["ip", "-4", "route"])) {
        if let Some(r) = route_conflict(&routes, plan) {
            return Err(crate::Error::Invalid(format!(
                "the lab's network {} overlaps the host's route `{r}`: choose another --name",
                plan.cidr()
            )));
        }
    }
    for cmd in setup(plan).iter().chain(taps(plan).iter()) {
        run(cmd)?;
    }
    ns_forwarding(plan)?;
    if !have("iptables") {
        return Ok(Nat {
            rules: vec![],
            missing: Some(
                "iptables is not installed on this host: no NAT, so the nodes reach each other \
                 and the host but not the outside (no image pulls; install iptables for NAT)"
                    .into(),
            ),
        });
    }
    let mut added = Vec::new();
    for rule in nat_rules(plan) {
        if let Err(e) = run(&iptables(&rule, true)) {
            return Ok(Nat {
                rules: added,
                missing: Some(format!("no NAT: {e}")),
            });
        }
        added.push(rule);
    }
    // forwarding on the host, for the NAT; left on at `down` (other users may rely on it)
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(crate::Error::io("enabling IPv4 forwarding on the host"))?;
    Ok(Nat {
        rules: added,
        missing: None,
    })
}

/// Forwarding inside the namespace (the bridge's `.1` routes the nodes out via the host).
fn ns_forwarding(plan: &Plan) -> Result<()> {
    run(&argv(&[
        "ip",
        "netns",
        "exec",
        &plan.namespace,
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/ip_forward",
    ]))
    .map(|_| ())
}

/// Removes the lab's network; what is already gone is no error. Returns what failed.
pub fn remove(plan: &Plan, nat: Option<&Nat>) -> Vec<String> {
    let mut failed = Vec::new();
    for cmd in teardown(plan, nat) {
        if let Err(e) = run(&cmd) {
            let s = e.to_string();
            let gone = [
                "No such file",
                "Cannot find device",
                "does not exist",
                "Bad rule",
            ]
            .iter()
            .any(|m| s.contains(m));
            if !gone {
                failed.push(s);
            }
        }
    }
    failed
}

/// Whether the lab's namespace exists.
pub fn namespace_exists(namespace: &str) -> bool {
    Path::new("/run/netns").join(namespace).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, test_spec};

    fn lab(name: &str) -> Plan {
        plan(&test_spec(name, 1, 2)).unwrap()
    }

    fn joined(cmds: &[Vec<String>]) -> Vec<String> {
        cmds.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn the_namespace_has_the_gateway_and_the_host_the_254() {
        let p = lab("n");
        let s = joined(&setup(&p));
        assert_eq!(s[0], "ip netns add rkos-lab-n");
        assert!(s.contains(&format!(
            "ip -n rkos-lab-n addr add {}/24 dev br0",
            p.gateway
        )));
        assert!(s.contains(&format!(
            "ip addr add {}/24 dev {}",
            p.host_address, p.veth_host
        )));
        assert!(s
            .last()
            .unwrap()
            .ends_with(&format!("default via {}", p.host_address)));
        let t = joined(&taps(&p));
        assert_eq!(t.len(), 9);
        assert!(t.contains(&"ip -n rkos-lab-n link set tap2 master br0".to_string()));
    }

    #[test]
    fn nat_rules_are_deleted_as_they_were_added() {
        let p = lab("n");
        let rules = nat_rules(&p);
        let add: Vec<String> = rules.iter().map(|r| iptables(r, true).join(" ")).collect();
        assert_eq!(
            add[0],
            format!(
                "iptables -w -t nat -I POSTROUTING -s {0} ! -d {0} -j MASQUERADE",
                p.cidr()
            )
        );
        let nat = Nat {
            rules,
            missing: None,
        };
        let down = joined(&teardown(&p, Some(&nat)));
        for (a, d) in add.iter().zip(&down) {
            assert_eq!(a.replace(" -I ", " -D "), *d);
        }
        assert_eq!(down[3], "ip netns del rkos-lab-n");
        // no NAT recorded (a crash before it): only the namespace and the veth
        assert_eq!(teardown(&p, None).len(), 2);
    }

    #[test]
    fn overlapping_host_routes_are_found() {
        let p = lab("n");
        let [a, b, c, _] = p.network.octets();
        let routes = format!(
            "default via 192.168.1.1 dev eth0\n192.168.1.0/24 dev eth0 scope link\n\
             {a}.{b}.0.0/16 dev docker0\n"
        );
        assert_eq!(
            route_conflict(&routes, &p).as_deref(),
            Some(format!("{a}.{b}.0.0/16 dev docker0").as_str())
        );
        let fine = format!(
            "default via 10.0.0.1 dev eth0\n{a}.{b}.{}.0/24 dev x\n",
            c ^ 1
        );
        assert_eq!(route_conflict(&fine, &p), None);
        let host = format!("{a}.{b}.{c}.7 dev tun0\n");
        assert!(route_conflict(&host, &p).is_some());
    }
}
