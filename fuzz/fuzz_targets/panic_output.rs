//! Any container output as a crashed container's log or termination message: the panic and
//! exception parsers must return a summary or nothing, never panic, and stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(summary) = vigil::crash::parse::summarize(&text) {
        assert!(summary.frames.len() <= 5, "at most 5 frames");
    }
});
