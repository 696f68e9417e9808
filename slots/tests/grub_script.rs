//! `grub/grub.cfg` run by a small interpreter of the GRUB script it uses (`set`, `if`/`elif`/
//! `else`/`fi` on `[ ... ]` tests and on a command's status, `load_env`, `save_env`,
//! `probe --fs-uuid`, `menuentry`), against the model in `boot.rs`, for every boot state, with `save_env`
//! working and failing. The real-GRUB test (`grub_qemu.rs`, QEMU) boots the same file; this
//! one needs no root and runs with the unit tests.

use std::collections::BTreeMap;

use rkos_slots::{BootState, GrubEnv, Outcome, Slot, Trial, GRUB_CFG, MAX_TRIES};

/// The filesystem UUID of the modelled `$root` (the RKOS_STATE volume).
const ROOT_UUID: &str = "0c9a4a52-5b1e-4f57-9e2f-3c1d2b7a6e10";

/// What one GRUB run did: the slot of the default entry, the slot of the fallback entry, and
/// the environment block afterwards.
struct Run {
    boot: Slot,
    fallback: Slot,
    env: BTreeMap<String, String>,
    /// Each menu entry's kernel command line, expanded.
    cmdlines: Vec<String>,
}

fn expand(word: &str, vars: &BTreeMap<String, String>) -> String {
    let word = word.trim().trim_matches('"');
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push_str(vars.get(&after[..end]).map_or("", String::as_str));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `[ "$a" = "b" ]`, `[ -n "$a" ]`, `[ -f /slots/X/manifest.json ]`, or `save_env --file F VARS...` (whose status is `saves`).
fn condition(
    cond: &str,
    vars: &BTreeMap<String, String>,
    env: &mut BTreeMap<String, String>,
    saves: bool,
) -> bool {
    let cond = cond.trim();
    if let Some(test) = cond.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
        let words: Vec<&str> = test.split_whitespace().collect();
        return match words.as_slice() {
            ["-n", x] => !expand(x, vars).is_empty(),
            [a, "=", b] => expand(a, vars) == expand(b, vars),
            // The modelled disk has both slots installed (each with its manifest).
            ["-f", path] => {
                let p = expand(path, vars);
                p == "/slots/A/manifest.json" || p == "/slots/B/manifest.json"
            }
            other => panic!("test not understood: {other:?}"),
        };
    }
    command(cond, vars, env, saves)
}

/// Runs a command; returns its status.
fn command(
    line: &str,
    vars: &BTreeMap<String, String>,
    env: &mut BTreeMap<String, String>,
    saves: bool,
) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.first().copied() {
        Some("save_env") => {
            if saves {
                for name in &words[3..] {
                    match vars.get(*name) {
                        Some(v) => env.insert(name.to_string(), v.clone()),
                        None => env.remove(*name),
                    };
                }
            }
            saves
        }
        Some(
            "serial" | "terminal_input" | "terminal_output" | "insmod" | "load_env" | "export",
        ) => true,
        other => panic!("command not understood: {other:?} in {line:?}"),
    }
}

fn run(cfg: &str, env: &BTreeMap<String, String>, saves: bool) -> Run {
    run_on("x86_64", cfg, env, saves)
}

/// [`run`] on GRUB built for `cpu` (GRUB's `$grub_cpu`: `x86_64`, `arm64`).
fn run_on(cpu: &str, cfg: &str, env: &BTreeMap<String, String>, saves: bool) -> Run {
    let mut vars = env.clone();
    let mut env = env.clone();
    vars.insert("prefix".into(), "(hd0,gpt3)/grub".into());
    vars.insert("grub_cpu".into(), cpu.into());
    let mut cmdlines = Vec::new();
    // Per open `if`: (the enclosing block runs, a branch of this `if` was taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let running = |stack: &[(bool, bool)]| stack.last().is_none_or(|s| s.0);
    let mut entries: Vec<String> = Vec::new();
    let mut lines = cfg.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(cond) = line
            .strip_prefix("if ")
            .and_then(|l| l.strip_suffix("; then"))
        {
            let outer = running(&stack);
            let taken = outer && condition(cond, &vars, &mut env, saves);
            stack.push((taken, taken || !outer));
        } else if let Some(cond) = line
            .strip_prefix("elif ")
            .and_then(|l| l.strip_suffix("; then"))
        {
            let (_, done) = stack.pop().expect("elif without if");
            let outer = running(&stack);
            let taken = !done && outer && condition(cond, &vars, &mut env, saves);
            stack.push((taken, done || taken));
        } else if line == "else" {
            let (_, done) = stack.pop().expect("else without if");
            stack.push((!done && running(&stack), true));
        } else if line == "fi" {
            stack.pop().expect("fi without if");
        } else if line.starts_with("menuentry ") {
            // The slot an entry boots is its `rkos.slot=` argument; every entry names the
            // state volume GRUB runs from (`rkos.state=`), so rkos-init binds to this disk.
            let mut slot = None;
            for body in lines.by_ref() {
                if body == "}" {
                    break;
                }
                let arg = |key: &str| {
                    body.split_whitespace()
                        .find_map(|w| w.strip_prefix(key))
                        .map(|v| expand(v, &vars))
                };
                if let Some(linux) = body.strip_prefix("linux ") {
                    let words: Vec<String> =
                        linux.split_whitespace().map(|w| expand(w, &vars)).collect();
                    cmdlines.push(words.join(" "));
                }
                if let Some(s) = arg("rkos.slot=") {
                    slot = Some(s);
                    assert_eq!(arg("rkos.state=").as_deref(), Some(ROOT_UUID), "{body}");
                }
            }
            entries.push(slot.expect("every entry names its slot"));
        } else if !running(&stack) {
        } else if let Some(probe) = line.strip_prefix("probe ") {
            let words: Vec<&str> = probe.split_whitespace().collect();
            match words.as_slice() {
                [set, "--fs-uuid", "$root"] => {
                    let name = set.strip_prefix("--set=").expect("probe --set=NAME");
                    vars.insert(name.to_string(), ROOT_UUID.to_string());
                }
                other => panic!("probe not understood: {other:?}"),
            }
        } else if let Some(assign) = line.strip_prefix("set ") {
            let (name, value) = assign.split_once('=').expect("set NAME=VALUE");
            vars.insert(name.to_string(), expand(value, &vars));
        } else if line.starts_with("load_env ") {
            // The block's variables replace those the script set before.
            vars.extend(env.clone());
        } else {
            command(line, &vars, &mut env, saves);
        }
    }
    assert!(stack.is_empty(), "unbalanced if");
    let entry = |var: &str| -> Slot {
        let i: usize = vars[var].parse().unwrap();
        entries[i].parse().unwrap()
    };
    Run {
        boot: entry("default"),
        fallback: entry("fallback"),
        env,
        cmdlines,
    }
}

