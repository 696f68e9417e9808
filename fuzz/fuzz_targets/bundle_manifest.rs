//! A bundle's manifest and its minisign signature, as a node reads them from a server it does
//! not trust: the input is `manifest.json`, a NUL byte, then `manifest.json.minisig`. Parsing
//! the manifest alone, decoding the signature and checking it against a fixed trusted key
//! must each give a result or an error, never a panic; a manifest that verifies is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkos_bundle::keys::{parse_public_key, TrustedKeys};
use rkos_slots::Manifest;

/// The public half of the key that signed the seed in `seeds/bundle_manifest/` (made with
/// `rkos bundle keygen`; the secret half was thrown away).
const KEY: &str = "RWSMPXhDjHT3Uq5MqQKHqADWVsHp/xMUbjjaiC6IEhC+35MnHBE9zrjZ";

fuzz_target!(|data: &[u8]| {
    let (manifest, sig) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(m) = Manifest::parse(manifest) {
        m.validate().expect("a parsed manifest is valid");
        let _ = m.total_size();
    }
    let Ok(sig) = std::str::from_utf8(sig) else {
        return;
    };
    // The key parser reads configuration text too (`upgrade.trusted_keys`).
    let _ = parse_public_key(sig, "fuzz");
    let key = parse_public_key(KEY, "fuzz").expect("the fixed key parses");
    let keys = TrustedKeys::from_keys(vec![key], "fuzz").expect("one key");
    if let Ok((m, _id)) = keys.verify_manifest(manifest, sig) {
        assert_eq!(Manifest::parse(manifest).ok(), Some(m));
    }
});
