//! The binary tensor data extension: a V2 body with an `Inference-Header-Content-Length`
//! header, JSON followed by raw tensors, optionally under a `Content-Encoding`.
//!
//! Input: one flags byte (bits 0-1: no encoding, gzip, deflate, identity; bit 2: the header is
//! present), then, with the header, its value up to the first `\n`, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let encoding: Option<&[u8]> = [None, Some(&b"gzip"[..]), Some(&b"deflate"[..]), Some(&b"identity"[..])][usize::from(flags & 3)];
    let (header, body) = match (flags & 4 != 0, rest.iter().position(|&b| b == b'\n')) {
        (true, Some(at)) => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let _ = quiver_runtime::fuzzing::v2_infer(bytes::Bytes::copy_from_slice(body), encoding, header);
});
