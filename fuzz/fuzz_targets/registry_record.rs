//! A registry envelope from gossip or the cache: framing, signature,
//! signer = origin, content rules (`dawn_core::fuzzing::registry_record`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dawn_core::fuzzing::registry_record(data);
});
