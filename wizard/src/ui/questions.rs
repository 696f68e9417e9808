//! The node's questions: SSH access, password, WiFi, network, host name, then the role
//! ([`super::role`]). Each offers the node's current value as its default.

use super::ask::{keep_hint, list, Asker, Text};
use super::{role, Context, R};
use crate::answers::{Answers, NetMode, Problem, Role};
use crate::checks;
use crate::line::Echo;
use crate::net::{self, KeysLookup};

/// The value of a refused preset for `key`, and why it was refused.
pub(super) fn retry(refused: &[(Problem, String)], key: &str) -> (Option<String>, Option<String>) {
    refused
        .iter()
        .find(|(p, _)| p.key == key)
        .map_or((None, None), |(p, v)| {
            (Some(v.clone()), Some(p.message.clone()))
        })
}

/// `-` answers "none" where Enter would keep a current value.
const NONE: &str = "-";

pub(super) fn ask_all(
    ctx: &Context,
    a: &mut Answers,
    refused: &[(Problem, String)],
    ask: &Asker,
) -> R<()> {
    let cur = &ctx.current;
    if a.github_users.is_empty() {
        a.github_users = ask_github_users(ctx, refused, ask)?;
    }
    if a.ssh_keys.is_empty() {
        a.ssh_keys = ask_ssh_keys(cur, refused, ask)?;
    }
    if a.password.is_none() {
        a.password = Some(ask_password(cur, refused, ask)?);
    }
    if a.wifi_ssid.is_none() && ask.confirm("Configure WiFi?", cur.wifi_ssid.is_some())? {
        ask_wifi(ctx, a, refused, ask)?;
    }
    if a.network == NetMode::Dhcp && a.address.is_none() {
        ask_network(ctx, a, refused, ask)?;
    } else if a.network == NetMode::Static {
        ask_static(ctx, a, refused, ask)?;
    }
    if a.hostname.is_none() {
        a.hostname = Some(ask_hostname(ctx, refused, ask)?);
    }
    if a.role.is_none() {
        let i = ask.select(
            "Role of this node",
            &[
                "server (runs the Kubernetes control plane)",
                "agent (joins a server)",
            ],
            usize::from(cur.role == Some(Role::Agent)),
        )?;
        a.role = Some([Role::Server, Role::Agent][i]);
    }
    role::ask_role(ctx, a, refused, ask)?;
    let problems = a.problems();
    if !problems.is_empty() {
        return Err(super::UiError::Other(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    Ok(())
}

fn ask_github_users(ctx: &Context, refused: &[(Problem, String)], ask: &Asker) -> R<Vec<String>> {
    let current = &ctx.current.github_users;
    let (mut initial, mut error) = retry(refused, "github_users");
    loop {
        let text = ask.text(
            Text::new("GitHub users whose SSH keys may log in")
                .hint(keep_hint(current, "users", "comma-separated; empty: none"))
                .default((!current.is_empty()).then(|| current.join(", ")))
                .initial(initial.take())
                .error(error.take()),
            |s| {
                if s == NONE {
                    return Ok(());
                }
                list(s).iter().try_for_each(|u| checks::github_user(u))
            },
        )?;
        if text == NONE {
            return Ok(Vec::new());
        }
        let users = list(&text);
        match check_github_users(ctx, &users, ask)? {
            None => return Ok(users),
            Some(why) => {
                initial = Some(text);
                error = Some(why);
            }
        }
    }
}

/// Looks each user up; `Some(reason)` when one must be answered again.
fn check_github_users(ctx: &Context, users: &[String], ask: &Asker) -> R<Option<String>> {
    for u in users {
        ask.say(format!("Checking GitHub user {u}..."));
        match net::github_keys(&ctx.github_base, u, ctx.net_timeout) {
            KeysLookup::Found(keys) => ask.say(format!("  {u}: {} key(s)", keys.len())),
            KeysLookup::NoKeys => {
                return Ok(Some(format!(
                    "{u} has no SSH key on GitHub; it would not let anyone in."
                )))
            }
            KeysLookup::NotFound => return Ok(Some(format!("There is no GitHub user {u}."))),
            KeysLookup::Unreachable(why) => {
                ask.warn(format!("  Could not check {u} on GitHub: {why}."));
                if !ask.confirm(
                    &format!("Keep {u} anyway? (the keys are fetched at every boot)"),
                    true,
                )? {
                    return Ok(Some(format!("{u} could not be checked.")));
                }
            }
        }
    }
    Ok(None)
}

fn ask_ssh_keys(cur: &Answers, refused: &[(Problem, String)], ask: &Asker) -> R<Vec<String>> {
    let keep = match cur.ssh_keys.len() {
        0 => None,
        1 => Some("(kept: 1 key)".to_string()),
        n => Some(format!("(kept: {n} keys)")),
    };
    let (initial, error) = retry(refused, "ssh_keys");
    let key = ask.text(
        Text::new("SSH public key to authorize")
            .hint(keep_hint(&cur.ssh_keys, "keys", "paste one; empty: none"))
            .default(keep.clone())
            .initial(initial)
            .error(error),
        |s| {
            if s.is_empty() || s == NONE || Some(s) == keep.as_deref() {
                Ok(())
            } else {
                checks::ssh_key(s)
            }
        },
    )?;
    Ok(match key.as_str() {
        "" | NONE => Vec::new(),
        k if Some(k) == keep.as_deref() => cur.ssh_keys.clone(),
        k => vec![k.to_string()],
    })
}

fn ask_password(cur: &Answers, refused: &[(Problem, String)], ask: &Asker) -> R<String> {
    let (_, mut error) = retry(refused, "password");
    loop {
        let hint = cur
            .password
            .as_ref()
            .map(|_| "Enter keeps the current one".to_string());
        let first = ask.text(
            Text::new("Password for the user rkos")
                .echo(Echo::Hidden)
                .hint(hint.unwrap_or_else(|| "not shown as you type".into()))
                .default(cur.password.clone())
                .error(error.take()),
            checks::password,
        )?;
        if Some(&first) == cur.password.as_ref() {
            return Ok(first);
        }
        let again = ask.text(
            Text::new("The password again")
                .echo(Echo::Hidden)
                .empty_secret(super::ask::HIDDEN),
            |_| Ok(()),
        )?;
        if again == first {
            return Ok(first);
        }
        ask.erase_records(2);
        error = Some("The passwords differ; type them again.".into());
    }
}

fn ask_wifi(ctx: &Context, a: &mut Answers, refused: &[(Problem, String)], ask: &Asker) -> R<()> {
    let cur = &ctx.current;
    let typed_ssid = |ask: &Asker| {
        let (initial, error) = retry(refused, "wifi_ssid");
        ask.text(
            Text::new("WiFi network name (SSID)")
                .default(cur.wifi_ssid.clone())
                .initial(initial)
                .error(error),
            checks::ssid,
        )
    };
    let ssid = if ctx.wifi_scan.is_empty() {
        typed_ssid(ask)?
    } else {
        let mut items = ctx.wifi_scan.clone();
        items.push("Other (type its name)".into());
        let default = cur
            .wifi_ssid
            .as_ref()
            .and_then(|s| items.iter().position(|i| i == s))
            .unwrap_or(0);
        let i = ask.select("WiFi network", &items, default)?;
        if i + 1 == items.len() {
            typed_ssid(ask)?
        } else {
            items[i].clone()
        }
    };
    let same = cur.wifi_ssid.as_ref() == Some(&ssid);
    let current_pass = cur.wifi_passphrase.clone().filter(|_| same);
    let (_, error) = retry(refused, "wifi_passphrase");
    let pass = ask.text(
        Text::new(&format!("Passphrase of {ssid}"))
            .echo(Echo::Masked { revealed: false })
            .hint(if current_pass.is_some() {
                "Enter keeps the current one; Tab shows"
            } else {
                "Tab shows what you type"
            })
            .default(current_pass)
            .error(error),
        checks::wifi_passphrase,
    )?;
    a.wifi_ssid = Some(ssid);
    a.wifi_passphrase = Some(pass);
    Ok(())
}

fn ask_network(
    ctx: &Context,
    a: &mut Answers,
    refused: &[(Problem, String)],
    ask: &Asker,
) -> R<()> {
    let cur = &ctx.current;
    let mut items = vec!["DHCP (automatic)", "Static address"];
    if cur.network == NetMode::Keep {
        items.push("Keep the current settings (as in config.yaml)");
    }
    let default = match cur.network {
        NetMode::Dhcp => 0,
        NetMode::Static => 1,
        NetMode::Keep => 2,
    };
    a.network =
        [NetMode::Dhcp, NetMode::Static, NetMode::Keep][ask.select("Network", &items, default)?];
    if a.network == NetMode::Static {
        ask_static(ctx, a, refused, ask)?;
    }
    Ok(())
}

fn ask_static(ctx: &Context, a: &mut Answers, refused: &[(Problem, String)], ask: &Asker) -> R<()> {
    let cur = &ctx.current;
    if a.interface.is_none() {
        let default = cur
            .interface
            .clone()
            .or_else(|| ctx.interfaces.first().cloned());
        a.interface = Some(ask.text(Text::new("Interface").default(default), |s| {
            if s.is_empty() {
                Err("name the interface, e.g. enp1s0".into())
            } else {
                Ok(())
            }
        })?);
    }
    if a.address.is_none() {
        let (initial, error) = retry(refused, "address");
        a.address = Some(
            ask.text(
                Text::new("Address/prefix")
                    .hint(
                        cur.address
                            .clone()
                            .unwrap_or_else(|| "e.g. 192.168.1.10/24".into()),
                    )
                    .default(cur.address.clone())
                    .initial(initial)
                    .error(error),
                checks::cidr,
            )?,
        );
    }
    if a.gateway.is_none() {
        let (initial, error) = retry(refused, "gateway");
        let current: Vec<String> = cur.gateway.iter().cloned().collect();
        let g = ask.text(
            Text::new("Gateway")
                .hint(keep_hint(&current, "", "empty: none"))
                .default(cur.gateway.clone())
                .initial(initial)
                .error(error),
            |s| {
                if s.is_empty() || s == NONE {
                    Ok(())
                } else {
                    checks::ip(s)
                }
            },
        )?;
        a.gateway = Some(g).filter(|g| !g.is_empty() && g != NONE);
    }
    if a.dns.is_empty() {
        let (initial, error) = retry(refused, "dns");
        let d = ask.text(
            Text::new("DNS servers")
                .hint(keep_hint(
                    &cur.dns,
                    "servers",
                    "comma-separated; empty: none",
                ))
                .default((!cur.dns.is_empty()).then(|| cur.dns.join(", ")))
                .initial(initial)
                .error(error),
            |s| {
                if s == NONE {
                    return Ok(());
                }
                list(s).iter().try_for_each(|x| checks::ip(x))
            },
        )?;
        a.dns = if d == NONE { Vec::new() } else { list(&d) };
    }
    Ok(())
}

fn ask_hostname(ctx: &Context, refused: &[(Problem, String)], ask: &Asker) -> R<String> {
    let default = match &ctx.current.hostname {
        Some(h) => h.clone(),
        None => {
            // The generated name: say when its MAC may be another machine's too.
            if let Some(note) = ctx.primary_mac.as_deref().and_then(checks::shared_mac_note) {
                ask.warn(format!(
                    "! The default name {} comes from the MAC address.",
                    ctx.default_hostname
                ));
                ask.warn(format!("  {note}"));
                if let Ok(s) = crate::secrets::random_hostname() {
                    ask.warn(format!(
                        "  Suggestion: {s} (random), or a name of your own."
                    ));
                }
            }
            ctx.default_hostname.clone()
        }
    };
    let (initial, error) = retry(refused, "hostname");
    ask.text(
        Text::new("Host name")
            .default(Some(default))
            .initial(initial)
            .error(error),
        checks::hostname,
    )
}
