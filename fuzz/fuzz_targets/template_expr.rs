//! Templates and expressions: the first byte chooses `template::render_str`,
//! `template::check_syntax`, `template::render_value` (a one-tag string keeps
//! its type) or `expr::parse` + `eval`/`eval_bool`; the rest is the template
//! or expression text, rendered against fixed variables (nested maps, lists,
//! numbers, strings, booleans, null).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailrun::{expr, template};
use serde_json::Value;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static VARS: OnceLock<Value> = OnceLock::new();
    let vars = VARS.get_or_init(common::vars);
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match sel % 4 {
        0 => {
            let _ = template::render_str(s, vars);
        }
        1 => {
            if template::check_syntax(s).is_ok() {
                let _ = template::render_str(s, vars);
            }
        }
        2 => {
            let v = Value::Array(vec![Value::String(s.to_string())]);
            let _ = template::render_value(&v, vars);
        }
        _ => {
            if let Ok(e) = expr::parse(s) {
                let _ = expr::eval(&e, vars);
                let _ = expr::eval_bool(&e, vars);
            }
        }
    }
});
