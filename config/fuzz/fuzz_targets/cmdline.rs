//! Arbitrary kernel command lines: parsing, loading and rendering must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkos_config::{load, render, BootMode, RenderContext, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = rkos_contract::cmdline::words(&text);
    let loaded = load(&[Source::cmdline(text.as_ref())]);
    let _ = rkos_config::show::show(&loaded, false);
    let _ = render(&loaded.config, &RenderContext::new("fuzz", BootMode::Live));
});
