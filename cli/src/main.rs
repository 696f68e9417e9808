//! `rkos`: the node's command (config, install, upgrade, status). Installed also as `os-config`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "rkos", version, about = "rkos node command")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
