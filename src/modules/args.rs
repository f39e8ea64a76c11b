//! Module arguments: Ansible's `k=v` text, validation against a module's
//! [`ModuleDoc`] (parse time, before any host is contacted), and the typed
//! parse of rendered arguments with lenient deserializers (`k=v` values are
//! all strings, so `"yes"`, `"1"` and `"0644"` must work).

use crate::module::{ArgError, ArgSpec, ModuleDoc};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Keys that Ansible's free-form modules (`command`, `shell`, …) take as
/// arguments inside their free text; any other `k=v` word stays in the text.
const ANSIBLE_RAW_KEYS: &[&str] = &[
    "creates",
    "removes",
    "chdir",
    "executable",
    "stdin",
    "stdin_add_newline",
    "strip_empty_ends",
];

/// One word of `k=v` text and where it sits in the source.
struct Word<'a> {
    raw: &'a str,
    start: usize,
    end: usize,
}

/// Splits on whitespace outside quotes and outside `{{ … }}`.
fn words(s: &str) -> Result<Vec<Word<'_>>, String> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut braces = 0usize;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if start.is_none() {
            if c.is_whitespace() {
                continue;
            }
            start = Some(i);
        }
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                }
            }
            Some(_) => match c {
                '\\' => {
                    it.next();
                }
                '"' => quote = None,
                _ => {}
            },
            None => match c {
                '\\' => {
                    it.next();
                }
                '\'' | '"' if braces == 0 => quote = Some(c),
                '{' if it.peek().map(|(_, n)| *n) == Some('{') => {
                    it.next();
                    braces += 1;
                }
                '}' if braces > 0 && it.peek().map(|(_, n)| *n) == Some('}') => {
                    it.next();
                    braces -= 1;
                }
                c if c.is_whitespace() && braces == 0 => {
                    if let Some(st) = start.take() {
                        out.push(Word {
                            raw: &s[st..i],
                            start: st,
                            end: i,
                        });
                    }
                }
                _ => {}
            },
        }
    }
    if let Some(q) = quote {
        let what = if q == '"' { "double" } else { "single" };
        return Err(format!("unterminated {what} quote in: {s}"));
    }
    if let Some(st) = start {
        out.push(Word {
            raw: &s[st..],
            start: st,
            end: s.len(),
        });
    }
    Ok(out)
}

/// The key of a `key=value` word: an identifier directly before the `=`.
fn kv_key(word: &str) -> Option<(&str, &str)> {
    let eq = word.find('=')?;
    let key = &word[..eq];
    let mut chars = key.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((key, &word[eq + 1..]))
}

