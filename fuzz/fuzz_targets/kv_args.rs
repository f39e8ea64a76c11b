//! The `k=v` argument parser (`-a` of ad hoc runs, a task's module given as
//! a string). The first byte chooses the way in: plain `parse_kv`, with a
//! free form (`cmd`), or `parse_kv_for`/`parse_kv_module` with one built-in
//! module's documentation; the rest is the argument text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrun::modules::{self, args};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let all = modules::all();
    match sel % 4 {
        0 => {
            let _ = args::parse_kv(s, None);
        }
        1 => {
            let _ = args::parse_kv(s, Some("cmd"));
        }
        2 => {
            let doc = all[usize::from(sel / 4) % all.len()].doc();
            let _ = args::parse_kv_for(&doc, s);
        }
        _ => {
            let doc = all[usize::from(sel / 4) % all.len()].doc();
            if let Ok(map) = args::parse_kv_module(doc.name, &doc, s) {
                let _ = args::validate(&doc, &map);
            }
        }
    }
});
