//! Checks of single values (host names, paths, modes, owners, URLs, tokens, labels, taints,
//! SSH and minisign keys) and the decoding of `write_files` content: pure functions of a
//! string, used by the config checks and by the wizard to check an answer as it is typed.

use base64::Engine;

pub fn check_hostname(h: &str) -> Result<(), String> {
    if h.len() > 253 {
        return Err("a host name is at most 253 characters".into());
    }
    if h.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{h}` has upper-case letters; Kubernetes node names are lower case (RFC 1123)"
        ));
    }
    check_hostname_loose(h).map_err(|e| format!("`{h}` is not an RFC 1123 host name: {e}"))
}

pub(super) fn check_hostname_loose(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("empty".into());
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated part is 1 to 63 characters".into());
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("only letters, digits, `-` and `.`".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part cannot start or end with `-`".into());
        }
    }
    Ok(())
}

pub fn check_abs_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("expected an absolute path, found `{p}`"));
    }
    if p.split('/').any(|s| s == "..") {
        return Err(format!("`..` is not allowed in `{p}`"));
    }
    if p.contains('\0') || p.contains('\n') {
        return Err("a path cannot hold NUL or newline characters".into());
    }
    Ok(())
}

/// `0644`, `644`, `0o644`, `1777`: a mode of at most 0o7777.
pub fn parse_mode(p: &str) -> Option<u32> {
    let t = p.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    if t.is_empty() || t.len() > 5 || !t.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
}

pub(super) fn check_owner(o: &str) -> Result<(), String> {
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    };
    let ok = match o.split_once(':') {
        Some((u, g)) => ok_part(u) && ok_part(g),
        None => ok_part(o),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected `user`, `user:group` or `uid:gid`, found `{o}`"
        ))
    }
}

pub enum DecodeError {
    Encoding(String),
    Content(String),
}

/// Decodes write_files content. Encodings: none, `b64`, `gz`, `gz+b64` and their long
/// spellings (`base64`, `gzip`, `gzip+base64`).
pub fn decode_content(content: &str, encoding: Option<&str>) -> Result<Vec<u8>, DecodeError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    let b64 = |s: &str| {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean.as_bytes())
            .map_err(|e| DecodeError::Content(format!("not valid base64: {e}")))
    };
    let gunzip = |b: &[u8]| {
        use std::io::Read;
        let mut out = Vec::new();
        // Cap the output: a tiny gzip bomb must not exhaust memory at boot.
        flate2::read::GzDecoder::new(b)
            .take(64 * 1024 * 1024 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Content(format!("not valid gzip data: {e}")))?;
        if out.len() > 64 * 1024 * 1024 {
            return Err(DecodeError::Content(
                "decompresses to more than 64 MiB".into(),
            ));
        }
        Ok(out)
    };
    match enc.as_deref() {
        None | Some("") | Some("text/plain") => Ok(content.as_bytes().to_vec()),
        Some("b64" | "base64") => b64(content),
        // Raw gzip bytes cannot be YAML text; they arrive base64-encoded as `!!binary`.
        Some("gz" | "gzip") if content.as_bytes().starts_with(&[0x1f, 0x8b]) => {
            gunzip(content.as_bytes())
        }
        Some("gz" | "gzip") => gunzip(&b64(content)?),
        Some("gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64") => gunzip(&b64(content)?),
        Some(other) => Err(DecodeError::Encoding(format!(
            "unknown encoding `{other}`: expected b64, gz or gz+b64"
        ))),
    }
}

pub fn check_server_url(u: &str) -> Result<(), String> {
    // Without a scheme the URL library speaks of "a relative URL without a base".
    if !u.contains("://") {
        return Err(format!(
            "`{u}` lacks https://; expected https://HOST[:PORT]"
        ));
    }
    let url = url::Url::parse(u)
        .map_err(|e| format!("`{u}` is not a URL ({e}); expected https://HOST[:PORT]"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "expected an https URL, found scheme `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// The server URL as k3s wants it: port 6443 when none is given.
pub fn server_url_with_port(u: &str) -> String {
    let u = u.trim().trim_end_matches('/');
    // Read the authority from the text: the url crate forgets an explicit default port
    // (`:443`), which here is not the default.
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host_port.rfind(':') {
        Some(i) => {
            !host_port[i..].contains(']') && host_port[i + 1..].chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    };
    if has_port {
        u.to_string()
    } else {
        format!("{scheme}://{authority}:6443{}", &rest[end..])
    }
}

pub fn check_token(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty token".into());
    }
    if t.chars().any(char::is_whitespace) {
        return Err("a token cannot contain spaces".into());
    }
    if let Some(rest) = t.strip_prefix("K10") {
        let (hash, creds) = rest
            .split_once("::")
            .ok_or("a secure token has the form K10<hex>::<user>:<password>")?;
        if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("a secure token has the form K10<hex>::<user>:<password> (the part after K10 must be hex)".into());
        }
        match creds.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => {}
            _ => return Err("a secure token has the form K10<hex>::<user>:<password>".into()),
        }
    }
    Ok(())
}

