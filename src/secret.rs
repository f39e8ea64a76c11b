//! Secrets: values that must never be printed. One registry for the whole
//! run; every output path passes its text through [`redact`] (the
//! `outln!`/`errln!` macros, the engine's events for the human and JSON
//! reporters), which replaces each registered value with [`MASK`].
//!
//! What is registered (see README "Secrets"):
//! - the connection secrets of every host ([`CONNECTION_VARS`]:
//!   `ansible_password`, `ansible_become_password`, …), `-k`/`-K` answers
//!   and key passphrases;
//! - any YAML value tagged `!secret` (inventory, group/host vars, playbooks,
//!   vars_files, `-e @file`);
//! - the values of the variables named in the variable `secret_vars` (a list
//!   of names, set anywhere a variable can be);
//! - the arguments a plugin module declares `no_log` (dovecot_user's
//!   `password`).
//!
//! Strings (and numbers, as text) of at least [`MIN_LEN`] characters are
//! registered: shorter ones would mask ordinary words of the output. Lists
//! and mappings register each of their scalars. A secret is also masked in
//! its shell-quoted and JSON-escaped forms, and each line of a multi-line
//! secret on its own.

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Shorter values are not registered (they would mask ordinary output).
pub const MIN_LEN: usize = 3;

/// The variables that hold connection secrets: always secret.
pub const CONNECTION_VARS: &[&str] = &[
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_password",
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
    "ansible_sudo_password",
    "ansible_ssh_private_key_passphrase",
];

/// The variable that lists the names of more secret variables.
pub const SECRET_VARS: &str = "secret_vars";

#[derive(Default)]
struct Registry {
    values: BTreeSet<String>,
    matcher: Option<Arc<AhoCorasick>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    values: BTreeSet::new(),
    matcher: None,
});

fn add(reg: &mut Registry, s: &str) -> bool {
    if s.chars().count() < MIN_LEN || s == MASK || reg.values.contains(s) {
        return false;
    }
    reg.values.insert(s.to_string());
    true
}

/// Registers one secret value (ignored when shorter than [`MIN_LEN`]).
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_LEN {
        return;
    }
    let Ok(mut reg) = REGISTRY.lock() else {
        return;
    };
    // Known already (rendered vars are registered for every task and
    // host): nothing to quote or escape again.
    if reg.values.contains(secret) {
        return;
    }
    let mut changed = add(&mut reg, secret);
    let quoted = crate::quote::quote(secret);
    changed |= add(&mut reg, &quoted);
    if let Ok(json) = serde_json::to_string(secret) {
        changed |= add(&mut reg, &json[1..json.len() - 1]);
    }
    if secret.contains('\n') {
        for line in secret.lines() {
            changed |= add(&mut reg, line.trim());
        }
    }
    if changed {
        reg.matcher = None;
    }
}

/// Registers every scalar of a value: strings, and numbers as text.
pub fn register_value(v: &Value) {
    match v {
        Value::String(s) => register(s),
        Value::Number(n) => register(&n.to_string()),
        Value::Array(items) => items.iter().for_each(register_value),
        Value::Object(m) => m.values().for_each(register_value),
        Value::Null | Value::Bool(_) => {}
    }
}

/// The names of the secret variables in `vars`: the connection secrets and
/// those listed in `secret_vars` (a list, or one name).
pub fn secret_names(vars: &Map<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = CONNECTION_VARS.iter().map(|s| s.to_string()).collect();
    match vars.get(SECRET_VARS) {
        Some(Value::Array(items)) => {
            names.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
        }
        Some(Value::String(s)) => names.extend(
            s.split([',', ' '])
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        ),
        _ => {}
    }
    names
}

/// Registers the values of the secret variables in `vars` (see
/// [`secret_names`]). With `literal_only`, values that are still templates
/// are left for when they are rendered.
pub fn register_vars(vars: &Map<String, Value>, literal_only: bool) {
    for name in secret_names(vars) {
        let Some(v) = vars.get(&name) else {
            continue;
        };
        if literal_only && v.as_str().is_some_and(crate::template::has_template) {
            continue;
        }
        register_value(v);
    }
}

fn matcher() -> Option<Arc<AhoCorasick>> {
    let mut reg = REGISTRY.lock().ok()?;
    if reg.values.is_empty() {
        return None;
    }
    if reg.matcher.is_none() {
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(reg.values.iter())
            .ok()?;
        reg.matcher = Some(Arc::new(built));
    }
    reg.matcher.clone()
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(m) = matcher() else {
        return Cow::Borrowed(text);
    };
    if !m.is_match(text) {
        return Cow::Borrowed(text);
    }
    let masks = vec![MASK; m.patterns_len()];
    Cow::Owned(m.replace_all(text, &masks))
}