/// A value with its quotes removed: `'…'` literal, `"…"` with backslash
/// escapes, a bare backslash escaping the next character; `{{ … }}` kept as
/// written for the template engine.
fn unquote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars().peekable();
    let mut braces = 0usize;
    while let Some(c) = it.next() {
        if braces > 0 {
            out.push(c);
            if c == '}' && it.peek() == Some(&'}') {
                it.next();
                out.push('}');
                braces -= 1;
            }
            continue;
        }
        match c {
            '{' if it.peek() == Some(&'{') => {
                it.next();
                out.push_str("{{");
                braces += 1;
            }
            '\'' => {
                for c in it.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = it.next() {
                    match c {
                        '"' => break,
                        '\\' => match it.next() {
                            Some('n') => out.push('\n'),
                            Some('t') => out.push('\t'),
                            Some('r') => out.push('\r'),
                            Some(c @ ('"' | '\\' | '\'' | '$' | '`')) => out.push(c),
                            Some(c) => {
                                out.push('\\');
                                out.push(c);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => out.push(it.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    out
}

/// Parses Ansible's `k=v k2="a b" k3='x y'` argument text. Values are strings.
///
/// With `free_form` (the argument free text fills, e.g. `cmd`), words that
/// are not `k=v`, and `k=v` words whose key is not an argument of a module
/// taking that free form, are kept as written (quotes and the spacing between
/// them included) and become that argument: `echo hi > /tmp/x creates=/tmp/x`
/// gives `cmd="echo hi > /tmp/x"`, `creates="/tmp/x"`. Without it, such words
/// are an error naming them.
pub fn parse_kv(s: &str, free_form: Option<&str>) -> Result<Map<String, Value>, String> {
    match free_form {
        None => parse_kv_keys(s, None, &[]),
        Some(ff) => {
            let mut keys: Vec<&str> = ANSIBLE_RAW_KEYS.to_vec();
            for m in super::all() {
                let doc = m.doc();
                if doc.free_form == Some(ff) {
                    keys.extend(doc.args.iter().map(|a| a.name));
                }
            }
            keys.retain(|k| *k != ff);
            parse_kv_keys(s, Some(ff), &keys)
        }
    }
}

/// `k=v` text for the module called `name`: a built-in's free form as
/// [`parse_kv`] (Ansible's raw keys too), a plugin's with its own argument
/// names as `k=v` (the rest is the free text).
pub fn parse_kv_module(name: &str, doc: &ModuleDoc, s: &str) -> Result<Map<String, Value>, String> {
    if doc.free_form.is_some() && super::builtin(name).is_none() {
        // Every argument's name, the free-form one's too (`who=me`).
        let keys: Vec<&str> = doc.args.iter().map(|a| a.name).collect();
        parse_kv_keys(s, doc.free_form, &keys)
    } else {
        parse_kv(s, doc.free_form)
    }
}

/// [`parse_kv`] knowing the module: in free-form text only the module's own
/// argument names are taken as `k=v`.
pub fn parse_kv_for(doc: &ModuleDoc, s: &str) -> Result<Map<String, Value>, String> {
    let keys: Vec<&str> = doc
        .args
        .iter()
        .map(|a| a.name)
        .filter(|n| Some(*n) != doc.free_form)
        .collect();
    parse_kv_keys(s, doc.free_form, &keys)
}

fn parse_kv_keys(
    s: &str,
    free_form: Option<&str>,
    keys: &[&str],
) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    let mut free = String::new();
    let mut free_words: Vec<&str> = Vec::new();
    let mut last_free_end: Option<usize> = None;
    for w in words(s)? {
        let kv = kv_key(w.raw).filter(|(k, _)| free_form.is_none() || keys.contains(k));
        match kv {
            Some((k, v)) => {
                map.insert(k.to_string(), Value::String(unquote(v)));
                last_free_end = None;
            }
            None => {
                match last_free_end {
                    // Adjacent free words keep the text between them (newlines
                    // in a script matter).
                    Some(end) => free.push_str(&s[end..w.start]),
                    None if !free.is_empty() => free.push(' '),
                    None => {}
                }
                free.push_str(w.raw);
                free_words.push(w.raw);
                last_free_end = Some(w.end);
            }
        }
    }
    match free_form {
        Some(ff) if !free.is_empty() => {
            map.insert(ff.to_string(), Value::String(free));
        }
        Some(_) => {}
        None if !free_words.is_empty() => {
            let shown: Vec<String> = free_words.iter().map(|w| format!("'{w}'")).collect();
            return Err(format!(
                "expected key=value arguments, found {}",
                shown.join(", ")
            ));
        }
        None => {}
    }
    Ok(map)
}

/// A value as messages show it.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("\"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// Ansible's booleans: true/false, and the strings yes/no/true/false/on/off/1/0.
pub fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" | "y" => Some(true),
            "no" | "false" | "off" | "0" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An integer, or a string holding one.
pub fn to_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A file mode: bits, or a symbolic `u+rwx,g-w` applied to the current mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Bits(u32),
    Symbolic(String),
}

impl Mode {
    /// The bits to set on a file whose mode is now `current`.
    pub fn resolve(&self, current: u32, is_dir: bool) -> u32 {
        match self {
            Mode::Bits(b) => *b,
            Mode::Symbolic(s) => apply_symbolic(s, current, is_dir),
        }
    }
}

/// Reads a mode: an int is the bits (YAML 1.1 made `0644` 420 already); a
/// string is octal (`"0644"`, `"644"`) or symbolic (`"u+rwx,go-w"`).
pub fn parse_mode(v: &Value) -> Result<Mode, String> {
    let bad = || {
        format!(
            "expected a mode such as \"0644\" or \"u+rw,g-w\", found {}",
            describe(v)
        )
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(b) if b <= 0o7777 => Ok(Mode::Bits(b as u32)),
            _ => Err(bad()),
        },
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.len() <= 5 && s.chars().all(|c| c.is_digit(8)) {
                return match u32::from_str_radix(s, 8) {
                    Ok(b) if b <= 0o7777 => Ok(Mode::Bits(b)),
                    _ => Err(bad()),
                };
            }
            if symbolic_ok(s) {
                Ok(Mode::Symbolic(s.to_string()))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn symbolic_ok(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|clause| {
            let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
            let mut chars = ops.chars().peekable();
            let mut any = false;
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return false;
                }
                any = true;
                while let Some(c) = chars.peek() {
                    if matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't' | 'u' | 'g' | 'o') {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            any
        })
}

/// chmod(1)'s symbolic modes (without umask: a missing "who" is "a").
fn apply_symbolic(s: &str, current: u32, is_dir: bool) -> u32 {
    let mut mode = current & 0o7777;
    for clause in s.split(',') {
        let who_len = clause.len() - clause.trim_start_matches(['u', 'g', 'o', 'a']).len();
        let (who, ops) = clause.split_at(who_len);
        let mut mask = 0u32;
        for c in who.chars() {
            mask |= match c {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                _ => 0o7777,
            };
        }
        if mask == 0 {
            mask = 0o7777;
        }
        let mut chars = ops.chars().peekable();
        while let Some(op) = chars.next() {
            let mut bits = 0u32;
            while let Some(&c) = chars.peek() {
                if matches!(c, '+' | '-' | '=') {
                    break;
                }
                chars.next();
                bits |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    's' => 0o6000,
                    't' => 0o1000,
                    'u' => spread((mode >> 6) & 7),
                    'g' => spread((mode >> 3) & 7),
                    'o' => spread(mode & 7),
                    _ => 0,
                };
            }
            bits &= mask;
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                _ => mode = (mode & !mask) | bits,
            }
        }
    }
    mode
}

fn spread(rwx: u32) -> u32 {
    rwx | (rwx << 3) | (rwx << 6)
}

/// Why `v` does not fit `kind`: what was expected.
fn kind_mismatch(kind: &str, v: &Value) -> Option<String> {
    if let Value::String(s) = v {
        if crate::template::has_template(s) {
            return None;
        }
    }
    let scalar = !matches!(v, Value::Array(_) | Value::Object(_));
    match kind {
        "string" | "path" => (!scalar).then(|| "a string".into()),
        "bool" => to_bool(v)
            .is_none()
            .then(|| "a boolean (yes/no, true/false)".into()),
        "int" => to_int(v).is_none().then(|| "an integer".into()),
        "list" => (!v.is_array()).then(|| "a list".into()),
        // `dict` and `float` are plugins' kinds (their text forms are
        // converted before this check).
        "map" | "dict" => (!v.is_object()).then(|| "a mapping".into()),
        "float" => (!v.is_number()).then(|| "a number".into()),
        "mode" => parse_mode(v)
            .is_err()
            .then(|| "a mode such as \"0644\" or \"u+rw,g-w\"".into()),
        k if k.contains('|') => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Bool(_) | Value::Number(_) => v.to_string(),
                _ => String::new(),
            };
            (!k.split('|').any(|c| c == s)).then(|| {
                let choices: Vec<String> = k.split('|').map(|c| format!("'{c}'")).collect();
                format!("one of {}", choices.join(", "))
            })
        }
        _ => None,
    }
}

fn unknown_arg(module: &str, arg: &str, names: &[&str]) -> ArgError {
    let help = crate::suggest::did_you_mean(arg, names.iter().copied())
        .or_else(|| Some(format!("expected one of: {}", names.join(", "))));
    ArgError {
        arg: Some(arg.to_string()),
        msg: format!("{module}: unknown argument '{arg}'"),
        help,
    }
}

fn missing_arg(module: &str, arg: &str) -> ArgError {
    ArgError {
        arg: Some(arg.to_string()),
        msg: format!("{module}: missing required argument '{arg}'"),
        help: None,
    }
}

/// Checks arguments against the module's doc: unknown names (with "did you
/// mean"), missing required ones, and the kind of every value that is not a
/// template (a string holding `{{` is rendered later and checked then).
/// A `null` value counts as absent. An argument spec named `*` (as
/// `set_fact`'s) takes any other name, with its kind.
pub fn validate(doc: &ModuleDoc, args: &Map<String, Value>) -> Result<(), ArgError> {
    let names: Vec<&str> = doc
        .args
        .iter()
        .map(|a| a.name)
        .filter(|n| *n != "*")
        .collect();
    let wildcard = doc.args.iter().find(|a| a.name == "*");
    for (k, v) in args {
        let Some(spec) = doc.args.iter().find(|a| a.name == k).or(wildcard) else {
            return Err(unknown_arg(doc.name, k, &names));
        };
        if v.is_null() {
            continue;
        }
        if let Some(expected) = kind_mismatch(spec.kind, v) {
            return Err(ArgError {
                arg: Some(k.clone()),
                msg: format!(
                    "{}: argument '{k}' expects {expected}, found {}",
                    doc.name,
                    describe(v)
                ),
                help: None,
            });
        }
    }
    if let Some(spec) = doc.args.iter().find(|a: &&ArgSpec| {
        a.required && a.name != "*" && args.get(a.name).is_none_or(Value::is_null)
    }) {
        return Err(missing_arg(doc.name, spec.name));
    }
    Ok(())
}

/// The text between backticks in a serde message.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// Deserializes rendered arguments into a module's params struct; serde's
/// messages are turned into the module's own ("file_copy: unknown argument
/// 'dst'", "did you mean 'dest'?"). `null` values count as absent.
pub fn typed<T: DeserializeOwned>(module: &str, args: &Value) -> Result<T, ArgError> {
    let obj = match args {
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Map<_, _>>(),
        Value::Null => Map::new(),
        other => {
            return Err(ArgError {
                arg: None,
                msg: format!(
                    "{module}: arguments must be a mapping, found {}",
                    describe(other)
                ),
                help: None,
            })
        }
    };
    let err = match serde_json::from_value::<T>(Value::Object(obj.clone())) {
        Ok(t) => return Ok(t),
        Err(e) => e.to_string(),
    };
    if let Some(rest) = err.strip_prefix("unknown field ") {
        let ticks = backticked(rest);
        let arg = ticks.first().copied().unwrap_or_default();
        return Err(unknown_arg(module, arg, ticks.get(1..).unwrap_or_default()));
    }
    if let Some(rest) = err.strip_prefix("missing field ") {
        let arg = backticked(rest).first().copied().unwrap_or_default();
        return Err(missing_arg(module, arg));
    }
    // A wrong value: find the argument whose removal changes the error.
    let culprit = obj.keys().find(|k| {
        let mut without = obj.clone();
        without.remove(*k);
        match serde_json::from_value::<T>(Value::Object(without)) {
            Ok(_) => true,
            Err(e) => {
                let e = e.to_string();
                e != err && !e.starts_with("missing field")
                    || backticked(&e).first() == Some(&k.as_str())
            }
        }
    });
    let err = err
        .split(" at line ")
        .next()
        .unwrap_or(err.as_str())
        .to_string();
    match culprit {
        Some(k) => Err(ArgError {
            arg: Some(k.clone()),
            msg: format!("{module}: argument '{k}': {err}"),
            help: None,
        }),
        None => Err(ArgError {
            arg: None,
            msg: format!("{module}: {err}"),
            help: None,
        }),
    }
}

// Lenient deserializers for `#[serde(deserialize_with = "…")]`. Fields that
// are `Option` need `#[serde(default)]` as well.

/// A boolean from true/false or yes/no/on/off/1/0 strings.
pub fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    to_bool(&v).ok_or_else(|| {
        D::Error::custom(format!(
            "expected a boolean (yes/no, true/false), found {}",
            describe(&v)
        ))
    })
}

/// [`bool_lenient`] for an `Option<bool>`.
pub fn opt_bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    bool_lenient(v).map(Some).map_err(D::Error::custom)
}

