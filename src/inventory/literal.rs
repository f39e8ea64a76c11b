//! Python's `ast.literal_eval`, as the INI inventory plugin applies it to
//! every `key=value`: numbers, strings, `True`/`False`/`None`, lists, tuples
//! (as lists), sets (as lists), dicts. Anything else stays the raw string.

use serde_json::{Map, Number, Value};

/// The value Ansible's INI plugin stores for `text`.
pub(crate) fn ini_value(text: &str) -> Value {
    literal_eval(text).unwrap_or_else(|| Value::String(text.to_string()))
}

/// `ast.literal_eval(text)`, or None where Python raises.
pub(crate) fn literal_eval(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.trim_start_matches([' ', '\t']).chars().collect(),
        i: 0,
        depth: 0,
    };
    let v = p.top()?;
    p.skip_ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser {
    s: Vec<char>,
    i: usize,
    depth: usize,
}

/// An evaluated literal, before it becomes JSON (keys need the Python type).
enum Lit {
    Str(String),
    Bytes(String),
    Val(Value),
}

impl Lit {
    fn into_value(self) -> Value {
        match self {
            Lit::Str(s) | Lit::Bytes(s) => Value::String(s),
            Lit::Val(v) => v,
        }
    }
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\x0c' {
                self.i += 1;
            } else if c == '#' {
                self.i = self.s.len();
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The whole input: an expression, or a bare tuple `1, 2`.
    fn top(&mut self) -> Option<Value> {
        let first = self.expr()?;
        self.skip_ws();
        if self.peek() != Some(',') {
            return Some(first.into_value());
        }
        let mut items = vec![first.into_value()];
        while self.eat(',') {
            self.skip_ws();
            if self.i == self.s.len() {
                break;
            }
            items.push(self.expr()?.into_value());
        }
        Some(Value::Array(items))
    }

    fn expr(&mut self) -> Option<Lit> {
        self.depth += 1;
        if self.depth > 100 {
            return None;
        }
        let r = self.unary();
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Option<Lit> {
        self.skip_ws();
        match self.peek()? {
            '-' | '+' => {
                let neg = self.peek() == Some('-');
                self.i += 1;
                let inner = self.unary()?;
                match inner {
                    Lit::Val(Value::Number(n)) => {
                        if !neg {
                            return Some(Lit::Val(Value::Number(n)));
                        }
                        if let Some(i) = n.as_i64() {
                            return Some(Lit::Val(
                                i.checked_neg()
                                    .map(Value::from)
                                    .unwrap_or_else(|| float(-(i as f64))),
                            ));
                        }
                        if let Some(u) = n.as_u64() {
                            let v = i64::try_from(u)
                                .ok()
                                .and_then(i64::checked_neg)
                                .map(Value::from)
                                .or_else(|| (u == 1u64 << 63).then(|| Value::from(i64::MIN)))
                                .unwrap_or_else(|| float(-(u as f64)));
                            return Some(Lit::Val(v));
                        }
                        n.as_f64().map(|f| Lit::Val(float(-f)))
                    }
                    _ => None,
                }
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Option<Lit> {
        self.skip_ws();
        let c = self.peek()?;
        if c.is_ascii_digit()
            || (c == '.' && self.s.get(self.i + 1).is_some_and(char::is_ascii_digit))
        {
            return self.number();
        }
        if c == '[' {
            self.i += 1;
            return self.seq(']').map(|v| Lit::Val(Value::Array(v)));
        }
        if c == '(' {
            self.i += 1;
            self.skip_ws();
            if self.eat(')') {
                return Some(Lit::Val(Value::Array(vec![])));
            }
            let first = self.expr()?;
            if self.eat(')') {
                return Some(first);
            }
            if !self.eat(',') {
                return None;
            }
            let mut items = vec![first.into_value()];
            items.extend(self.seq(')')?);
            return Some(Lit::Val(Value::Array(items)));
        }
        if c == '{' {
            self.i += 1;
            return self.brace();
        }
        if c == '.' && self.s.get(self.i..self.i + 3) == Some(&['.', '.', '.']) {
            self.i += 3;
            return Some(Lit::Str("...".into()));
        }
        if c == '\'' || c == '"' || c.is_alphabetic() || c == '_' {
            return self.word_or_string();
        }
        None
    }

    /// Items up to `close`, trailing comma allowed.
    fn seq(&mut self, close: char) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.expr()?.into_value());
            if self.eat(close) {
                return Some(items);
            }
            if !self.eat(',') {
                return None;
            }
        }
    }

    fn brace(&mut self) -> Option<Lit> {
        if self.eat('}') {
            return Some(Lit::Val(Value::Object(Map::new())));
        }
        let first = self.expr()?;
        if self.eat(':') {
            let mut map = Map::new();
            let v = self.expr()?.into_value();
            map.insert(key_text(first)?, v);
            loop {
                if self.eat('}') {
                    return Some(Lit::Val(Value::Object(map)));
                }
                if !self.eat(',') {
                    return None;
                }
                if self.eat('}') {
                    return Some(Lit::Val(Value::Object(map)));
                }
                let k = self.expr()?;
                if !self.eat(':') {
                    return None;
                }
                let v = self.expr()?.into_value();
                map.insert(key_text(k)?, v);
            }
        }
        // A set: duplicates dropped (Python's set order is by hash; keep
        // first-seen order).
        let mut items = vec![first.into_value()];
        if !self.eat('}') {
            if !self.eat(',') {
                return None;
            }
            items.extend(self.seq('}')?);
        }
        let mut uniq: Vec<Value> = Vec::new();
        for v in items {
            if !uniq.contains(&v) {
                uniq.push(v);
            }
        }
        Some(Lit::Val(Value::Array(uniq)))
    }

    fn word_or_string(&mut self) -> Option<Lit> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.i += 1;
        }
        let word: String = self.s[start..self.i].iter().collect();
        if matches!(self.peek(), Some('\'' | '"')) {
            let lower = word.to_ascii_lowercase();
            let (raw, bytes) = match lower.as_str() {
                "" => (false, false),
                "r" => (true, false),
                "u" => (false, false),
                "b" => (false, true),
                "br" | "rb" => (true, true),
                _ => return None,
            };
            let mut out = self.string_body(raw, bytes)?;
            // Adjacent literals concatenate ('a' 'b'); str and bytes do not mix.
            loop {
                self.skip_ws();
                let save = self.i;
                let mut prefix = String::new();
                while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    prefix.push(self.peek()?);
                    self.i += 1;
                }
                if !matches!(self.peek(), Some('\'' | '"')) {
                    self.i = save;
                    break;
                }
                let p = prefix.to_ascii_lowercase();
                let (r2, b2) = match p.as_str() {
                    "" | "u" => (false, false),
                    "r" => (true, false),
                    "b" => (false, true),
                    "br" | "rb" => (true, true),
                    _ => return None,
                };
                if b2 != bytes {
                    return None;
                }
                out.push_str(&self.string_body(r2, b2)?);
            }
            return Some(if bytes {
                Lit::Bytes(out)
            } else {
                Lit::Str(out)
            });
        }
        match word.as_str() {
            "True" => Some(Lit::Val(Value::Bool(true))),
            "False" => Some(Lit::Val(Value::Bool(false))),
            "None" => Some(Lit::Val(Value::Null)),
            _ => None,
        }
    }

    /// A quoted body starting at the quote; Python's escapes.
    fn string_body(&mut self, raw: bool, bytes: bool) -> Option<String> {
        let q = self.peek()?;
        let triple = self.s.get(self.i..self.i + 3) == Some(&[q, q, q]);
        self.i += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            if c == q {
                if !triple {
                    self.i += 1;
                    return Some(out);
                }
                if self.s.get(self.i..self.i + 3) == Some(&[q, q, q]) {
                    self.i += 3;
                    return Some(out);
                }
            }
            if bytes && !c.is_ascii() {
                return None;
            }
            self.i += 1;
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.peek()?;
            self.i += 1;
            if raw {
                out.push('\\');
                out.push(e);
                continue;
            }
            match e {
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut v = e.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                self.i += 1;
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(v)?);
                }
                'x' => out.push(self.hex(2)?),
                'u' if !bytes => out.push(self.hex(4)?),
                'U' if !bytes => out.push(self.hex(8)?),
                'N' if !bytes => return None,
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn hex(&mut self, n: usize) -> Option<char> {
        let digits: String = self.s.get(self.i..self.i + n)?.iter().collect();
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += n;
        char::from_u32(u32::from_str_radix(&digits, 16).ok()?)
    }

    fn number(&mut self) -> Option<Lit> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            || (matches!(self.peek(), Some('+' | '-'))
                && matches!(self.s.get(self.i.wrapping_sub(1)), Some('e' | 'E'))
                && !self.s[start..self.i].iter().any(|c| matches!(c, 'x' | 'X')))
        {
            self.i += 1;
        }
        let text: String = self.s[start..self.i].iter().collect();
        number(&text).map(Lit::Val)
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map(Value::Number).unwrap_or_else(|| {
        Value::String(
            if f.is_nan() {
                "nan"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            }
            .into(),
        )
    })
}

