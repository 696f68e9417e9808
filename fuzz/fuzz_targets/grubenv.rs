//! GRUB's environment block: any 1024 bytes parse or fail cleanly, and a block that parses
//! serializes back to a block that parses to the same variables.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkos_slots::grubenv::GrubEnv;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = GrubEnv::parse(data) else {
        return;
    };
    let vars: Vec<(String, String)> = env
        .vars()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // A block read from disk always fits the block it came from.
    let bytes = env.serialize().expect("a parsed block serializes");
    let again = GrubEnv::parse(&bytes).expect("a serialized block parses");
    let back: Vec<(String, String)> = again
        .vars()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(vars, back);
});
