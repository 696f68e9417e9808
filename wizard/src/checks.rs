//! Checks of single answers, run as the user types so a mistake is caught at the question
//! that caused it. The whole config is validated again with `rkos_config::validate_text`
//! before anything is written (see [`crate::answers::Answers::to_config_yaml`]); these
//! checks exist to give the message at the right question, not to replace that.

use rkos_config::validate;

use std::net::IpAddr;

/// Default port of the k3s supervisor/API (what k3s itself assumes when none is given).
pub const DEFAULT_K3S_PORT: u16 = 6443;

/// A server URL as the agent will use it: `https://HOST[:PORT]` with the port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    pub fn as_url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// `https`, a host, an optional port (default 6443), nothing after the authority but `/`.
pub fn server_url(text: &str) -> Result<ServerUrl, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the server URL is required (e.g. https://10.0.0.1:6443)".into());
    }
    const FORM: &str = "write it as https://HOST:PORT, e.g. https://10.0.0.1:6443";
    if !text.contains("://") {
        return Err(format!("`{text}` lacks https://; {FORM}"));
    }
    let parsed =
        url::Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL ({e}); {FORM}"))?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "the server URL must use https (k3s serves only TLS), not `{}`",
            parsed.scheme()
        ));
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err("the server URL has no host".into()),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the server URL must not carry a user or password; the token is asked next".into(),
        );
    }
    if !(parsed.path() == "/" || parsed.path().is_empty())
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(format!(
            "the server URL is only https://HOST:PORT, without a path (got `{}`)",
            parsed.path()
        ));
    }
    let port = parsed.port().unwrap_or(DEFAULT_K3S_PORT);
    if port == 0 {
        return Err("the server URL's port must be 1-65535".into());
    }
    Ok(ServerUrl { host, port })
}

/// QEMU gives the first network card of every VM started without `mac=` this address
/// (the next cards count up from it): VMs made that way all share it.
const QEMU_DEFAULT_MAC: &str = "52:54:00:12:34:5";

/// Why a default host name made from `mac` may be shared with other machines: QEMU's
/// default address, or any locally administered one (set by a hypervisor or by hand, so
/// clones may carry the same). `None` for a vendor's globally unique address.
pub fn shared_mac_note(mac: &str) -> Option<String> {
    let mac = mac.trim().to_ascii_lowercase();
    if mac.starts_with(QEMU_DEFAULT_MAC) && mac.len() == QEMU_DEFAULT_MAC.len() + 1 {
        return Some(format!(
            "{mac} is QEMU's default MAC address: every VM started without its own has it, \
             and with it the same default name."
        ));
    }
    let first = u8::from_str_radix(mac.get(..2)?, 16).ok()?;
    (first & 0x02 != 0).then(|| {
        format!(
            "{mac} is a locally administered MAC address (set by a hypervisor or by hand): \
             clones may share it, and with it the default name."
        )
    })
}

/// k3s accepts a secure token `K10<hex>::<user>:<password>` or any plain secret without
/// whitespace; the rule itself is rkos-config's, so the wizard never accepts what the node
/// would reject.
pub fn token(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!(
            "a token is required: `{}` on the server prints it",
            crate::join::TOKEN_COMMAND
        ));
    }
    validate::check_token(text)
}

/// RFC 1123 host name, by rkos-config's rule.
pub fn hostname(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("a host name has 1 to 253 characters".into());
    }
    validate::check_hostname(text)
}

/// GitHub's own rule for user names: alphanumerics and single hyphens, 1-39 characters.
pub fn github_user(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 39
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!("`{text}` is not a GitHub user name"))
    }
}

