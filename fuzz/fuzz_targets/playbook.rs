//! The playbook loader: the input is one playbook file's text, loaded as
//! `mailrun --syntax-check` loads it (YAML, plays, tasks, module arguments,
//! templates and conditions checked, ids and needs resolved). Includes and
//! imports point into a directory that does not exist.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrun::playbook::{load_str, LoadOptions};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The loader refuses a file that is not UTF-8 before any parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LoadOptions::default();
    let _ = load_str(Path::new("/nonexistent/mailrun-fuzz/site.yml"), text, &opts);
});
