//! The role's questions: which server, the server URL with its probe, the cluster token
//! (masked as typed, Tab shows it).

use super::ask::{Asker, Text};
use super::questions::retry;
use super::{Context, UiError, R};
use crate::answers::{Answers, Problem, Role};
use crate::checks;
use crate::line::Echo;
use crate::net::{self, Probe};

pub(super) fn ask_role(
    ctx: &Context,
    a: &mut Answers,
    refused: &[(Problem, String)],
    ask: &Asker,
) -> R<()> {
    match a.role {
        Some(Role::Server) => ask_server(ctx, a, refused, ask),
        Some(Role::Agent) => {
            if a.server_url.is_none() {
                a.server_url = Some(ask_server_url(ctx, a.skip_probe, refused, ask)?);
            }
            if a.token.is_none() {
                a.token = Some(ask_join_token(ctx, refused, ask)?);
            }
            Ok(())
        }
        None => Ok(()),
    }
}

fn ask_server(ctx: &Context, a: &mut Answers, refused: &[(Problem, String)], ask: &Asker) -> R<()> {
    let cur = &ctx.current;
    if a.server_url.is_none() && !a.cluster_init {
        let default = if cur.role != Some(Role::Server) {
            0
        } else if cur.cluster_init {
            1
        } else if cur.server_url.is_some() {
            2
        } else {
            0
        };
        let i = ask.select(
            "Which server?",
            &[
                "A new cluster (single server)",
                "The first server of a new HA cluster (embedded etcd)",
                "Another server joining an existing HA cluster",
            ],
            default,
        )?;
        match i {
            1 => a.cluster_init = true,
            2 => a.server_url = Some(ask_server_url(ctx, a.skip_probe, refused, ask)?),
            _ => {}
        }
    }
    if a.server_url.is_some() {
        if a.token.is_none() {
            a.token = Some(ask_join_token(ctx, refused, ask)?);
        }
        return Ok(());
    }
    if a.token.is_some() {
        return Ok(());
    }
    let current = cur.token.clone().filter(|_| cur.role == Some(Role::Server));
    ask.say("Agents join with the cluster token. Tab shows what you type.");
    let (initial, error) = retry(refused, "token");
    let t = ask.text(
        Text::new("Cluster token")
            .echo(Echo::Masked { revealed: false })
            .hint(if current.is_some() {
                "Enter keeps the current one"
            } else {
                "empty: generate a strong one"
            })
            .default(current.clone())
            .empty_secret(if current.is_some() {
                "(kept)"
            } else {
                "(generated)"
            })
            .initial(initial)
            .error(error),
        |s| {
            if s.is_empty() {
                Ok(())
            } else {
                checks::token(s)
            }
        },
    )?;
    if t.is_empty() {
        let token = crate::secrets::generate_token().map_err(|e| UiError::Other(e.to_string()))?;
        ask.say("");
        for line in crate::join::generated_token_lines(&token) {
            ask.say(line);
        }
        ask.say("");
        a.token = Some(token);
    } else {
        a.token = Some(t);
    }
    Ok(())
}

fn ask_server_url(
    ctx: &Context,
    skip_probe: bool,
    refused: &[(Problem, String)],
    ask: &Asker,
) -> R<String> {
    let (mut initial, mut error) = retry(refused, "server_url");
    loop {
        let text = ask.text(
            Text::new("Server URL")
                .hint(
                    ctx.current
                        .server_url
                        .clone()
                        .unwrap_or_else(|| "https://HOST:6443".into()),
                )
                .default(ctx.current.server_url.clone())
                .initial(initial.take())
                .error(error.take()),
            |s| checks::server_url(s).map(|_| ()),
        )?;
        let url = checks::server_url(&text).map_err(UiError::Other)?;
        if skip_probe {
            return Ok(url.as_url());
        }
        ask.say(format!("Checking that {} answers...", url.as_url()));
        match net::probe_server(&url, ctx.net_timeout) {
            Probe::Reachable => {
                ask.say("  it answers.");
                return Ok(url.as_url());
            }
            Probe::Unreachable(why) => {
                ask.warn(format!("  {} does not answer: {why}", url.as_url()));
                let i = ask.select(
                    "What now?",
                    &[
                        "Enter the URL again",
                        "Keep it (the server may not be up yet)",
                    ],
                    0,
                )?;
                if i == 1 {
                    return Ok(url.as_url());
                }
                initial = Some(text);
            }
        }
    }
}

/// The token of the cluster to join (an agent, or a server joining an HA cluster).
fn ask_join_token(ctx: &Context, refused: &[(Problem, String)], ask: &Asker) -> R<String> {
    let cur = &ctx.current;
    let current = cur.token.clone().filter(|_| cur.server_url.is_some());
    ask.say(format!(
        "The token: `{}` on the server prints it. Tab shows what you type.",
        crate::join::TOKEN_COMMAND
    ));
    let (initial, error) = retry(refused, "token");
    ask.text(
        Text::new("Cluster token")
            .echo(Echo::Masked { revealed: false })
            .hint(if current.is_some() {
                "Enter keeps the current one"
            } else {
                "required"
            })
            .default(current)
            .initial(initial)
            .error(error),
        checks::token,
    )
}
