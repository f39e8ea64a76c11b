//! The INI inventory parser: the input is one inventory file's text, read as
//! `hosts.ini` (so INI only, as `Inventory::load` reads it). On success the
//! inventory is walked as `mailrun inventory` and host patterns walk it.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailrun::inventory::Inventory;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    mailrun::inventory::set_max_hosts_for_fuzzing(common::MAX_HOSTS);
    // Inventory::load reads a file as lossy UTF-8; so does this.
    let src = String::from_utf8_lossy(data);
    if let Ok(inv) = Inventory::parse_str(&src, Path::new("hosts.ini")) {
        common::exercise_inventory(&inv);
    }
});