/// A pasted OpenSSH public key line, by rkos-config's rule (type known, base64 data holding
/// a key of that type).
pub fn ssh_key(text: &str) -> Result<(), String> {
    validate::check_ssh_key(text)
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6.
pub fn cidr(text: &str) -> Result<(), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` needs a prefix length, e.g. 192.168.1.10/24"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(format!("the prefix length must be 0-{max}, not `{prefix}`")),
    }
}

pub fn ip(text: &str) -> Result<(), String> {
    text.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("`{text}` is not an IP address"))
}

/// A WPA passphrase is 8-63 printable ASCII characters (or 64 hex digits, a raw PSK).
pub fn wifi_passphrase(text: &str) -> Result<(), String> {
    let hex_psk = text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit());
    if hex_psk || ((8..=63).contains(&text.len()) && text.bytes().all(|b| (32..127).contains(&b))) {
        Ok(())
    } else {
        Err("a WPA passphrase has 8 to 63 printable characters".into())
    }
}

pub fn ssid(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 32 {
        Err("an SSID has 1 to 32 bytes".into())
    } else {
        Ok(())
    }
}

/// The password for `rkos`: something a person can type on a console. A `$...` crypt hash
/// given in an answers file is taken as is.
pub fn password(text: &str) -> Result<(), String> {
    if text.starts_with('$') {
        return Ok(());
    }
    if text.chars().count() < 6 {
        return Err("the password needs at least 6 characters".into());
    }
    if text.chars().any(char::is_control) {
        return Err("the password must not contain control characters".into());
    }
    Ok(())
}

/// A real ed25519 public key made with ssh-keygen for the tests (its private half was
/// thrown away).
#[cfg(test)]
pub(crate) const TEST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB/RceORxdEERGk8KvkidMAmix4j5cHVIHby test@rkos";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            server_url("https://10.0.0.1").unwrap(),
            ServerUrl {
                host: "10.0.0.1".into(),
                port: 6443
            }
        );
        assert_eq!(
            server_url("https://k3s.lan:7443/").unwrap().as_url(),
            "https://k3s.lan:7443"
        );
        assert_eq!(
            server_url("https://[fd00::1]").unwrap().as_url(),
            "https://[fd00::1]:6443"
        );
        assert!(server_url("http://10.0.0.1:6443")
            .unwrap_err()
            .contains("https"));
        let bare = server_url("10.0.0.1:6443").unwrap_err();
        assert!(
            bare.contains("lacks https://") && !bare.contains("relative URL"),
            "{bare}"
        );
        assert!(server_url("k3s.lan:6443")
            .unwrap_err()
            .contains("lacks https://"));
        assert!(server_url("https://").is_err());
        assert!(server_url("https://h:6443/v1")
            .unwrap_err()
            .contains("path"));
        assert!(server_url("https://u:p@h").unwrap_err().contains("user"));
        assert!(server_url("").unwrap_err().contains("required"));
        assert!(server_url("https://h:0").is_err());
    }

    #[test]
    fn shared_macs() {
        let qemu = shared_mac_note("52:54:00:12:34:56").unwrap();
        assert!(qemu.contains("QEMU's default"), "{qemu}");
        let local = shared_mac_note("52:54:00:ab:cd:ef").unwrap();
        assert!(local.contains("locally administered"), "{local}");
        assert!(shared_mac_note("02:00:00:00:00:01").is_some());
        assert_eq!(shared_mac_note("00:1b:21:3a:4f:10"), None);
        assert_eq!(shared_mac_note("3c:ec:ef:00:11:22"), None);
        assert_eq!(shared_mac_note(""), None);
    }

    #[test]
    fn tokens() {
        assert!(token("").unwrap_err().contains("required"));
        assert!(token("a b").is_err());
        assert!(token("plainsecret").is_ok());
        assert!(token("K10abc123::server:secret").is_ok());
        assert!(token("K10xyz::server:secret").is_err());
        assert!(token("K10abc::server").is_err());
    }

    #[test]
    fn hostnames() {
        assert!(hostname("node-1").is_ok());
        assert!(hostname("a.b.c").is_ok());
        assert!(hostname("Node").is_err());
        assert!(hostname("-a").is_err());
        assert!(hostname("a..b").is_err());
        assert!(hostname(&"a".repeat(64)).is_err());
        assert!(hostname("").is_err());
    }

    #[test]
    fn ssh_keys() {
        let k = TEST_KEY;
        assert!(ssh_key(k).is_ok(), "{:?}", ssh_key(k));
        assert!(ssh_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGZ4").is_err());
        assert!(ssh_key("ssh-ed25519 !!!").is_err());
        assert!(ssh_key("hello").is_err());
        assert!(ssh_key("ssh-dss AAAA").unwrap_err().contains("key data"));
        let unknown = ssh_key("ssh-foo AAAA").unwrap_err();
        assert!(
            unknown.contains("not an SSH public key") && unknown.contains("ssh-ed25519"),
            "{unknown}"
        );
    }

    #[test]
    fn addresses() {
        assert!(cidr("192.168.1.10/24").is_ok());
        assert!(cidr("fd00::5/64").is_ok());
        assert!(cidr("192.168.1.10").unwrap_err().contains("prefix"));
        assert!(cidr("192.168.1.10/33").is_err());
        assert!(cidr("300.1.1.1/24").is_err());
        assert!(ip("10.0.0.1").is_ok());
        assert!(ip("10.0.0").is_err());
    }

    #[test]
    fn wifi_and_users_and_passwords() {
        assert!(wifi_passphrase("short").is_err());
        assert!(wifi_passphrase("longenough").is_ok());
        assert!(wifi_passphrase(&"ab".repeat(32)).is_ok());
        assert!(ssid("").is_err());
        assert!(github_user("octo-cat").is_ok());
        assert!(github_user("bad--name").is_err());
        assert!(github_user("-x").is_err());
        assert!(password("abc").is_err());
        assert!(password("correct horse").is_ok());
        assert!(password("$6$salt$hash").is_ok());
    }
}