pub(super) fn label_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

pub(super) fn check_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.len() > 253
            || check_hostname_loose(p).is_err()
            || p.chars().any(|c| c.is_ascii_uppercase())
        {
            return Err(format!(
                "key `{k}`: the prefix must be a lower-case DNS subdomain"
            ));
        }
    }
    if !label_name_ok(name) {
        return Err(format!(
            "key `{k}`: the name must be 1 to 63 characters of letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

pub fn check_label(k: &str, v: &str) -> Result<(), String> {
    check_label_key(k)?;
    if !v.is_empty() && !label_name_ok(v) {
        return Err(format!(
            "value `{v}`: at most 63 characters of letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

pub fn check_taint(t: &str) -> Result<(), String> {
    let shape = "expected key[=value]:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute";
    let (kv, effect) = t
        .rsplit_once(':')
        .ok_or_else(|| format!("`{t}`: {shape}"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!("`{t}`: unknown effect `{effect}`; {shape}"));
    }
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    check_label(k, v).map_err(|e| format!("`{t}`: {e}"))
}

pub(super) fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn is_crypt_hash(p: &str) -> bool {
    let parts: Vec<&str> = p.split('$').collect();
    parts.len() >= 4
        && parts[0].is_empty()
        && !parts[1].is_empty()
        && !parts.last().is_some_and(|s| s.is_empty())
        && p.chars().all(|c| c.is_ascii_graphic())
}

pub(super) const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// An authorized_keys line (options allowed before the key type), `github:USER`,
/// `gitlab:USER` or an https URL.
pub fn check_ssh_key(k: &str) -> Result<(), String> {
    let k = k.trim();
    for prefix in ["github:", "gitlab:"] {
        if let Some(user) = k.strip_prefix(prefix) {
            let ok = !user.is_empty()
                && user.len() <= 255
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            return if ok {
                Ok(())
            } else {
                Err(format!(
                    "`{k}`: not a valid {} user name",
                    &prefix[..prefix.len() - 1]
                ))
            };
        }
    }
    if k.starts_with("http://") {
        return Err("keys from a URL must use https".into());
    }
    if k.starts_with("https://") {
        return url::Url::parse(k)
            .map(|_| ())
            .map_err(|e| format!("`{k}` is not a URL: {e}"));
    }
    let words: Vec<&str> = k.split_whitespace().collect();
    let Some(pos) = words.iter().position(|w| SSH_KEY_TYPES.contains(w)) else {
        let shown: String = k.chars().take(24).collect();
        return Err(format!(
            "`{shown}`: not an SSH public key (expected `TYPE BASE64 [comment]` with TYPE ssh-ed25519, ssh-rsa, ecdsa-sha2-*), github:USER, gitlab:USER or an https URL"
        ));
    };
    let ty = words[pos];
    let blob = words
        .get(pos + 1)
        .ok_or_else(|| format!("{ty} key without its base64 data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| format!("{ty} key: the key data is not valid base64"))?;
    // The blob starts with the key type as an SSH string: length (u32 BE) then the name.
    let inner = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    match inner {
        Some(name) if name == ty.as_bytes() => Ok(()),
        _ => Err(format!(
            "{ty} key: the key data does not hold a {ty} key (truncated or pasted wrong?)"
        )),
    }
}

/// A minisign public key: base64 of `Ed` + 8-byte key id + 32-byte ed25519 key. The
/// `untrusted comment:` line of a .pub file may be included.
pub fn check_minisign_key(k: &str) -> Result<(), String> {
    let line = k
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| "not a minisign public key: not valid base64".to_string())?;
    if bytes.len() != 42 || &bytes[..2] != b"Ed" {
        return Err("not a minisign public key (expected 42 bytes starting with `Ed`)".into());
    }
    Ok(())
}
