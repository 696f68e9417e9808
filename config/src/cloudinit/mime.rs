//! MIME multipart user-data, as `cloud-localds` and `write-mime-multipart` (Python's email
//! package) write it: split into its parts, nested multiparts flattened, each part's body
//! decoded (7bit/8bit as is, base64, quoted-printable).
//!
//! Written by hand: the subset cloud-init seeds use is small (headers, one boundary per
//! level, three transfer encodings), and the parts must keep their line numbers in the file
//! so errors inside them point at the right line; the MIME crates do not say where a part
//! began.

use base64::Engine;

/// One leaf part of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based, in message order.
    pub index: usize,
    /// `text/cloud-config`, lower case, without parameters; empty when the part has none.
    pub content_type: String,
    /// The `filename` of its Content-Disposition, if any.
    pub filename: Option<String>,
    pub body: String,
    /// The file line (1-based) the body starts on, when the body is the file's text as is
    /// (not base64 or quoted-printable).
    pub first_line: Option<usize>,
}

/// A message that cannot be split, with the file line (1-based) where that became clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeError {
    pub line: usize,
    pub message: String,
}

const MAX_DEPTH: usize = 8;

/// Whether `text` is a MIME message rather than a `#cloud-config` or a script: it starts
/// with a header cloud-init's own writers put first.
pub fn is_mime(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
    first.starts_with("content-type:") || first.starts_with("mime-version:")
}

/// The leaf parts of the message `text`.
pub fn split(text: &str) -> Result<Vec<Part>, MimeError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut parts = Vec::new();
    entity(&lines, 0, 0, &mut parts)?;
    Ok(parts)
}

struct Headers {
    content_type: String,
    boundary: Option<String>,
    encoding: String,
    filename: Option<String>,
    /// Index (in the entity's lines) of the first body line.
    body_start: usize,
    /// Line of the Content-Type header, for errors.
    type_line: usize,
}

/// `Content-Type: multipart/mixed; boundary="x"` -> ("multipart/mixed", [("boundary", "x")]).
fn value_and_params(v: &str) -> (String, Vec<(String, String)>) {
    let mut it = v.split(';');
    let main = it.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (main, params)
}

fn headers(lines: &[&str], offset: usize) -> Headers {
    let mut h = Headers {
        content_type: String::new(),
        boundary: None,
        encoding: String::new(),
        filename: None,
        body_start: lines.len(),
        type_line: offset + 1,
    };
    let mut fields: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            h.body_start = i + 1;
            break;
        }
        match fields.last_mut() {
            // folded header: the line continues the previous one
            Some((_, f)) if line.starts_with([' ', '\t']) => {
                f.push(' ');
                f.push_str(line.trim());
            }
            _ => fields.push((i, line.to_string())),
        }
    }
    for (i, f) in fields {
        let Some((name, value)) = f.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => {
                let (main, params) = value_and_params(value);
                h.content_type = main;
                h.boundary = params
                    .into_iter()
                    .find_map(|(k, v)| (k == "boundary").then_some(v));
                h.type_line = offset + i + 1;
            }
            "content-transfer-encoding" => h.encoding = value.trim().to_ascii_lowercase(),
            "content-disposition" => {
                h.filename = value_and_params(value)
                    .1
                    .into_iter()
                    .find_map(|(k, v)| (k == "filename").then_some(v));
            }
            _ => {}
        }
    }
    h
}

/// Splits one entity (headers, blank line, body) whose first line is file line `offset + 1`.
fn entity(
    lines: &[&str],
    offset: usize,
    depth: usize,
    out: &mut Vec<Part>,
) -> Result<(), MimeError> {
    if depth > MAX_DEPTH {
        return Err(MimeError {
            line: offset + 1,
            message: format!("multipart nested deeper than {MAX_DEPTH} levels"),
        });
    }
    let h = headers(lines, offset);
    let body = &lines[h.body_start.min(lines.len())..];
    let body_offset = offset + h.body_start;
    if !h.content_type.starts_with("multipart/") {
        let raw = body.join("\n");
        let (text, as_is) = decode(&raw, &h.encoding).map_err(|message| MimeError {
            line: body_offset + 1,
            message: format!("part {}: {message}", out.len() + 1),
        })?;
        out.push(Part {
            index: out.len() + 1,
            content_type: h.content_type,
            filename: h.filename,
            body: text,
            first_line: as_is.then_some(body_offset + 1),
        });
        return Ok(());
    }
    let boundary = h.boundary.ok_or_else(|| MimeError {
        line: h.type_line,
        message: format!("{} without a boundary parameter", h.content_type),
    })?;
    let delim = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut start: Option<usize> = None;
    let mut found = false;
    for (i, line) in body.iter().enumerate() {
        let l = line.trim_end();
        let is_close = l == close;
        if l == delim || is_close {
            if let Some(s) = start {
                entity(&body[s..i], body_offset + s, depth + 1, out)?;
            }
            found = true;
            start = (!is_close).then_some(i + 1);
            if is_close {
                break;
            }
        }
    }
    if !found {
        return Err(MimeError {
            line: h.type_line,
            message: format!("no part starts with the boundary `{delim}`"),
        });
    }
    // no closing delimiter: the last part runs to the end (Python's parser allows it too)
    if let Some(s) = start {
        entity(&body[s..], body_offset + s, depth + 1, out)?;
    }
    Ok(())
}

