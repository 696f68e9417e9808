//! The kernel command line: the only splitter in rkos, and the keys of the boot parameters.
//!
//! The rules, each with its test below:
//! - **Words** are separated by whitespace (spaces, tabs, newlines; any number of them)
//!   outside double quotes. The newline `/proc/cmdline` ends with is not part of the line.
//! - **Quotes**: a double quote anywhere in a word switches quoting on or off and is
//!   removed; there are no escapes. `k="a b"` and `"k=a b"` are both key `k`, value `a b`.
//!   The kernel groups words the same way; it removes only the quotes around a whole word or
//!   value, so the two readings differ only for a quote inside a value (`k=a"b c"`), which
//!   no rkos key uses. An **unterminated quote** runs to the end of the line, as in the kernel.
//! - **`key=value`** splits at the first `=`: `k=` has the empty value, a **bare key**
//!   (`quiet`, `rkos.debug`) has none, and reads as the empty value through [`Cmdline::get`].
//! - **`--`** (a word of its own, quoted or not) ends the kernel's parameters: the kernel
//!   hands the words after it to init as arguments. They are not parameters for rkos either:
//!   no key after `--` counts, for rkos-init or for the config, so the two never disagree
//!   about a key (rkos-init always stopped there; the config loader used to read on).
//! - **Repeated keys**: the last occurrence wins ([`Cmdline::get`], [`Cmdline::flag`]). GRUB
//!   appends the operator's additions after the built-in arguments, so the later word is the
//!   intended one; an earlier value is ignored even when it is malformed.
//!   [`Cmdline::get_all`] gives every occurrence in order, for keys that repeat on purpose
//!   (`console=`, the config's lists).

use crate::{BootMode, BootModeError, Slot, SlotError};

/// The keys rkos-init acts on. Every other `rkos.*`/`k3os.*` key is configuration.
pub mod keys {
    /// `rkos.mode=live|disk|netboot|install|rescue`; absent: detected from the volumes.
    pub const MODE: &str = "rkos.mode";
    /// k3OS's spelling of [`MODE`], still accepted.
    pub const MODE_K3OS: &str = "k3os.mode";
    /// `rkos.slot=A|B`, written by the installed grub.cfg.
    pub const SLOT: &str = "rkos.slot";
    /// `rkos.state=UUID`, written by the installed grub.cfg: the filesystem UUID of the
    /// `RKOS_STATE` volume GRUB booted from. rkos-init takes that volume, and the
    /// `RKOS_DATA` on the same disk, whatever other disks carry the labels.
    pub const STATE: &str = "rkos.state";
    /// Netboot: the image's URL and its sha256.
    pub const IMAGE: &str = "rkos.image";
    pub const IMAGE_SHA256: &str = "rkos.image.sha256";
    /// Netboot: the node's config.yaml, `${mac}`, `${uuid}` and `${hostname}` substituted.
    pub const CONFIG_URL: &str = "rkos.config_url";
    /// Netboot: seconds for the whole network boot (DHCP and downloads), default 300.
    pub const NETBOOT_TIMEOUT: &str = "rkos.netboot.timeout";
    /// Netboot: the label of a local disk for `/var/lib/rancher` (containerd's images), off
    /// when absent.
    pub const NETBOOT_SCRATCH: &str = "rkos.netboot.scratch";
    /// The boot NIC, as PXELINUX and iPXE write it: `01-aa-bb-cc-dd-ee-ff`.
    pub const BOOTIF: &str = "BOOTIF";
    /// Seconds to wait for slow boot devices.
    pub const WAIT: &str = "rkos.wait";
    /// Log every module load and mount to the kernel log.
    pub const DEBUG: &str = "rkos.debug";
    /// The kernel's own keys rkos-init reads: the consoles and the real root's init.
    pub const CONSOLE: &str = "console";
    pub const INIT: &str = "init";

    /// The first segment (after `rkos.`/`k3os.`) of every boot parameter: the config skips
    /// these keys and everything below them.
    pub const BOOT_PARAMS: &[&str] = &[
        "mode",
        "slot",
        "state",
        "image",
        "wait",
        "debug",
        "config_url",
        "netboot",
    ];
    /// The prefixes of rkos's keys.
    pub const PREFIXES: [&str; 2] = ["rkos.", "k3os."];
}

/// One word of the command line, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub key: String,
    /// `None` for a bare key; `Some("")` for `key=`.
    pub value: Option<String>,
    /// Whether any part of the word was in quotes (the config reads the value as a string).
    pub quoted: bool,
    /// 1-based character column where the word starts, for messages.
    pub column: usize,
}

impl Word {
    fn new(text: String, quoted: bool, column: usize) -> Self {
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (text, None),
        };
        Word {
            key,
            value,
            quoted,
            column,
        }
    }

    /// The value, with a bare key reading as the empty value.
    pub fn value_or_empty(&self) -> &str {
        self.value.as_deref().unwrap_or("")
    }

    /// The key without its `rkos.` or `k3os.` prefix; `None` for any other key.
    pub fn rkos_key(&self) -> Option<&str> {
        keys::PREFIXES.iter().find_map(|p| self.key.strip_prefix(p))
    }
}

