//! YAML reading: the only place that knows about YAML crates.
//!
//! Files are parsed with `yaml-rust2`'s event parser into a [`Node`] tree that
//! keeps the line and column of every value, so later stages can point at the
//! exact key that is wrong. Plain scalars are typed as Ansible (PyYAML, YAML
//! 1.1) types them: `yes`/`no`/`on`/`off` are booleans, `0644` is octal, `1e3`
//! is a string. Duplicate keys and tab indentation are errors. `serde_yaml`
//! (archived upstream, so kept to this file) only writes YAML for display.

use crate::error::{Pos, SourceError};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Yaml,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn null(pos: Pos) -> Node {
        Node {
            value: Yaml::Null,
            pos,
        }
    }

    /// What kind of value this is, for "expected a list, found a string".
    pub fn kind(&self) -> &'static str {
        match self.value {
            Yaml::Null => "nothing",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) | Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Yaml::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Yaml::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Yaml::Null)
    }

    /// The value under a string key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_string() == key)
            .map(|(_, v)| v)
    }

    /// A scalar as the text a mapping key stands for (`1` → "1", `yes` → "True").
    pub fn key_string(&self) -> String {
        match &self.value {
            Yaml::Str(s) => s.clone(),
            Yaml::Null => "None".into(),
            Yaml::Bool(b) => if *b { "True" } else { "False" }.into(),
            Yaml::Int(i) => i.to_string(),
            Yaml::Float(f) => f.to_string(),
            _ => to_json(self).to_string(),
        }
    }

    /// The scalar as a string, as a template or argument sees it.
    pub fn scalar_string(&self) -> Option<String> {
        match &self.value {
            Yaml::Seq(_) | Yaml::Map(_) => None,
            Yaml::Null => Some(String::new()),
            Yaml::Bool(b) => Some(b.to_string()),
            _ => Some(self.key_string()),
        }
    }

    pub fn to_json(&self) -> Value {
        to_json(self)
    }
}

/// The node as JSON: mapping keys become strings, NaN and infinities strings.
pub fn to_json(node: &Node) -> Value {
    match &node.value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Int(i) => Value::Number((*i).into()),
        Yaml::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Yaml::Str(s) => Value::String(s.clone()),
        Yaml::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Map(pairs) => {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k.key_string(), to_json(v));
            }
            Value::Object(map)
        }
    }
}

/// Parses every document of a YAML stream. `file` names the source in errors.
pub fn parse_all(src: &str, file: &Path) -> Result<Vec<Node>, SourceError> {
    // A UTF-8 byte order mark, as some editors write, is not content.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    check_tabs(src, file)?;
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        let mut msg = e.info().to_string();
        if msg.contains("tab") {
            msg = format!("{msg}: YAML indents with spaces, never tabs");
        }
        return Err(SourceError::with_source(
            file,
            src,
            pos(m),
            format!("YAML syntax error: {msg}"),
        ));
    }
    if let Some((p, msg)) = builder.error {
        return Err(SourceError::with_source(file, src, p, msg));
    }
    Ok(builder.docs)
}

/// Parses a one-document YAML file; an empty file is `null`.
pub fn parse(src: &str, file: &Path) -> Result<Node, SourceError> {
    let mut docs = parse_all(src, file)?;
    match docs.len() {
        0 => Ok(Node::null(Pos { line: 1, col: 1 })),
        1 => Ok(docs.remove(0)),
        _ => {
            let second = docs[1].pos;
            Err(SourceError::with_source(
                file,
                src,
                second,
                "expected one YAML document, found several (a second `---`)",
            ))
        }
    }
}

/// Writes a JSON value as YAML, for display (`-v` results).
pub fn dump(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|_| value.to_string())
}

fn check_tabs(src: &str, file: &Path) -> Result<(), SourceError> {
    for (i, line) in src.lines().enumerate() {
        if line.starts_with('\t') && !line.trim().is_empty() {
            return Err(SourceError::with_source(
                file,
                src,
                Pos {
                    line: i + 1,
                    col: 1,
                },
                "a tab character in indentation: YAML indents with spaces, never tabs",
            ));
        }
    }
    Ok(())
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
    Map {
        pairs: Vec<(Node, Node)>,
        key: Option<Node>,
        pos: Pos,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Anchored values and how many nodes each holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied in by aliases so far: bounded, so a "billion laughs"
    /// file is an error instead of exhausting memory.
    expanded: usize,
    error: Option<(Pos, String)>,
}

/// At most this many nodes may be copied in through aliases.
const ALIAS_BUDGET: usize = 100_000;

/// How many nodes a value holds (iteratively: no recursion on deep input).
fn node_count(n: &Node) -> usize {
    let mut count = 0;
    let mut todo = vec![n];
    while let Some(n) = todo.pop() {
        count += 1;
        match &n.value {
            Yaml::Seq(items) => todo.extend(items),
            Yaml::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                todo.push(k);
                todo.push(v);
            }),
            _ => {}
        }
    }
    count
}