/// Digits with single underscores between them.
fn clean_digits(s: &str, ok: impl Fn(char) -> bool) -> Option<String> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    if !s.chars().all(|c| c == '_' || ok(c)) {
        return None;
    }
    Some(s.chars().filter(|&c| c != '_').collect())
}

fn int_value(digits: &str, radix: u32) -> Option<Value> {
    if let Ok(u) = u64::from_str_radix(digits, radix) {
        return Some(Value::from(u));
    }
    // Larger than u64: Python keeps it exact; JSON here cannot, so a float.
    let mut f = 0f64;
    for c in digits.chars() {
        f = f * radix as f64 + c.to_digit(radix)? as f64;
    }
    Some(float(f))
}

/// A Python numeric literal (no sign).
fn number(t: &str) -> Option<Value> {
    let lower = t.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let rest = rest.strip_prefix('_').unwrap_or(rest);
            let d = clean_digits(rest, |c| c.is_digit(radix))?;
            return int_value(&d, radix);
        }
    }
    if let Some(imag) = lower.strip_suffix('j') {
        // A pure imaginary number: Ansible stores str(complex): `1j`.
        let f = decimal_float(imag)?;
        let mut s = python_float_repr(f);
        if let Some(stripped) = s.strip_suffix(".0") {
            s = stripped.to_string();
        }
        return Some(Value::String(format!("{s}j")));
    }
    if lower.chars().all(|c| c.is_ascii_digit() || c == '_') {
        let d = clean_digits(&lower, |c| c.is_ascii_digit())?;
        // Python forbids leading zeros in a non-zero decimal.
        if d.len() > 1 && d.starts_with('0') && d.chars().any(|c| c != '0') {
            return None;
        }
        return int_value(&d, 10);
    }
    decimal_float(&lower).map(float)
}