/// Splits a command line into words by the rules above; stops at `--`.
pub fn words(cmdline: &str) -> Vec<Word> {
    let cmdline = cmdline.strip_suffix('\n').unwrap_or(cmdline);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut in_quote = false;
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in cmdline.chars().enumerate() {
        if c.is_whitespace() && !in_quote {
            if in_word {
                if cur == "--" {
                    return out;
                }
                out.push(Word::new(std::mem::take(&mut cur), quoted, start + 1));
                in_word = false;
            }
            continue;
        }
        if !in_word {
            in_word = true;
            start = i;
            quoted = false;
        }
        if c == '"' {
            in_quote = !in_quote;
            quoted = true;
            continue;
        }
        cur.push(c);
    }
    if in_word && cur != "--" {
        out.push(Word::new(cur, quoted, start + 1));
    }
    out
}

/// Whether a flag's value means on: a bare key or any value but `0`, `false`, `no`, `off`
/// (in any case).
pub fn truthy(value: Option<&str>) -> bool {
    !value.is_some_and(|v| {
        ["0", "false", "no", "off"]
            .iter()
            .any(|f| v.eq_ignore_ascii_case(f))
    })
}

/// A split command line, looked up by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    words: Vec<Word>,
}

impl Cmdline {
    pub fn parse(cmdline: &str) -> Self {
        Cmdline {
            words: words(cmdline),
        }
    }

    pub fn words(&self) -> &[Word] {
        &self.words
    }

