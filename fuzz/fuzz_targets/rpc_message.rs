//! Bytes arriving on a `/dawn/rpc/1.0.0` stream: the frame decoder, then
//! the JSON-RPC parsing of every body (`dawn_core::fuzzing::rpc_message`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dawn_core::fuzzing::rpc_message(data);
});
