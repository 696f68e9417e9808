//! rkos-init's reading of the kernel command line (`rkos_init::cmdline`, over
//! `rkos_contract::cmdline::Cmdline`): any text must give a result or an error, never a panic,
//! and what it accepts must keep the limits it promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkos_contract::cmdline::Cmdline;
use rkos_init::cmdline::{consoles, parse, MAX_WAIT};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let split = Cmdline::parse(text);
    for w in split.words() {
        // The first `=` splits key from value: a key never holds one.
        assert!(!w.key.contains('='), "{w:?}");
        let _ = w.rkos_key();
    }
    let _ = split.mode();
    let _ = split.slot();
    let _ = split.rkos_words().count();
    let named = consoles(text);
    if let Ok(params) = parse(text) {
        assert!(params.wait <= MAX_WAIT, "{params:?}");
        assert!(!params.init.is_empty());
        assert_eq!(params.consoles, named);
        if let Some(h) = &params.image_sha256 {
            assert!(
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
    }
});
