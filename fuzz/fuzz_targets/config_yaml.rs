//! The configuration loader: YAML, `${env:…}` expansion, merging, component decoding and
//! validation. A NUL byte separates the files of one input (up to three, later ones override).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sources: Vec<(String, String)> = data
        .split(|b| *b == 0)
        .take(3)
        .enumerate()
        .map(|(i, text)| (format!("fuzz{i}.yaml"), String::from_utf8_lossy(text).into_owned()))
        .collect();
    let _ = switchyard::fuzzing::config(&sources);
});
