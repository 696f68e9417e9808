//! `rkos token`: the token agents join this cluster with, and how they join.
//!
//! On a server the token is k3s's node-token file (`K10<CA hash>::server:<secret>`, which
//! also lets agents check the server's certificate), else, before k3s has written it, the
//! configured `rkos.token`. The token goes to stdout alone, so `$(ssh server sudo rkos
//! token)` works; what it is for goes to stderr. `--hint` prints only how agents join (no
//! secret): the login banner and the motd show it.

use std::path::PathBuf;

use anyhow::{bail, Result};
use rkos_wizard::join::{self, Token};

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// Print how agents join this node (its server URLs), not the token.
    #[arg(long)]
    pub hint: bool,
    /// System root (tests use a temporary directory).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

pub fn run(a: &TokenArgs) -> Result<()> {
    let cfg = join::node_config(&a.root);
    if a.hint {
        for line in join::hint(&cfg, &join::addresses()) {
            println!("{line}");
        }
        return Ok(());
    }
    let token = match join::token(&a.root, &cfg) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("the token is readable by root only: run sudo rkos token")
        }
        Err(e) => bail!("reading {}: {e}", join::NODE_TOKEN),
    };
    let role = cfg.role();
    match token {
        Some(Token::NodeToken(t)) => {
            println!("{t}");
            if role == rkos_config::Role::Server {
                eprintln!("(k3s's {}: agents join with it)", join::NODE_TOKEN);
            }
        }
        Some(Token::Configured(t)) => {
            println!("{t}");
            eprintln!(
                "(the configured token: k3s has not written {} yet; agents may use this one)",
                join::NODE_TOKEN
            );
        }
        None if role == rkos_config::Role::Agent => {
            bail!("this agent has no token configured (rkos.token)")
        }
        None => bail!(
            "no token yet: k3s generates one when it first starts and writes it to {} \
             (systemctl status k3s)",
            join::NODE_TOKEN
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: TokenArgs,
        }
        let c = Cli::try_parse_from(["rkos", "--hint"]).unwrap();
        assert!(c.a.hint);
        assert_eq!(c.a.root, PathBuf::from("/"));
    }
}