/// Redacts every string in a JSON value (mapping keys too), in place.
pub fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Number(n) => {
            let text = n.to_string();
            if let Cow::Owned(r) = redact(&text) {
                *v = Value::String(r);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(m) => {
            let needs_key_change = m.keys().any(|k| matches!(redact(k), Cow::Owned(_)));
            if needs_key_change {
                let old = std::mem::take(m);
                for (k, mut val) in old {
                    redact_value(&mut val);
                    m.insert(redact(&k).into_owned(), val);
                }
            } else {
                m.values_mut().for_each(redact_value);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// An engine event with every registered secret masked (every string of it,
/// results and diffs included).
pub fn redact_event(mut e: crate::engine::event::Event) -> crate::engine::event::Event {
    use crate::engine::event::Event;
    if matcher().is_none() {
        return e;
    }
    let text = |s: &mut String| {
        if let Cow::Owned(r) = redact(s) {
            *s = r;
        }
    };
    let opt = |s: &mut Option<String>| {
        if let Some(s) = s {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
    };
    match &mut e {
        Event::PlayStart { name, hosts, .. } => {
            text(name);
            hosts.iter_mut().for_each(text);
        }
        Event::TaskStart { task, id, .. } => {
            text(task);
            opt(id);
        }
        Event::HostResult {
            task,
            host,
            item,
            delegated_to,
            msg,
            stderr,
            result,
            diff,
            ..
        } => {
            text(task);
            text(host);
            opt(item);
            opt(delegated_to);
            opt(msg);
            opt(stderr);
            if let Some(r) = result {
                redact_value(r);
            }
            if let Some(d) = diff {
                text(&mut d.path);
                text(&mut d.unified);
            }
        }
        Event::TaskEnd { task, .. } => text(task),
        Event::Progress {
            task,
            host,
            text: t,
        } => {
            text(task);
            text(host);
            text(t);
        }
        Event::Warning { msg } => text(msg),
        Event::Recap { hosts, .. } => {
            if hosts.keys().any(|h| matches!(redact(h), Cow::Owned(_))) {
                let old = std::mem::take(hosts);
                for (h, s) in old {
                    hosts.insert(redact(&h).into_owned(), s);
                }
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_and_their_quoted_forms() {
        register("Zq9'pw\"unit");
        let text = "login with Zq9'pw\"unit, sh: 'Zq9'\\''pw\"unit', json: \"Zq9'pw\\\"unit\"";
        let out = redact(text);
        assert!(!out.contains("Zq9"), "{out}");
        assert_eq!(out.matches(MASK).count(), 3, "{out}");
    }

    #[test]
    fn a_yaml_secret_tag_registers_its_value() {
        let node = crate::yaml::parse(
            "pw: !secret unit-tag-Xk5\nother: unit-open-Xk6\n",
            std::path::Path::new("t.yml"),
        )
        .unwrap();
        assert_eq!(
            node.get("pw").and_then(|n| n.as_str()),
            Some("unit-tag-Xk5")
        );
        assert_eq!(
            redact("unit-tag-Xk5 unit-open-Xk6"),
            format!("{MASK} unit-open-Xk6")
        );
    }

    #[test]
    fn short_values_are_not_registered() {
        register("q7");
        assert_eq!(redact("q7 stays"), "q7 stays");
    }

    #[test]
    fn secret_vars_and_connection_vars_are_registered() {
        let vars: Map<String, Value> = serde_json::from_str(
            r#"{"secret_vars": ["db_pw"], "db_pw": "unit-db-Xk1", "ansible_password": "unit-ssh-Xk2",
                "ansible_become_password": "{{ later }}", "plain": "unit-plain-Xk3"}"#,
        )
        .unwrap();
        register_vars(&vars, true);
        let out = redact("unit-db-Xk1 unit-ssh-Xk2 unit-plain-Xk3 {{ later }}");
        assert_eq!(out, format!("{MASK} {MASK} unit-plain-Xk3 {{{{ later }}}}"));
    }

    #[test]
    fn values_and_keys_in_json_are_masked() {
        register("unit-json-Xk4");
        let mut v = serde_json::json!({"a": ["x unit-json-Xk4 y"], "unit-json-Xk4": 1});
        redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": [format!("x {MASK} y")], MASK: 1})
        );
    }
}