/// An integer from a number or a numeric string, range-checked for `T`.
pub fn int_lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let v = Value::deserialize(d)?;
    to_int(&v)
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| D::Error::custom(format!("expected an integer, found {}", describe(&v))))
}

/// [`int_lenient`] for an `Option`.
pub fn opt_int_lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    int_lenient(v).map(Some).map_err(D::Error::custom)
}

/// An `Option<Mode>` (see [`parse_mode`]).
pub fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    parse_mode(&v).map(Some).map_err(D::Error::custom)
}

/// An `Option<String>` that also takes numbers and booleans (`owner: 1000`).
pub fn opt_string_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        v @ (Value::Number(_) | Value::Bool(_)) => Ok(Some(v.to_string())),
        v => Err(D::Error::custom(format!(
            "expected a string, found {}",
            describe(&v)
        ))),
    }
}

/// An `Option<Vec<String>>` whose items may be numbers or booleans
/// (`argv: [sleep, 1]`).
pub fn opt_string_list_lenient<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v @ (Value::Number(_) | Value::Bool(_)) => Ok(v.to_string()),
                v => Err(D::Error::custom(format!(
                    "expected a list of strings, found {} in it",
                    describe(&v)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        v => Err(D::Error::custom(format!(
            "expected a list, found {}",
            describe(&v)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(s: &str, ff: Option<&str>) -> Result<Value, String> {
        parse_kv_keys(s, ff, &["creates", "removes", "chdir"]).map(Value::Object)
    }

    #[test]
    fn kv_table() {
        let cases: &[(&str, Option<&str>, Value)] = &[
            ("", None, json!({})),
            ("a=1 b=two", None, json!({"a": "1", "b": "two"})),
            ("k=\"a b\" k3='x y'", None, json!({"k": "a b", "k3": "x y"})),
            (
                "k=\"say \\\"hi\\\"\\n\"",
                None,
                json!({"k": "say \"hi\"\n"}),
            ),
            ("k='it\\s' j=a\\ b", None, json!({"k": "it\\s", "j": "a b"})),
            ("k=a\"b c\"d", None, json!({"k": "ab cd"})),
            ("k=", None, json!({"k": ""})),
            ("k=a=b", None, json!({"k": "a=b"})),
            (
                "dest={{ path }}/x mode=0644",
                None,
                json!({"dest": "{{ path }}/x", "mode": "0644"}),
            ),
            (
                "msg={{ lookup \"a b\" }}",
                None,
                json!({"msg": "{{ lookup \"a b\" }}"}),
            ),
            (
                "name=dovecot  state=restarted\n",
                None,
                json!({"name": "dovecot", "state": "restarted"}),
            ),
            (
                "echo hi > /tmp/x creates=/tmp/x",
                Some("cmd"),
                json!({"cmd": "echo hi > /tmp/x", "creates": "/tmp/x"}),
            ),
            (
                "chdir=/tmp echo 'a  b' \"$HOME\"",
                Some("cmd"),
                json!({"chdir": "/tmp", "cmd": "echo 'a  b' \"$HOME\""}),
            ),
            // Unknown keys stay in the command; spacing and newlines are kept.
            (
                "echo foo=bar\n  ls  -l removes=/x",
                Some("cmd"),
                json!({"cmd": "echo foo=bar\n  ls  -l", "removes": "/x"}),
            ),
            (
                "a creates=/x b",
                Some("cmd"),
                json!({"cmd": "a b", "creates": "/x"}),
            ),
            ("creates=/x", Some("cmd"), json!({"creates": "/x"})),
        ];
        for (input, ff, want) in cases {
            assert_eq!(kv(input, *ff).as_ref(), Ok(want), "parse_kv({input:?})");
        }
    }

    #[test]
    fn kv_errors() {
        let e = kv("a=1 echo hi", None).unwrap_err();
        assert_eq!(e, "expected key=value arguments, found 'echo', 'hi'");
        assert!(kv("a='oops", None)
            .unwrap_err()
            .contains("unterminated single quote"));
        assert!(kv("a=\"oops", None)
            .unwrap_err()
            .contains("unterminated double quote"));
        assert!(kv("=x", None).is_err());
    }

    #[test]
    fn kv_free_form_uses_registry() {
        let m = parse_kv(
            "ls /tmp > /x creates=/x executable=/bin/bash foo=1",
            Some("cmd"),
        )
        .expect("parse");
        assert_eq!(
            Value::Object(m),
            json!({"cmd": "ls /tmp > /x foo=1", "creates": "/x", "executable": "/bin/bash"})
        );
    }

    #[test]
    fn kv_never_panics() {
        let inputs = [
            "\\",
            "'",
            "\"",
            "{{",
            "}}",
            "{{ '",
            "a={{",
            "a=}}",
            "=",
            "==",
            "a==b",
            "é=1",
            "a=é",
            "k=\"\\",
            "k='",
            "{{ a }} {{",
            "\u{0}=x",
            "a=\"b\\\"",
            " \t\n ",
            "x=1 \\",
        ];
        for s in inputs {
            let _ = parse_kv(s, None);
            let _ = parse_kv(s, Some("cmd"));
            let _ = crate::quote::split(s);
        }
    }

    #[test]
    fn kv_for_a_module_doc() {
        let shell = crate::modules::get("shell").expect("shell").doc();
        let m = parse_kv_for(&shell, "echo a=b chdir=/tmp").expect("kv");
        assert_eq!(
            Value::Object(m),
            json!({"cmd": "echo a=b", "chdir": "/tmp"})
        );
        let m = parse_kv_for(&doc(), "dest=/x backup=yes").expect("kv");
        assert_eq!(Value::Object(m), json!({"dest": "/x", "backup": "yes"}));
    }

    fn doc() -> ModuleDoc {
        let arg = |name, kind, required| ArgSpec {
            name,
            kind,
            required,
            default: None,
            description: "",
        };
        ModuleDoc {
            name: "file_copy",
            description: "",
            args: vec![
                arg("dest", "path", true),
                arg("src", "path", false),
                arg("backup", "bool", false),
                arg("count", "int", false),
                arg("mode", "mode", false),
                arg("argv", "list", false),
                arg("state", "present|absent", false),
            ],
            check_mode: true,
            example: "",
            free_form: None,
        }
    }

    fn check(args: Value) -> Result<(), ArgError> {
        let Value::Object(m) = args else {
            panic!("test args must be a mapping")
        };
        validate(&doc(), &m)
    }

    #[test]
    fn validate_table() {
        let ok = [
            json!({"dest": "/x"}),
            json!({"dest": "/x", "backup": "yes", "count": "3", "mode": "0644"}),
            json!({"dest": "/x", "backup": true, "count": 3, "mode": 420}),
            json!({"dest": "/x", "backup": "off", "mode": "u+rwx,go-w", "state": "absent"}),
            json!({"dest": "{{ d }}", "backup": "{{ b }}", "argv": ["a"], "src": null}),
            json!({"dest": 5}),
        ];
        for a in ok {
            assert_eq!(check(a.clone()), Ok(()), "{a}");
        }
        let bad = [
            (json!({"dst": "/x"}), "file_copy: unknown argument 'dst'", Some("did you mean 'dest'?"), "dst"),
            (json!({"src": "a"}), "file_copy: missing required argument 'dest'", None, "dest"),
            (json!({"dest": null}), "file_copy: missing required argument 'dest'", None, "dest"),
            (
                json!({"dest": "/x", "backup": "maybe"}),
                "file_copy: argument 'backup' expects a boolean (yes/no, true/false), found \"maybe\"",
                None,
                "backup",
            ),
            (json!({"dest": "/x", "count": "x"}), "file_copy: argument 'count' expects an integer, found \"x\"", None, "count"),
            (
                json!({"dest": "/x", "mode": "0999"}),
                "file_copy: argument 'mode' expects a mode such as \"0644\" or \"u+rw,g-w\", found \"0999\"",
                None,
                "mode",
            ),
            (json!({"dest": "/x", "argv": "a b"}), "file_copy: argument 'argv' expects a list, found \"a b\"", None, "argv"),
            (json!({"dest": ["/x"]}), "file_copy: argument 'dest' expects a string, found a list", None, "dest"),
            (
                json!({"dest": "/x", "state": "gone"}),
                "file_copy: argument 'state' expects one of 'present', 'absent', found \"gone\"",
                None,
                "state",
            ),
        ];
        for (a, msg, help, arg) in bad {
            let e = check(a.clone()).unwrap_err();
            assert_eq!(e.msg, msg, "{a}");
            assert_eq!(e.help.as_deref(), help, "{a}");
            assert_eq!(e.arg.as_deref(), Some(arg), "{a}");
        }
    }

    #[test]
    fn modes() {
        let cases: &[(Value, Option<Mode>)] = &[
            (json!(420), Some(Mode::Bits(0o644))),
            (json!("0644"), Some(Mode::Bits(0o644))),
            (json!("644"), Some(Mode::Bits(0o644))),
            (json!("04755"), Some(Mode::Bits(0o4755))),
            (json!("u+rwx"), Some(Mode::Symbolic("u+rwx".into()))),
            (json!("u=rw,go=r"), Some(Mode::Symbolic("u=rw,go=r".into()))),
            (json!("0888"), None),
            (json!("rwx"), None),
            (json!("u+"), Some(Mode::Symbolic("u+".into()))),
            (json!("u"), None),
            (json!(""), None),
            (json!(-1), None),
            (json!(0o17777), None),
            (json!(true), None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_mode(v).ok(), *want, "{v}");
        }
        let sym = |s: &str, cur, dir| Mode::Symbolic(s.into()).resolve(cur, dir);
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("u=rw,go=r", 0o777, false), 0o644);
        assert_eq!(sym("a+X", 0o644, true), 0o755);
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("+t", 0o755, true), 0o1755);
        assert_eq!(Mode::Bits(0o600).resolve(0o777, false), 0o600);
    }

    #[test]
    fn validate_wildcard() {
        let mut d = doc();
        d.args.push(ArgSpec {
            name: "*",
            kind: "any",
            required: false,
            default: None,
            description: "",
        });
        let args = json!({"dest": "/x", "anything": [1], "else": {"a": 1}});
        assert_eq!(validate(&d, args.as_object().expect("map")), Ok(()));
        let args = json!({"backup": "maybe", "dest": "/x"});
        assert!(validate(&d, args.as_object().expect("map")).is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        dest: String,
        #[serde(default, deserialize_with = "opt_bool_lenient")]
        backup: Option<bool>,
        #[serde(default = "yes", deserialize_with = "bool_lenient")]
        force: bool,
        #[serde(default, deserialize_with = "opt_int_lenient")]
        seconds: Option<u64>,
        #[serde(default, deserialize_with = "mode")]
        mode: Option<Mode>,
        #[serde(default, deserialize_with = "opt_string_lenient")]
        owner: Option<String>,
    }

    fn yes() -> bool {
        true
    }

    #[test]
    fn typed_lenient() {
        let p: P = typed(
            "m",
            &json!({"dest": "/x", "backup": "yes", "force": "0", "seconds": "5", "mode": "0640", "owner": 1000, "gone": null}),
        )
        .expect("typed");
        assert_eq!(p.dest, "/x");
        assert_eq!(p.backup, Some(true));
        assert!(!p.force);
        assert_eq!(p.seconds, Some(5));
        assert_eq!(p.mode, Some(Mode::Bits(0o640)));
        assert_eq!(p.owner.as_deref(), Some("1000"));
        let p: P = typed("m", &json!({"dest": "/x"})).expect("typed");
        assert!(p.force && p.backup.is_none() && p.mode.is_none());
    }

    #[test]
    fn typed_errors() {
        let e = typed::<P>("file_copy", &json!({"dst": "/x"})).unwrap_err();
        assert_eq!(e.msg, "file_copy: unknown argument 'dst'");
        assert_eq!(e.help.as_deref(), Some("did you mean 'dest'?"));
        assert_eq!(e.arg.as_deref(), Some("dst"));
        let e = typed::<P>("file_copy", &json!({"zzzzzzzz": 1, "dest": "/x"})).unwrap_err();
        assert_eq!(
            e.help.as_deref(),
            Some("expected one of: dest, backup, force, seconds, mode, owner")
        );
        let e = typed::<P>("file_copy", &json!({"backup": true})).unwrap_err();
        assert_eq!(e.msg, "file_copy: missing required argument 'dest'");
        let e = typed::<P>("file_copy", &json!({"dest": "/x", "backup": "maybe"})).unwrap_err();
        assert_eq!(
            e.msg,
            "file_copy: argument 'backup': expected a boolean (yes/no, true/false), found \"maybe\""
        );
        assert_eq!(e.arg.as_deref(), Some("backup"));
        let e = typed::<P>("file_copy", &json!({"dest": ["x"], "seconds": -3})).unwrap_err();
        assert_eq!(e.arg.as_deref(), Some("dest"));
        assert!(
            e.msg
                .starts_with("file_copy: argument 'dest': invalid type"),
            "{}",
            e.msg
        );
        let e = typed::<P>("file_copy", &json!("dest=/x")).unwrap_err();
        assert_eq!(
            e.msg,
            "file_copy: arguments must be a mapping, found \"dest=/x\""
        );
    }
}