    /// The value of the last `key`; `Some("")` for a bare key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_any(&[key])
    }

    /// The value of the last word whose key is any of `keys` (a key and its aliases).
    pub fn get_any(&self, keys: &[&str]) -> Option<&str> {
        self.last_of(keys).map(Word::value_or_empty)
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.words
            .iter()
            .filter(move |w| w.key == key)
            .map(Word::value_or_empty)
    }

    /// Whether the last `key` is on (see [`truthy`]); false when absent.
    pub fn flag(&self, key: &str) -> bool {
        self.last_of(&[key])
            .is_some_and(|w| truthy(w.value.as_deref()))
    }

    /// The `rkos.*` and `k3os.*` words in order, each with its key less the prefix.
    pub fn rkos_words(&self) -> impl Iterator<Item = (&str, &Word)> {
        self.words.iter().filter_map(|w| Some((w.rkos_key()?, w)))
    }

    /// `rkos.mode=` (or `k3os.mode=`), if given.
    pub fn mode(&self) -> Option<Result<BootMode, BootModeError>> {
        self.get_any(&[keys::MODE, keys::MODE_K3OS]).map(str::parse)
    }

    /// `rkos.slot=`, if given.
    pub fn slot(&self) -> Option<Result<Slot, SlotError>> {
        self.get(keys::SLOT).map(str::parse)
    }

    fn last_of(&self, keys: &[&str]) -> Option<&Word> {
        self.words
            .iter()
            .rev()
            .find(|w| keys.contains(&w.key.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(cmdline: &str) -> Vec<(String, Option<String>)> {
        words(cmdline)
            .into_iter()
            .map(|w| (w.key, w.value))
            .collect()
    }

    fn kv(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn quotes_group_and_are_removed() {
        let w =
            words(r#"BOOT_IMAGE=/boot/vmlinuz rkos.hostname="my node" "a=b c" k=x"y z"w plain"#);
        let got: Vec<_> = w
            .iter()
            .map(|w| (w.key.as_str(), w.value.as_deref(), w.quoted))
            .collect();
        assert_eq!(
            got,
            [
                ("BOOT_IMAGE", Some("/boot/vmlinuz"), false),
                ("rkos.hostname", Some("my node"), true),
                ("a", Some("b c"), true),
                ("k", Some("xy zw"), true),
                ("plain", None, false),
            ]
        );
        // Quoting a whole word, as GRUB users write option-like values.
        let w = words(r#"quiet rkos.labels[desc]="a b c" "rkos.k3s_args=--x y" x"#);
        assert_eq!(w.len(), 4);
        assert_eq!(w[1].value.as_deref(), Some("a b c"));
        assert_eq!(w[2].key, "rkos.k3s_args");
        assert_eq!(w[2].value.as_deref(), Some("--x y"));
        assert!(w[2].quoted && !w[3].quoted);
        // No escapes: a backslash is an ordinary character and does not protect the quote.
        assert_eq!(pairs(r#"k="a\" b"#), [kv("k", Some(r"a\")), kv("b", None)]);
    }

    #[test]
    fn double_dash_ends_the_parameters() {
        assert_eq!(
            pairs("quiet rkos.mode=live -- rkos.mode=disk single"),
            [kv("quiet", None), kv("rkos.mode", Some("live"))]
        );
        assert_eq!(pairs(r#"a "--" b"#), [kv("a", None)]);
        assert_eq!(pairs("a --"), [kv("a", None)]);
        // Only `--` alone: an option-like word or value is an ordinary word.
        assert_eq!(
            pairs("--x rkos.k3s_args=--y"),
            [kv("--x", None), kv("rkos.k3s_args", Some("--y"))]
        );
        let c = Cmdline::parse("rkos.mode=live -- rkos.mode=disk rkos.hostname=x");
        assert_eq!(c.mode(), Some(Ok(BootMode::Live)));
        assert_eq!(c.rkos_words().count(), 1);
    }

    #[test]
    fn repeated_keys_last_wins() {
        let c = Cmdline::parse(
            "console=tty0 rkos.slot=A rkos.mode=disk k3os.mode=live rkos.slot=B console=ttyS0 rkos.debug rkos.debug=0",
        );
        assert_eq!(c.get("rkos.slot"), Some("B"));
        assert_eq!(c.slot(), Some(Ok(Slot::B)));
        assert_eq!(c.get_all("console").collect::<Vec<_>>(), ["tty0", "ttyS0"]);
        assert!(!c.flag("rkos.debug"));
        // An alias counts as the same key: whichever comes last.
        assert_eq!(c.mode(), Some(Ok(BootMode::Live)));
        let c = Cmdline::parse("k3os.mode=live rkos.mode=disk");
        assert_eq!(c.mode(), Some(Ok(BootMode::Disk)));
        // A malformed earlier value is overridden, a malformed last one is what is read.
        assert_eq!(
            Cmdline::parse("rkos.slot=C rkos.slot=a").slot(),
            Some(Ok(Slot::A))
        );
        assert_eq!(
            Cmdline::parse("rkos.slot=A rkos.slot=C").slot(),
            Some(Err(SlotError("C".into())))
        );
    }

    #[test]
    fn empty_values() {
        let c = Cmdline::parse(r#"rkos.image= init="" """#);
        assert_eq!(
            c.words()
                .iter()
                .map(|w| (w.key.as_str(), w.value.as_deref()))
                .collect::<Vec<_>>(),
            [("rkos.image", Some("")), ("init", Some("")), ("", None)]
        );
        assert_eq!(c.get("rkos.image"), Some(""));
        assert_eq!(c.get("rkos.wait"), None);
        assert!(c.flag("init"), "an empty value is not `off`");
        // The value is everything after the first `=`.
        assert_eq!(pairs("rkos.labels=a=b"), [kv("rkos.labels", Some("a=b"))]);
    }

    #[test]
    fn bare_keys_are_flags() {
        let c = Cmdline::parse("quiet rkos.debug rkos.install.silent=OFF rkos.x=no rkos.y=1");
        assert_eq!(c.words()[0].value, None);
        assert_eq!(c.get("quiet"), Some(""));
        assert!(c.flag("quiet") && c.flag("rkos.debug") && c.flag("rkos.y"));
        assert!(!c.flag("rkos.install.silent") && !c.flag("rkos.x"));
        assert!(!c.flag("absent"));
        assert!(truthy(None) && truthy(Some("yes")) && !truthy(Some("False")));
    }

    #[test]
    fn odd_whitespace() {
        let line = "\t quiet  \t rkos.x=1\n\nrkos.é=2   \n";
        assert_eq!(
            pairs(line),
            [
                kv("quiet", None),
                kv("rkos.x", Some("1")),
                kv("rkos.é", Some("2"))
            ]
        );
        let cols: Vec<_> = words(line).iter().map(|w| w.column).collect();
        assert_eq!(cols, [3, 12, 22]);
        // Columns count characters and start at the opening quote.
        let cols: Vec<_> = words(r#"é "k=a b" x"#).iter().map(|w| w.column).collect();
        assert_eq!(cols, [1, 3, 11]);
        assert!(words("").is_empty() && words(" \n").is_empty());
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        assert_eq!(
            pairs("a rkos.hostname=\"x y  z\n"),
            [kv("a", None), kv("rkos.hostname", Some("x y  z"))]
        );
        // ... and swallows a `--` inside it.
        assert_eq!(pairs("k=\"a -- b"), [kv("k", Some("a -- b"))]);
    }

    #[test]
    fn rkos_words_strip_the_prefix() {
        let c = Cmdline::parse("ro rkos.hostname=a k3os.labels[x]=1 rkosx=2 console=ttyS0");
        let keys: Vec<_> = c.rkos_words().map(|(k, w)| (k, w.column)).collect();
        assert_eq!(keys, [("hostname", 4), ("labels[x]", 20)]);
    }

    #[test]
    fn every_boot_parameter_is_skipped_by_the_config() {
        for key in [
            keys::MODE,
            keys::MODE_K3OS,
            keys::SLOT,
            keys::IMAGE,
            keys::IMAGE_SHA256,
            keys::WAIT,
            keys::DEBUG,
            keys::CONFIG_URL,
            keys::NETBOOT_TIMEOUT,
            keys::NETBOOT_SCRATCH,
        ] {
            let w = &words(key)[0];
            let first = w.rkos_key().unwrap().split('.').next().unwrap();
            assert!(keys::BOOT_PARAMS.contains(&first), "{key}");
        }
    }
}