fn decimal_float(t: &str) -> Option<f64> {
    let (mant, exp) = match t.find('e') {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (ip, fp) = match mant.find('.') {
        Some(i) => (&mant[..i], Some(&mant[i + 1..])),
        None => (mant, None),
    };
    let ip_c = if ip.is_empty() {
        String::new()
    } else {
        clean_digits(ip, |c| c.is_ascii_digit())?
    };
    let fp_c = match fp {
        Some("") | None => String::new(),
        Some(f) => clean_digits(f, |c| c.is_ascii_digit())?,
    };
    if ip_c.is_empty() && fp_c.is_empty() {
        return None;
    }
    if fp.is_none() && exp.is_none() {
        // An integer part alone (leading zeros allowed in floats only).
        return None.or_else(|| ip_c.parse().ok());
    }
    let mut s = format!(
        "{}.{}",
        if ip_c.is_empty() { "0" } else { &ip_c },
        if fp_c.is_empty() { "0" } else { &fp_c }
    );
    if let Some(e) = exp {
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", e.strip_prefix('+').unwrap_or(e)),
        };
        let d = clean_digits(digits, |c| c.is_ascii_digit())?;
        s = format!("{s}e{sign}{d}");
    }
    s.parse().ok()
}

/// A dict key as json.dumps writes it.
fn key_text(k: Lit) -> Option<String> {
    match k {
        Lit::Str(s) | Lit::Bytes(s) => Some(s),
        Lit::Val(Value::Bool(b)) => Some(if b { "true" } else { "false" }.into()),
        Lit::Val(Value::Null) => Some("null".into()),
        Lit::Val(Value::Number(n)) => Some(match n.as_f64() {
            Some(f) if n.is_f64() => python_float_repr(f),
            _ => n.to_string(),
        }),
        Lit::Val(Value::String(s)) => Some(s),
        // Lists are unhashable: a TypeError in Python.
        Lit::Val(_) => None,
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4
/// and from 1e16.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{:e}", f);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.unsigned_abs());
    }
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp + 1;
    if n <= int_len {
        let zeros = "0".repeat((int_len - n) as usize);
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (a, b) = digits.split_at(int_len as usize);
        format!("{sign}{a}.{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals() {
        let cases: &[(&str, Value)] = &[
            ("1", json!(1)),
            ("-7", json!(-7)),
            ("1_000", json!(1000)),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("010", json!("010")),
            ("00", json!(0)),
            ("3.25", json!(3.25)),
            ("1e16", json!(1e16)),
            (".5", json!(0.5)),
            ("5.", json!(5.0)),
            ("True", json!(true)),
            ("None", json!(null)),
            ("yes", json!("yes")),
            ("true", json!("true")),
            ("'x y'", json!("x y")),
            ("\"a\\nb\"", json!("a\nb")),
            ("r'a\\nb'", json!("a\\nb")),
            ("'a' 'b'", json!("ab")),
            ("[1, 'two', 3.0]", json!([1, "two", 3.0])),
            ("(1, 2)", json!([1, 2])),
            ("(1)", json!(1)),
            ("1, 2", json!([1, 2])),
            ("{'k': 'v', 'n': [1, 2]}", json!({"k": "v", "n": [1, 2]})),
            ("{1: 'a'}", json!({"1": "a"})),
            ("{}", json!({})),
            ("{1, 2, 1}", json!([1, 2])),
            ("1j", json!("1j")),
            ("10 # comment", json!(10)),
            ("x # comment", json!("x # comment")),
            ("hello world", json!("hello world")),
            ("a=b", json!("a=b")),
            ("", json!("")),
            ("[1, 2", json!("[1, 2")),
            ("'unclosed", json!("'unclosed")),
            ("f'x'", json!("f'x'")),
            ("caf\\u00e9", json!("caf\\u00e9")),
            ("'caf\\u00e9'", json!("café")),
            ("/srv/mail", json!("/srv/mail")),
            ("1.2.3.4", json!("1.2.3.4")),
            ("-", json!("-")),
            ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", json!("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[")),
        ];
        for (text, want) in cases {
            assert_eq!(&ini_value(text), want, "{text}");
        }
    }

    #[test]
    fn float_repr() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (3.25, "3.25"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (-2.5, "-2.5"),
            (123.456, "123.456"),
            (0.1, "0.1"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(*f), *want);
        }
    }
}