impl Builder {
    fn fail(&mut self, p: Pos, msg: String) {
        if self.error.is_none() {
            self.error = Some((p, msg));
        }
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { pairs, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    // An empty value (`hosts:`) is marked where the next
                    // token starts, often the next line: point at its key.
                    let mut node = node;
                    if node.is_null() && node.pos.line > k.pos.line {
                        node.pos = k.pos;
                    }
                    pairs.push((k, node))
                }
            },
        }
    }

    fn finish_map(&mut self, pairs: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
        let mut out: Vec<(Node, Node)> = Vec::with_capacity(pairs.len());
        let mut merged: Vec<(Node, Node)> = Vec::new();
        for (k, v) in pairs {
            if matches!(&k.value, Yaml::Str(s) if s == "<<") {
                let sources: Vec<Node> = match v.value {
                    Yaml::Seq(items) => items,
                    _ => vec![v],
                };
                for src in sources {
                    match src.value {
                        Yaml::Map(ps) => {
                            for (mk, mv) in ps {
                                if !merged.iter().any(|(e, _)| e.value == mk.value) {
                                    merged.push((mk, mv));
                                }
                            }
                        }
                        _ => self.fail(
                            src.pos,
                            format!("a merge key `<<` needs a mapping, found {}", src.kind()),
                        ),
                    }
                }
                continue;
            }
            if let Some((first, _)) = out.iter().find(|(e, _)| e.value == k.value) {
                let msg = format!(
                    "duplicate key '{}' (first defined at line {}, column {})",
                    k.key_string(),
                    first.pos.line,
                    first.pos.col
                );
                self.fail(k.pos, msg);
            }
            out.push((k, v));
        }
        for (mk, mv) in merged {
            if !out.iter().any(|(e, _)| e.value == mk.value) {
                out.push((mk, mv));
            }
        }
        out
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let p = pos(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let value = match resolve(&text, style, tag.as_ref()) {
                    Ok(v) => v,
                    Err(msg) => {
                        self.fail(p, msg);
                        Yaml::Str(text)
                    }
                };
                let node = Node { value, pos: p };
                if anchor > 0 {
                    self.anchors
                        .insert(anchor, (node.clone(), node_count(&node)));
                }
                self.push_value(node);
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some((n, size)) if self.expanded + size <= ALIAS_BUDGET => {
                        self.expanded += size;
                        Node {
                            value: n.value.clone(),
                            pos: p,
                        }
                    }
                    Some(_) => {
                        let msg = format!(
                            "aliases expand to more than {ALIAS_BUDGET} values (an alias bomb?)"
                        );
                        self.fail(p, msg);
                        Node::null(p)
                    }
                    None => {
                        self.fail(p, "an alias to an unknown anchor".into());
                        Node::null(p)
                    }
                };
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                items: Vec::new(),
                pos: p,
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                pairs: Vec::new(),
                key: None,
                pos: p,
                anchor,
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, pos, anchor }) = self.stack.pop() {
                    let node = Node {
                        value: Yaml::Seq(items),
                        pos,
                    };
                    if anchor > 0 {
                        self.anchors
                            .insert(anchor, (node.clone(), node_count(&node)));
                    }
                    self.push_value(node);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    pairs, pos, anchor, ..
                }) = self.stack.pop()
                {
                    let pairs = self.finish_map(pairs);
                    // A block mapping starts at its first key (the parser's
                    // mark for it can point past that key).
                    let pos = match pairs.first() {
                        Some((k, _)) if (k.pos.line, k.pos.col) < (pos.line, pos.col) => k.pos,
                        _ => pos,
                    };
                    let node = Node {
                        value: Yaml::Map(pairs),
                        pos,
                    };
                    if anchor > 0 {
                        self.anchors
                            .insert(anchor, (node.clone(), node_count(&node)));
                    }
                    self.push_value(node);
                }
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

/// Types a scalar as PyYAML's SafeLoader (YAML 1.1) does.
fn resolve(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Yaml, String> {
    if let Some(tag) = tag {
        let name = if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" {
            tag.suffix.as_str()
        } else {
            // Ansible's `!unsafe` marks a string that must not be templated;
            // mailrun keeps it a plain string.
            if tag.handle == "!" && tag.suffix == "unsafe" {
                return Ok(Yaml::Str(text.to_string()));
            }
            // `!secret`: a string never printed (masked in every output).
            if tag.handle == "!" && tag.suffix == "secret" {
                crate::secret::register(text);
                return Ok(Yaml::Str(text.to_string()));
            }
            return Err(format!(
                "unsupported YAML tag '{}{}'",
                tag.handle, tag.suffix
            ));
        };
        return match name {
            "str" => Ok(Yaml::Str(text.to_string())),
            "int" => parse_int(text)
                .map(Yaml::Int)
                .ok_or_else(|| format!("'{text}' is not an integer")),
            "float" => parse_float(text)
                .map(Yaml::Float)
                .ok_or_else(|| format!("'{text}' is not a float")),
            "bool" => parse_bool(text)
                .map(Yaml::Bool)
                .ok_or_else(|| format!("'{text}' is not a boolean")),
            "null" => Ok(Yaml::Null),
            other => Err(format!("unsupported YAML tag '!!{other}'")),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Yaml::Str(text.to_string()));
    }
    Ok(plain_scalar(text))
}

