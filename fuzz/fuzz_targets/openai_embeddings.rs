//! An OpenAI embeddings body (`/openai/v1/embeddings`): decoded, then one checked request per
//! text for each fixed model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_runtime::fuzzing::openai_embeddings(data);
});
