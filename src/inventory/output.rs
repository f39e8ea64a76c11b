//! Python-compatible text: `json.dumps(sort_keys=True, indent=4)` as
//! ansible-inventory prints it, and `str()`/`repr()` for `--graph --vars`.

use super::literal::python_float_repr;
use serde_json::{Number, Value};

/// `json.dumps(v, sort_keys=True, indent=4, ensure_ascii=False)`.
pub(crate) fn py_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, 0, &mut out);
    out
}

fn number(n: &Number) -> String {
    if n.is_f64() {
        n.as_f64().map_or_else(
            || n.to_string(),
            |f| {
                if f.is_nan() {
                    "NaN".into()
                } else if f.is_infinite() {
                    if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
                } else {
                    python_float_repr(f)
                }
            },
        )
    } else {
        n.to_string()
    }
}

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(v: &Value, level: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => json_str(s, out),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&" ".repeat(4 * (level + 1)));
                write_json(x, level + 1, out);
            }
            out.push('\n');
            out.push_str(&" ".repeat(4 * level));
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&" ".repeat(4 * (level + 1)));
                json_str(k, out);
                out.push_str(": ");
                if let Some(x) = m.get(*k) {
                    write_json(x, level + 1, out);
                }
            }
            out.push('\n');
            out.push_str(&" ".repeat(4 * level));
            out.push('}');
        }
    }
}

/// Python's `str(v)`: strings bare, the rest as `repr`.
pub(crate) fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => py_repr(v),
    }
}

/// Python's `repr(v)` for JSON-like data (dicts in insertion order).
pub(crate) fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => {
            if n.is_f64() {
                n.as_f64().map_or_else(|| n.to_string(), python_float_repr)
            } else {
                n.to_string()
            }
        }
        Value::String(s) => repr_str(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", repr_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn repr_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_like_python() {
        let v = json!({"b": [1, 2.0, {"z": null, "a": "x\"y"}], "a": {}, "c": [], "é": 1e16});
        let want = "{\n    \"a\": {},\n    \"b\": [\n        1,\n        2.0,\n        {\n            \"a\": \"x\\\"y\",\n            \"z\": null\n        }\n    ],\n    \"c\": [],\n    \"é\": 1e+16\n}";
        assert_eq!(py_json(&v), want);
    }

    #[test]
    fn repr_like_python() {
        let cases: &[(Value, &str)] = &[
            (json!("plain"), "plain"),
            (json!({"a": {"b": "c"}}), "{'a': {'b': 'c'}}"),
            (
                json!([1, "two", 3.0, null, true]),
                "[1, 'two', 3.0, None, True]",
            ),
            (json!(["it's"]), "[\"it's\"]"),
            (json!(["a\nb"]), "['a\\nb']"),
        ];
        for (v, want) in cases {
            assert_eq!(py_str(v), *want);
        }
    }
}
