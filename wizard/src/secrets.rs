//! Secrets the wizard makes or transforms: the server token, the password hash, and how
//! secrets look in the summary.

use sha_crypt::{PasswordHasher, PasswordVerifier, ShaCrypt};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A server token: 32 bytes from the OS CSPRNG, hex. k3s takes any secret without spaces
/// and derives its secure `K10...` form from it.
pub fn generate_token() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A host name to suggest instead of one that may be shared: `rkos-` and four random hex
/// digits, the shape of the generated default.
pub fn random_hostname() -> Result<String, SecretError> {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(format!("rkos-{:02x}{:02x}", b[0], b[1]))
}

/// sha512-crypt (`$6$`), what /etc/shadow and `usermod -p` take. A value that is already a
/// crypt hash (starts with `$`) is kept as given.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    if password.starts_with('$') {
        return Ok(password.to_string());
    }
    // The crate encodes the raw salt bytes in crypt's base64: 12 bytes make 16 characters.
    // glibc's crypt reads at most 16 salt characters for `$6$`, so a longer salt (the
    // crate's default makes 22) gives a hash that `login` never accepts.
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| SecretError::Random(e.to_string()))?;
    let hash = ShaCrypt::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| SecretError::Hash(e.to_string()))?;
    Ok(hash.as_str().to_string())
}

/// Whether `password` matches a sha512-crypt/sha256-crypt hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    ShaCrypt::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// How a secret shows in the summary: that it is set and how long it is, nothing of it.
pub fn mask(secret: &str) -> String {
    if secret.is_empty() {
        "(none)".into()
    } else {
        format!("******** ({} characters)", secret.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("s3cret pass").unwrap();
        assert!(h.starts_with("$6$"), "{h}");
        assert!(verify_password("s3cret pass", &h));
        assert!(!verify_password("other", &h));
        assert_eq!(hash_password("$6$x$y").unwrap(), "$6$x$y");
    }

    #[test]
    fn salts_fit_glibc_crypt() {
        let generated = hash_password("rkospass").unwrap();
        let rest = generated.strip_prefix("$6$").unwrap();
        let rest = rest.strip_prefix("rounds=5000$").unwrap_or(rest);
        let salt = rest.split('$').next().unwrap();
        assert_eq!(salt.len(), 16, "{generated}");
        assert!(salt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/'));
    }

    #[test]
    fn verifies_a_hash_made_by_openssl() {
        // `openssl passwd -6 -salt saltsalt rkospass`, so our hashes match the system's
        // crypt(3) format.
        let h = "$6$saltsalt$oip3pQ/XC.H2iXxJ453dIAovPOtv9ivIELb1pH9bUyyW9X19wGxm34dvML9G0Xvtx/SR34v32a0LtwLxE1.F41";
        assert!(verify_password("rkospass", h));
    }

    #[test]
    fn masks_hide_content() {
        assert!(!mask("supersecret").contains("super"));
        assert_eq!(mask(""), "(none)");
    }
}