/// The text of a body and whether it is the file's text as is.
fn decode(raw: &str, encoding: &str) -> Result<(String, bool), String> {
    let utf8 = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| "the decoded part is not UTF-8 text".to_string())
    };
    match encoding {
        "" | "7bit" | "8bit" | "binary" => Ok((raw.to_string(), true)),
        "base64" => {
            let clean: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(clean.as_bytes())
                .map_err(|e| format!("not valid base64: {e}"))?;
            Ok((utf8(bytes)?, false))
        }
        "quoted-printable" => Ok((utf8(quoted_printable(raw)?)?, false)),
        other => Err(format!(
            "unknown Content-Transfer-Encoding `{other}` (expected 7bit, 8bit, base64 or quoted-printable)"
        )),
    }
}

fn quoted_printable(raw: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let lines: Vec<&str> = raw.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                let hex = line
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad quoted-printable escape at `{}`", &line[i..]))?;
                out.push(hex);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        if !soft && n + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Python's email package writes for `write-mime-multipart` (as cloud-localds
    /// embeds it): a 7bit cloud-config and a base64 script.
    const MESSAGE: &str = "Content-Type: multipart/mixed; boundary=\"===============4291==\"\n\
MIME-Version: 1.0\n\
\n\
--===============4291==\n\
Content-Type: text/cloud-config; charset=\"us-ascii\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: 7bit\n\
Content-Disposition: attachment; filename=\"config.yaml\"\n\
\n\
#cloud-config\n\
hostname: mime-node\n\
\n\
--===============4291==\n\
Content-Type: text/x-shellscript; charset=\"utf-8\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: base64\n\
Content-Disposition: attachment;\n filename=\"setup.sh\"\n\
\n\
IyEvYmluL3NoCmVjaG8gaMOpCg==\n\
\n\
--===============4291==--\n";

    #[test]
    fn splits_what_write_mime_multipart_writes() {
        assert!(is_mime(MESSAGE));
        assert!(!is_mime("#cloud-config\n"));
        let parts = split(MESSAGE).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "text/cloud-config");
        assert_eq!(parts[0].filename.as_deref(), Some("config.yaml"));
        assert_eq!(parts[0].body, "#cloud-config\nhostname: mime-node\n");
        assert_eq!(parts[0].first_line, Some(10));
        assert_eq!(parts[1].content_type, "text/x-shellscript");
        assert_eq!(
            parts[1].filename.as_deref(),
            Some("setup.sh"),
            "folded header"
        );
        assert_eq!(parts[1].body, "#!/bin/sh\necho hé\n");
        assert_eq!(parts[1].first_line, None);
        assert_eq!(parts[1].index, 2);
    }

    #[test]
    fn nested_quoted_printable_and_crlf() {
        let msg = "Content-Type: multipart/mixed; boundary=a\r\n\r\npreamble\r\n--a\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/cloud-config\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
#cloud-config\r\nhostname: a=3Db\r\nrunc=\r\nmd: []\r\n--b--\r\n--a--\r\n";
        let parts = split(msg).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, "#cloud-config\nhostname: a=b\nruncmd: []");
    }

    #[test]
    fn broken_messages_say_where() {
        let e = split("Content-Type: multipart/mixed\n\n--x\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (1, "multipart/mixed without a boundary parameter")
        );
        let e = split("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\n--yy\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "no part starts with the boundary `--zz`")
        );
        let e = split(
            "Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Transfer-Encoding: base64\n\n@@@\n--q--\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 6);
        assert!(
            e.message.starts_with("part 1: not valid base64"),
            "{}",
            e.message
        );
    }
}