fn env_of(st: &BootState) -> BTreeMap<String, String> {
    let mut env = GrubEnv::new();
    st.apply_to(&mut env).unwrap();
    env.vars()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn state_of(env: &BTreeMap<String, String>) -> BootState {
    let mut g = GrubEnv::new();
    for (k, v) in env {
        g.set(k, v).unwrap();
    }
    BootState::from_env(&g).unwrap()
}

fn every_state() -> Vec<BootState> {
    let mut out = Vec::new();
    for default in Slot::ALL {
        for last in [
            None,
            Some(Outcome::Good(default)),
            Some(Outcome::RolledBack(default.other())),
        ] {
            out.push(BootState {
                default,
                trial: None,
                last,
            });
            for tries_left in 0..=MAX_TRIES {
                let trial = Some(Trial {
                    slot: default.other(),
                    tries_left,
                });
                out.push(BootState {
                    default,
                    trial,
                    last,
                });
            }
        }
    }
    out
}

#[test]
fn grub_cfg_follows_the_model_when_save_env_works() {
    for st in every_state() {
        let got = run(GRUB_CFG, &env_of(&st), true);
        let (slot, next) = st.grub_boot();
        assert_eq!(got.boot, slot, "{st:?}");
        assert_eq!(state_of(&got.env), next, "{st:?}");
    }
}

#[test]
fn grub_cfg_boots_the_known_good_slot_when_save_env_fails() {
    for st in every_state() {
        let before = env_of(&st);
        let got = run(GRUB_CFG, &before, false);
        let (slot, next) = st.grub_boot_unsaved();
        assert_eq!(
            got.boot, slot,
            "a trial booted without its try saved: {st:?}"
        );
        assert_eq!(got.env, before);
        assert_eq!(next, st);
    }
}

#[test]
fn grub_cfg_falls_back_to_the_other_slot() {
    for st in every_state() {
        for saves in [true, false] {
            let got = run(GRUB_CFG, &env_of(&st), saves);
            assert_eq!(
                got.fallback,
                BootState::grub_fallback(got.boot),
                "{st:?}, save_env works: {saves}"
            );
        }
    }
}

/// The kernel's consoles follow GRUB's platform: the PC's first UART, or on arm64 the PL011
/// (QEMU's virt board) last, so that it becomes /dev/console.
#[test]
fn consoles_follow_the_platform() {
    let env = env_of(&BootState::default());
    for (cpu, last) in [
        ("x86_64", "console=ttyS0,115200"),
        ("arm64", "console=ttyAMA0,115200n8"),
    ] {
        let r = run_on(cpu, GRUB_CFG, &env, true);
        assert!(!r.cmdlines.is_empty());
        for c in &r.cmdlines {
            let consoles: Vec<&str> = c.split(' ').filter(|w| w.starts_with("console=")).collect();
            assert_eq!(consoles.first(), Some(&"console=tty0"), "{cpu}: {c}");
            assert_eq!(consoles.last(), Some(&last), "{cpu}: {c}");
        }
    }
}

/// Consoles named at install time (`rkos_consoles` in the environment block: the Raspberry
/// Pi image's screen and mini UART) replace the platform's: no `console=ttyS0`, which would
/// take the kernel's one 8250 console before `ttyS1`.
#[test]
fn consoles_from_the_environment_replace_the_platforms() {
    let mut env = env_of(&BootState::default());
    let pi = "console=tty0 console=ttyS1,115200";
    env.insert("rkos_consoles".into(), pi.into());
    for cpu in ["arm64", "x86_64"] {
        let r = run_on(cpu, GRUB_CFG, &env, true);
        assert!(!r.cmdlines.is_empty());
        for c in &r.cmdlines {
            let consoles: Vec<&str> = c.split(' ').filter(|w| w.starts_with("console=")).collect();
            assert_eq!(consoles.join(" "), pi, "{cpu}: {c}");
        }
    }
}