/// Types an unquoted scalar (YAML 1.1 core resolvers, as PyYAML).
pub fn plain_scalar(text: &str) -> Yaml {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Yaml::Null;
    }
    if let Some(b) = parse_bool(text) {
        return Yaml::Bool(b);
    }
    if let Some(i) = parse_int(text) {
        return Yaml::Int(i);
    }
    if let Some(f) = parse_float(text) {
        return Yaml::Float(f);
    }
    Yaml::Str(text.to_string())
}

fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn parse_int(t: &str) -> Option<i64> {
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() {
        return None;
    }
    let clean = |s: &str, ok: fn(char) -> bool| -> Option<String> {
        if s.is_empty() || !s.chars().all(|c| c == '_' || ok(c)) {
            return None;
        }
        let v: String = s.chars().filter(|&c| c != '_').collect();
        (!v.is_empty()).then_some(v)
    };
    let magnitude: i64 = if let Some(b) = body.strip_prefix("0b") {
        i64::from_str_radix(&clean(b, |c| c == '0' || c == '1')?, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(&clean(h, |c| c.is_ascii_hexdigit())?, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&clean(&body[1..], |c| ('0'..='7').contains(&c))?, 8).ok()?
    } else if body == "0" {
        0
    } else if body.contains(':') {
        // Sexagesimal: 1:30 = 90.
        let mut total: i64 = 0;
        for (i, part) in body.split(':').enumerate() {
            let p = clean(part, |c| c.is_ascii_digit())?;
            if i > 0 && (p.len() > 2 || p.parse::<i64>().ok()? > 59) {
                return None;
            }
            if i == 0 && p.starts_with('0') {
                return None;
            }
            total = total.checked_mul(60)?.checked_add(p.parse().ok()?)?;
        }
        total
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit() && c != '0') {
            return None;
        }
        clean(body, |c| c.is_ascii_digit())?.parse().ok()?
    };
    Some(if neg { -magnitude } else { magnitude })
}

fn parse_float(t: &str) -> Option<f64> {
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?  or  \.[0-9_]+([eE][-+][0-9]+)?
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let dot = mantissa.find('.')?;
    let (int_part, frac) = (&mantissa[..dot], &mantissa[dot + 1..]);
    let int_ok = int_part.is_empty() && !frac.is_empty() && !frac.starts_with('_')
        || int_part.starts_with(|c: char| c.is_ascii_digit())
            && int_part.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !int_ok || !frac.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    t.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Node {
        parse(src, Path::new("t.yml")).unwrap()
    }

    #[test]
    fn scalars_are_typed_as_yaml_1_1() {
        let cases: &[(&str, Value)] = &[
            ("yes", Value::Bool(true)),
            ("Off", Value::Bool(false)),
            ("0644", Value::from(420)),
            ("0x1f", Value::from(31)),
            ("1_000", Value::from(1000)),
            ("1:30", Value::from(90)),
            ("-7", Value::from(-7)),
            ("1.5", Value::from(1.5)),
            ("1e3", Value::from("1e3")),
            ("1.0e+3", Value::from(1000.0)),
            ("0o644", Value::from("0o644")),
            ("089", Value::from("089")),
            ("~", Value::Null),
            ("'yes'", Value::from("yes")),
            ("!!str 12", Value::from("12")),
            ("hello world", Value::from("hello world")),
        ];
        for (src, want) in cases {
            assert_eq!(
                &p(&format!("k: {src}")).get("k").unwrap().to_json(),
                want,
                "{src}"
            );
        }
    }

    #[test]
    fn positions_are_one_based() {
        let n = p("a: 1\nb:\n  - x\n  - y: 2\n");
        let b = n.get("b").unwrap();
        let second = &b.as_seq().unwrap()[1];
        let (k, _) = &second.as_map().unwrap()[0];
        assert_eq!(k.pos, Pos { line: 4, col: 5 });
    }

    #[test]
    fn duplicate_keys_and_tabs_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n", Path::new("t.yml")).unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.msg.contains("duplicate key 'a'"), "{}", e.msg);
        let e = parse("a:\n\tb: 1\n", Path::new("t.yml")).unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(e.msg.contains("tab"));
        let e = parse("a: [1, 2\nb: 3\n", Path::new("t.yml")).unwrap_err();
        assert!(e.msg.starts_with("YAML syntax error"), "{}", e.msg);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let n = p("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n");
        assert_eq!(
            n.get("c").unwrap().to_json(),
            serde_json::json!({"y": 3, "x": 1})
        );
    }
}
