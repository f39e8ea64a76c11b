//! The expression language of `when`, `changed_when`, `failed_when` and
//! `until`: the practical subset of Jinja that Ansible users write.
//!
//! - literals: `1`, `-2`, `1.5`, `'a'`, `"b"`, `true`/`True`, `false`/`False`,
//!   `none`/`None`/`null`, lists `[1, 'a']`, tuples `(1, 2)`, dicts `{'k': 1}`;
//! - paths: `a`, `a.b.c`, `a[0]`, `a['k']`, `hostvars[inventory_hostname].x`;
//! - `== != < <= > >=`, `in`, `not in`, `and`, `or`, `not`, parentheses;
//! - tests `x is [not] defined / undefined / none / succeeded / failed /
//!   changed / skipped / string / number / mapping / sequence / match(re) / search(re)`;
//! - filters `bool length count int float string lower upper trim default d
//!   first last join abs list`.
//!
//! Precedence as Jinja: `or` < `and` < `not` < comparisons < `-x` < filters
//! and tests < paths. An undefined variable is an error naming it, except
//! under `is defined` / `is undefined` / `default`.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Deepest nesting of parentheses, lists, `not`s, … an expression may have.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// 1-based column in the expression text, when known.
    pub col: Option<usize>,
    pub msg: String,
    /// The undefined variable, when that is the cause.
    pub var: Option<String>,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ExprError {}

/// A parsed expression; `src` is the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub src: String,
    node: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
        }
    }
}

/// A path segment: `.key` or `[expr]`; `end` is the byte offset where the
/// segment's text ends (to name an undefined path by its source text).
#[derive(Debug, Clone, PartialEq)]
struct Seg {
    key: SegKey,
    end: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum SegKey {
    Name(String),
    Index(i64),
    Expr(Box<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    List(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    Var {
        name: String,
        at: usize,
    },
    /// `base.a[0]…`; `at` is where the base's text starts.
    Get {
        base: Box<Node>,
        segs: Vec<Seg>,
        at: usize,
    },
    Not(Box<Node>),
    Neg {
        inner: Box<Node>,
        at: usize,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Cmp {
        first: Box<Node>,
        rest: Vec<(CmpOp, Node, usize)>,
    },
    Post {
        base: Box<Node>,
        ops: Vec<PostOp>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum PostOp {
    Filter {
        name: &'static str,
        args: Vec<Node>,
        at: usize,
    },
    Test {
        name: &'static str,
        negate: bool,
        args: Vec<Node>,
        at: usize,
    },
}

/// Filters: name, fewest and most arguments.
const FILTERS: &[(&str, usize, usize)] = &[
    ("bool", 0, 0),
    ("length", 0, 0),
    ("count", 0, 0),
    ("int", 0, 1),
    ("float", 0, 1),
    ("string", 0, 0),
    ("lower", 0, 0),
    ("upper", 0, 0),
    ("trim", 0, 0),
    ("default", 0, 2),
    ("d", 0, 2),
    ("first", 0, 0),
    ("last", 0, 0),
    ("join", 0, 1),
    ("abs", 0, 0),
    ("list", 0, 0),
];

/// Tests: name, fewest and most arguments.
const TESTS: &[(&str, usize, usize)] = &[
    ("defined", 0, 0),
    ("undefined", 0, 0),
    ("none", 0, 0),
    ("succeeded", 0, 0),
    ("success", 0, 0),
    ("successful", 0, 0),
    ("failed", 0, 0),
    ("failure", 0, 0),
    ("changed", 0, 0),
    ("change", 0, 0),
    ("skipped", 0, 0),
    ("skip", 0, 0),
    ("string", 0, 0),
    ("number", 0, 0),
    ("integer", 0, 0),
    ("float", 0, 0),
    ("boolean", 0, 0),
    ("mapping", 0, 0),
    ("sequence", 0, 0),
    ("iterable", 0, 0),
    ("true", 0, 0),
    ("false", 0, 0),
    ("match", 1, 1),
    ("search", 1, 1),
    ("regex", 1, 1),
];

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "is"];

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// Punctuation and operators, including unsupported ones (reported by
    /// the parser with a hint).
    Op(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: usize,
    end: usize,
}

impl Token {
    fn is_op(&self, op: &str) -> bool {
        matches!(&self.tok, Tok::Op(o) if *o == op)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(&self.tok, Tok::Ident(i) if i == w)
    }
}

/// 1-based column of a byte offset (always a char boundary here).
fn col_of(src: &str, at: usize) -> usize {
    src.get(..at).map_or(1, |s| s.chars().count() + 1)
}

fn err_at(src: &str, at: usize, msg: impl Into<String>) -> ExprError {
    ExprError {
        col: Some(col_of(src, at)),
        msg: msg.into(),
        var: None,
    }
}

const OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "//", "**", "(", ")", "[", "]", "{", "}", ",", ".", "|",
    ":", "<", ">", "-", "+", "*", "/", "%", "~", "=", "!", "&",
];

fn lex(src: &str, lo: usize, hi: usize) -> Result<Vec<Token>, ExprError> {
    let text = src.get(lo..hi).unwrap_or("");
    let mut toks: Vec<Token> = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        let at = lo + i;
        if c.is_whitespace() {
            it.next();
            continue;
        }
        if c.is_ascii_digit() {
            // After a `.` only an index (`a.0.1`), never a float.
            let after_dot = toks.last().is_some_and(|t| t.is_op("."));
            let mut end = i;
            let mut float = false;
            while let Some(&(j, d)) = it.peek() {
                if d.is_ascii_digit() || d == '_' {
                    end = j + 1;
                    it.next();
                } else if d == '.' && !float && !after_dot {
                    // `1.5`, but not `1.` followed by a name
                    let rest = &text[j + 1..];
                    if rest.starts_with(|x: char| x.is_ascii_digit()) {
                        float = true;
                        end = j + 1;
                        it.next();
                    } else {
                        break;
                    }
                } else if (d == 'e' || d == 'E') && !after_dot {
                    let rest = &text[j + 1..];
                    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                    if rest.starts_with(|x: char| x.is_ascii_digit()) {
                        float = true;
                        it.next();
                        end = j + 1;
                        if let Some(&(k, s)) = it.peek() {
                            if s == '+' || s == '-' {
                                it.next();
                                end = k + 1;
                            }
                        }
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            let digits: String = text[i..end].chars().filter(|&x| x != '_').collect();
            let tok = if float {
                match digits.parse::<f64>() {
                    Ok(f) if f.is_finite() => Tok::Float(f),
                    _ => return Err(err_at(src, at, format!("bad number '{}'", &text[i..end]))),
                }
            } else {
                match digits.parse::<i64>() {
                    Ok(n) => Tok::Int(n),
                    Err(_) => match digits.parse::<f64>() {
                        Ok(f) if f.is_finite() => Tok::Float(f),
                        _ => {
                            return Err(err_at(src, at, format!("bad number '{}'", &text[i..end])))
                        }
                    },
                }
            };
            toks.push(Token {
                tok,
                at,
                end: lo + end,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut end = i;
            while let Some(&(j, d)) = it.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            toks.push(Token {
                tok: Tok::Ident(text[i..end].to_string()),
                at,
                end: lo + end,
            });
            continue;
        }
        if c == '\'' || c == '"' {
            it.next();
            let mut s = String::new();
            let mut closed = None;
            while let Some((j, d)) = it.next() {
                if d == c {
                    closed = Some(j + 1);
                    break;
                }
                if d == '\\' {
                    match it.next() {
                        Some((_, e)) => match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            '0' => s.push('\0'),
                            '\\' | '\'' | '"' => s.push(e),
                            other => {
                                s.push('\\');
                                s.push(other);
                            }
                        },
                        None => break,
                    }
                } else {
                    s.push(d);
                }
            }
            match closed {
                Some(end) => toks.push(Token {
                    tok: Tok::Str(s),
                    at,
                    end: lo + end,
                }),
                None => return Err(err_at(src, at, "unterminated string")),
            }
            continue;
        }
        if text[i..].starts_with("{{") || text[i..].starts_with("}}") {
            return Err(err_at(
                src,
                at,
                "a condition is a bare expression: drop the `{{ }}` inside it (write `x == 1`, not `{{ x }} == 1`)",
            ));
        }
        match OPS.iter().find(|op| text[i..].starts_with(**op)) {
            Some(op) => {
                for _ in 0..op.len() {
                    it.next();
                }
                toks.push(Token {
                    tok: Tok::Op(op),
                    at,
                    end: at + op.len(),
                });
            }
            None => return Err(err_at(src, at, format!("unexpected character '{c}'"))),
        }
    }
    Ok(toks)
}

// ---------------------------------------------------------------- parser

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Byte offset of the end of the parsed text (for errors at the end).
    hi: usize,
}

fn tok_text(t: &Token, src: &str) -> String {
    src.get(t.at..t.end).unwrap_or("?").to_string()
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn at_op(&self, op: &str) -> bool {
        self.peek().is_some_and(|t| t.is_op(op))
    }
    fn at_word(&self, w: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(w))
    }
    fn here(&self) -> usize {
        self.peek().map_or(self.hi, |t| t.at)
    }
    /// The offending token's offset; at the end, the last token's.
    fn here_or_last(&self) -> usize {
        match self.peek() {
            Some(t) => t.at,
            None => self.toks.last().map_or(self.hi, |t| t.at),
        }
    }
    fn err(&self, at: usize, msg: impl Into<String>) -> ExprError {
        err_at(self.src, at, msg)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                self.here(),
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn expect_op(&mut self, op: &str, opened: Option<(&str, usize)>) -> Result<Token, ExprError> {
        match self.peek() {
            Some(t) if t.is_op(op) => {
                let t = t.clone();
                self.pos += 1;
                Ok(t)
            }
            other => {
                let found = match other {
                    Some(t) => format!("found '{}'", tok_text(t, self.src)),
                    None => "found the end".to_string(),
                };
                let at = other.map_or(self.hi, |t| t.at);
                let msg = match opened {
                    Some((o, oat)) => format!(
                        "expected '{op}' to close '{o}' at column {}, {found}",
                        col_of(self.src, oat)
                    ),
                    None => format!("expected '{op}', {found}"),
                };
                Err(self.err(at, msg))
            }
        }
    }

    fn parse_expr(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let r = self.parse_or();
        self.depth -= 1;
        r
    }

    fn parse_or(&mut self) -> Result<Node, ExprError> {
        let mut items = vec![self.parse_and()?];
        while self.at_word("or") {
            self.next();
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Node, ExprError> {
        let mut items = vec![self.parse_not()?];
        while self.at_word("and") {
            self.next();
            items.push(self.parse_not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Node, ExprError> {
        if self.at_word("not") {
            self.next();
            self.enter()?;
            let inner = self.parse_not();
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner?)));
        }
        self.parse_cmp()
    }

    fn parse_cmp(&mut self) -> Result<Node, ExprError> {
        let first = self.parse_unary(true)?;
        let mut rest = Vec::new();
        while let Some(t) = self.peek() {
            let at = t.at;
            let op = match &t.tok {
                Tok::Op("==") => CmpOp::Eq,
                Tok::Op("!=") => CmpOp::Ne,
                Tok::Op("<") => CmpOp::Lt,
                Tok::Op("<=") => CmpOp::Le,
                Tok::Op(">") => CmpOp::Gt,
                Tok::Op(">=") => CmpOp::Ge,
                Tok::Ident(w) if w == "in" => CmpOp::In,
                Tok::Ident(w) if w == "not" && self.peek_at(1).is_some_and(|n| n.is_word("in")) => {
                    self.next();
                    CmpOp::NotIn
                }
                _ => break,
            };
            self.next();
            let rhs = self.parse_unary(true)?;
            rest.push((op, rhs, at));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Node::Cmp {
                first: Box::new(first),
                rest,
            }
        })
    }

    /// `-x`; as in Jinja, filters after `-x` apply to the negated value.
    fn parse_unary(&mut self, filters: bool) -> Result<Node, ExprError> {
        if self.at_op("-") || self.at_op("+") {
            let t = self.next().expect("peeked");
            self.enter()?;
            let inner = self.parse_unary(false);
            self.depth -= 1;
            let inner = inner?;
            let node = if t.is_op("+") {
                inner
            } else {
                Self::negate(inner, t.at)
            };
            return if filters {
                self.parse_filters(node)
            } else {
                Ok(node)
            };
        }
        let node = self.parse_path()?;
        if filters {
            self.parse_filters(node)
        } else {
            Ok(node)
        }
    }

    fn negate(inner: Node, at: usize) -> Node {
        {
            // Fold `-3` into a literal.
            match inner {
                Node::Lit(Value::Number(n)) if n.as_i64().is_some_and(|i| i != i64::MIN) => {
                    Node::Lit(Value::from(-n.as_i64().unwrap_or(0)))
                }
                Node::Lit(Value::Number(n)) if n.as_f64().is_some() && !n.is_i64() => Node::Lit(
                    Number::from_f64(-n.as_f64().unwrap_or(0.0)).map_or(Value::Null, Value::Number),
                ),
                other => Node::Neg {
                    inner: Box::new(other),
                    at,
                },
            }
        }
    }

    fn parse_args(&mut self) -> Result<Vec<Node>, ExprError> {
        let open = self.expect_op("(", None)?;
        let mut args = Vec::new();
        while !self.at_op(")") {
            args.push(self.parse_expr()?);
            if !self.at_op(",") {
                break;
            }
            self.next();
        }
        self.expect_op(")", Some(("(", open.at)))?;
        Ok(args)
    }

    fn parse_path(&mut self) -> Result<Node, ExprError> {
        let start = self.here();
        let mut node = self.parse_primary()?;
        let mut segs = Vec::new();
        loop {
            if self.at_op(".") {
                let dot = self.next().expect("peeked");
                match self.next() {
                    Some(Token {
                        tok: Tok::Ident(name),
                        end,
                        ..
                    }) => segs.push(Seg {
                        key: SegKey::Name(name),
                        end,
                    }),
                    Some(Token {
                        tok: Tok::Int(i),
                        end,
                        ..
                    }) => segs.push(Seg {
                        key: SegKey::Index(i),
                        end,
                    }),
                    other => {
                        let at = other.as_ref().map_or(dot.at, |t| t.at);
                        return Err(self.err(at, "expected a name after '.'"));
                    }
                }
            } else if self.at_op("[") {
                let open = self.next().expect("peeked");
                let idx = self.parse_expr()?;
                let close = self.expect_op("]", Some(("[", open.at)))?;
                let key = match idx {
                    Node::Lit(Value::String(s)) => SegKey::Name(s),
                    Node::Lit(Value::Number(n)) if n.is_i64() => {
                        SegKey::Index(n.as_i64().unwrap_or(0))
                    }
                    other => SegKey::Expr(Box::new(other)),
                };
                segs.push(Seg {
                    key,
                    end: close.end,
                });
            } else if self.at_op("(") {
                let what = self
                    .src
                    .get(start..self.here())
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return Err(self.err(
                    self.here(),
                    format!(
                        "calling '{what}' is not supported: use a filter (`x | length`) or `in`"
                    ),
                ));
            } else {
                break;
            }
        }
        if !segs.is_empty() {
            node = Node::Get {
                base: Box::new(node),
                segs,
                at: start,
            };
        }
        Ok(node)
    }

    fn parse_filters(&mut self, node: Node) -> Result<Node, ExprError> {
        let mut ops = Vec::new();
        loop {
            if self.at_op("|") {
                self.next();
                let (name, at) = self.name_after("|")?;
                let Some(&(fname, min, max)) = FILTERS.iter().find(|f| f.0 == name) else {
                    let hint = crate::suggest::did_you_mean(&name, FILTERS.iter().map(|f| f.0))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    return Err(self.err(at, format!("unknown filter '{name}'{hint}")));
                };
                let args = if self.at_op("(") {
                    self.parse_args()?
                } else {
                    Vec::new()
                };
                self.check_arity("filter", fname, args.len(), min, max, at)?;
                ops.push(PostOp::Filter {
                    name: fname,
                    args,
                    at,
                });
            } else if self.at_word("is") {
                self.next();
                let negate = if self.at_word("not") {
                    self.next();
                    true
                } else {
                    false
                };
                let (name, at) = self.name_after(if negate { "is not" } else { "is" })?;
                let lname = name.to_lowercase();
                let Some(&(tname, min, max)) = TESTS.iter().find(|t| t.0 == lname) else {
                    let hint = crate::suggest::did_you_mean(&name, TESTS.iter().map(|t| t.0))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    return Err(self.err(at, format!("unknown test '{name}'{hint}")));
                };
                let args = if self.at_op("(") {
                    self.parse_args()?
                } else {
                    Vec::new()
                };
                self.check_arity("test", tname, args.len(), min, max, at)?;
                ops.push(PostOp::Test {
                    name: tname,
                    negate,
                    args,
                    at,
                });
            } else {
                break;
            }
        }
        Ok(if ops.is_empty() {
            node
        } else {
            Node::Post {
                base: Box::new(node),
                ops,
            }
        })
    }

    fn check_arity(
        &self,
        kind: &str,
        name: &str,
        n: usize,
        min: usize,
        max: usize,
        at: usize,
    ) -> Result<(), ExprError> {
        if n < min || n > max {
            let want = match (min, max) {
                (0, 0) => "no arguments".to_string(),
                (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
                (a, b) => format!("{a} to {b} arguments"),
            };
            return Err(self.err(at, format!("{kind} '{name}' takes {want}, given {n}")));
        }
        Ok(())
    }

    fn name_after(&mut self, what: &str) -> Result<(String, usize), ExprError> {
        match self.next() {
            Some(Token {
                tok: Tok::Ident(n),
                at,
                ..
            }) => Ok((n, at)),
            Some(other) => {
                let at = other.at;
                let kind = if what == "|" {
                    "a filter name"
                } else {
                    "a test name"
                };
                Err(self.err(at, format!("expected {kind} after '{what}'")))
            }
            None => {
                let at = self.here_or_last();
                let kind = if what == "|" {
                    "a filter name"
                } else {
                    "a test name"
                };
                Err(self.err(at, format!("expected {kind} after '{what}'")))
            }
        }
    }

    fn operand_error(&self) -> ExprError {
        let prev = self
            .pos
            .checked_sub(1)
            .and_then(|p| self.toks.get(p))
            .map(|t| tok_text(t, self.src));
        match (self.peek(), prev) {
            (None, None) => self.err(self.hi, "empty expression"),
            (None, Some(p)) => {
                let at = self.toks.get(self.pos - 1).map_or(self.hi, |t| t.at);
                self.err(at, format!("expected an operand after '{p}'"))
            }
            (Some(t), prev) => {
                let found = tok_text(t, self.src);
                let hint = match found.as_str() {
                    "&&" => " (use 'and')",
                    "||" => " (use 'or')",
                    "!" => " (use 'not')",
                    "=" => " (use '==' to compare)",
                    _ => "",
                };
                match prev {
                    Some(p) => self.err(
                        t.at,
                        format!("expected an operand after '{p}', found '{found}'{hint}"),
                    ),
                    None => self.err(
                        t.at,
                        format!("expected an expression, found '{found}'{hint}"),
                    ),
                }
            }
        }
    }

    fn parse_primary(&mut self) -> Result<Node, ExprError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.operand_error());
        };
        match &t.tok {
            Tok::Int(n) => {
                self.next();
                Ok(Node::Lit(Value::from(*n)))
            }
            Tok::Float(f) => {
                self.next();
                Ok(Node::Lit(
                    Number::from_f64(*f).map_or(Value::Null, Value::Number),
                ))
            }
            Tok::Str(s) => {
                self.next();
                Ok(Node::Lit(Value::String(s.clone())))
            }
            Tok::Ident(w) => match w.as_str() {
                "true" | "True" => {
                    self.next();
                    Ok(Node::Lit(Value::Bool(true)))
                }
                "false" | "False" => {
                    self.next();
                    Ok(Node::Lit(Value::Bool(false)))
                }
                "none" | "None" | "null" => {
                    self.next();
                    Ok(Node::Lit(Value::Null))
                }
                w if KEYWORDS.contains(&w) => Err(self.operand_error()),
                _ => {
                    self.next();
                    Ok(Node::Var {
                        name: w.clone(),
                        at: t.at,
                    })
                }
            },
            Tok::Op("(") => {
                self.next();
                if self.at_op(")") {
                    self.next();
                    return Ok(Node::List(Vec::new()));
                }
                let first = self.parse_expr()?;
                if self.at_op(",") {
                    let mut items = vec![first];
                    while self.at_op(",") {
                        self.next();
                        if self.at_op(")") {
                            break;
                        }
                        items.push(self.parse_expr()?);
                    }
                    self.expect_op(")", Some(("(", t.at)))?;
                    return Ok(Node::List(items));
                }
                self.expect_op(")", Some(("(", t.at)))?;
                Ok(first)
            }
            Tok::Op("[") => {
                self.next();
                let mut items = Vec::new();
                while !self.at_op("]") {
                    items.push(self.parse_expr()?);
                    if !self.at_op(",") {
                        break;
                    }
                    self.next();
                }
                self.expect_op("]", Some(("[", t.at)))?;
                Ok(Node::List(items))
            }
            Tok::Op("{") => {
                self.next();
                let mut pairs = Vec::new();
                while !self.at_op("}") {
                    let k = self.parse_expr()?;
                    self.expect_op(":", None)?;
                    let v = self.parse_expr()?;
                    pairs.push((k, v));
                    if !self.at_op(",") {
                        break;
                    }
                    self.next();
                }
                self.expect_op("}", Some(("{", t.at)))?;
                Ok(Node::Dict(pairs))
            }
            Tok::Op(op @ ("*" | "/" | "%" | "~" | "//" | "**")) => Err(self.err(
                t.at,
                format!("operator '{op}' is not supported in mailrun expressions"),
            )),
            Tok::Op(_) => Err(self.operand_error()),
        }
    }
}

/// Where the expression text is, once an optional `{{ }}` wrapper is dropped.
fn unwrap_braces(src: &str) -> (usize, usize) {
    let trimmed_start = src.len() - src.trim_start().len();
    let t = src.trim();
    if t.len() >= 4 && t.starts_with("{{") && t.ends_with("}}") {
        let lo = trimmed_start + 2;
        let hi = trimmed_start + t.len() - 2;
        if lo <= hi {
            return (lo, hi);
        }
    }
    (0, src.len())
}

fn parse_range(src: &str, lo: usize, hi: usize) -> Result<Node, ExprError> {
    let toks = lex(src, lo, hi)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        depth: 0,
        hi,
    };
    let node = p.parse_expr()?;
    if let Some(t) = p.peek() {
        let text = tok_text(t, src);
        let msg = match &t.tok {
            Tok::Op(")") | Tok::Op("]") | Tok::Op("}") => format!("unmatched '{text}'"),
            Tok::Op(op @ ("+" | "-" | "*" | "/" | "%" | "~" | "//" | "**")) => {
                format!("operator '{op}' is not supported in mailrun expressions")
            }
            Tok::Op("=") => "unexpected '=' (use '==' to compare)".to_string(),
            Tok::Op("&&") => "unexpected '&&' (use 'and')".to_string(),
            Tok::Op("||") => "unexpected '||' (use 'or')".to_string(),
            Tok::Ident(w) if w == "is" => "expected a test name after 'is'".to_string(),
            _ => format!("unexpected '{text}' (missing 'and', 'or' or an operator?)"),
        };
        return Err(err_at(src, t.at, msg));
    }
    Ok(node)
}

/// Parses an expression (parse time: syntax errors before anything runs).
/// A condition wrapped in `{{ }}` is accepted, as Ansible does.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let (lo, hi) = unwrap_braces(src);
    let node = parse_range(src, lo, hi)?;
    Ok(Expr {
        src: src.to_string(),
        node,
    })
}

/// Parses without the `{{ }}` unwrapping (for the inside of a template tag).
pub(crate) fn parse_bare(src: &str) -> Result<Expr, ExprError> {
    let node = parse_range(src, 0, src.len())?;
    Ok(Expr {
        src: src.to_string(),
        node,
    })
}

/// What a template tag's expression is, for `crate::template`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TagShape {
    /// A variable path, maybe with `| default(...)`.
    Var,
    /// Uses a filter other than `default`, or a test.
    Filtered(String),
    /// Anything else (a literal, a comparison, `and`…).
    Other,
}

fn is_path(n: &Node) -> bool {
    match n {
        Node::Var { name, .. } => name != "this",
        Node::Get { base, .. } => matches!(&**base, Node::Var { name, .. } if name != "this"),
        _ => false,
    }
}

/// `a.[k].[0]`: a static path in handlebars' syntax.
fn hb_path(n: &Node) -> Option<String> {
    let seg = |k: &str| (!k.is_empty() && !k.contains(']')).then(|| format!(".[{k}]"));
    match n {
        Node::Var { name, .. } => Some(name.clone()),
        Node::Get { base, segs, .. } => {
            let mut out = hb_path(base)?;
            for s in segs {
                match &s.key {
                    SegKey::Name(k) => out.push_str(&seg(k)?),
                    SegKey::Index(i) if *i >= 0 => out.push_str(&seg(&i.to_string())?),
                    _ => return None,
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// A handlebars helper argument for a literal or a static path.
fn hb_arg(n: &Node) -> Option<String> {
    match n {
        Node::Lit(v) => serde_json::to_string(v).ok(),
        n if is_path(n) => hb_path(n),
        _ => None,
    }
}

impl Expr {
    pub(crate) fn tag_shape(&self) -> TagShape {
        match &self.node {
            n if is_path(n) => TagShape::Var,
            Node::Post { base, ops } if is_path(base) => {
                for op in ops {
                    match op {
                        PostOp::Filter { name, .. } if *name == "default" || *name == "d" => {}
                        PostOp::Filter { name, .. } => return TagShape::Filtered(name.to_string()),
                        PostOp::Test { name, .. } => {
                            return TagShape::Filtered(format!("is {name}"))
                        }
                    }
                }
                if ops.len() == 1 {
                    TagShape::Var
                } else {
                    TagShape::Filtered("default".into())
                }
            }
            _ => TagShape::Other,
        }
    }

    /// The arguments of the template helper for a [`TagShape::Var`]: the
    /// root name, then each key as a literal or a static path; then
    /// `default=` (and `default_falsy=true`). `None` when a part cannot be
    /// said in handlebars (a computed index, a computed default).
    pub(crate) fn handlebars_args(&self) -> Option<String> {
        let (path, default) = match &self.node {
            Node::Post { base, ops } => match ops.as_slice() {
                [PostOp::Filter { args, .. }] => (&**base, Some(args)),
                _ => return None,
            },
            n => (n, None),
        };
        let mut out = String::new();
        match path {
            Node::Var { name, .. } => out.push_str(name),
            Node::Get { base, segs, .. } => {
                let Node::Var { name, .. } = &**base else {
                    return None;
                };
                out.push_str(name);
                for s in segs {
                    out.push(' ');
                    match &s.key {
                        SegKey::Name(k) => out.push_str(&serde_json::to_string(k).ok()?),
                        SegKey::Index(i) => out.push_str(&i.to_string()),
                        SegKey::Expr(e) => out.push_str(&hb_path(e)?),
                    }
                }
            }
            _ => return None,
        }
        if let Some(args) = default {
            let d = match args.first() {
                Some(a) => hb_arg(a)?,
                None => "\"\"".to_string(),
            };
            out.push_str(" default=");
            out.push_str(&d);
            if let Some(Node::Lit(v)) = args.get(1) {
                if truthy(v) {
                    out.push_str(" default_falsy=true");
                }
            } else if args.len() > 1 {
                return None;
            }
        }
        Some(out)
    }
}

// ---------------------------------------------------------------- evaluation

/// A value, or an undefined one remembered by name (so that `is defined`
/// and `default` can look at it before anything reports it).
enum V<'a> {
    Def(Cow<'a, Value>),
    Undef { name: String, at: usize },
}

struct Ev<'a> {
    src: &'a str,
    vars: &'a Value,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "none",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Looks `key` up in `v` as Jinja does: a mapping by key, a list or string
/// by index (negative from the end); `.length` of a list or string, as
/// handlebars.js has it. `None` when there is nothing there.
pub(crate) fn lookup<'v>(v: &'v Value, key: &Value) -> Option<Cow<'v, Value>> {
    match (v, key) {
        (Value::Object(m), Value::String(k)) => m.get(k).map(Cow::Borrowed),
        (Value::Object(m), Value::Number(n)) => m.get(&n.to_string()).map(Cow::Borrowed),
        (Value::Object(m), Value::Bool(b)) => m.get(&b.to_string()).map(Cow::Borrowed),
        (Value::Array(a), Value::Number(n)) => {
            let i = n.as_i64()?;
            let i = if i < 0 {
                i.checked_add(a.len() as i64)?
            } else {
                i
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i))
                .map(Cow::Borrowed)
        }
        // handlebars.js's `.length` of a list or string.
        (Value::Array(a), Value::String(k)) if k == "length" => {
            Some(Cow::Owned(Value::from(a.len())))
        }
        (Value::String(s), Value::String(k)) if k == "length" => {
            Some(Cow::Owned(Value::from(s.chars().count())))
        }
        (Value::String(s), Value::Number(n)) => {
            let i = n.as_i64()?;
            let len = s.chars().count() as i64;
            let i = if i < 0 { i.checked_add(len)? } else { i };
            let i = usize::try_from(i).ok()?;
            s.chars()
                .nth(i)
                .map(|c| Cow::Owned(Value::String(c.to_string())))
        }
        _ => None,
    }
}

fn get_cow<'a>(v: Cow<'a, Value>, key: &Value) -> Option<Cow<'a, Value>> {
    match v {
        Cow::Borrowed(b) => lookup(b, key),
        Cow::Owned(o) => lookup(&o, key).map(|c| Cow::Owned(c.into_owned())),
    }
}

fn num_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

fn num_cmp(a: &Number, b: &Number) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => num_f64(a)
                .partial_cmp(&num_f64(b))
                .unwrap_or(Ordering::Equal),
        },
    }
}

/// Equality with numbers compared by value (`1 == 1.0`).
pub(crate) fn values_eq(a: &Value, b: &Value) -> bool {
    fn go(a: &Value, b: &Value, depth: usize) -> bool {
        if depth > 256 {
            return a == b;
        }
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Ordering::Equal,
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| go(p, q, depth + 1))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, p)| y.get(k).is_some_and(|q| go(p, q, depth + 1)))
            }
            _ => a == b,
        }
    }
    go(a, b, 0)
}

fn order(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y)),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                match order(p, q)? {
                    Ordering::Equal => {}
                    o => return Ok(o),
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => Err(format!(
            "cannot order {} and {} (convert with `| int` or `| string`)",
            type_name(a),
            type_name(b)
        )),
    }
}

/// Jinja's text for a value: strings as they are, others as JSON; none is
/// the empty string.
pub(crate) fn to_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Number(n) => Cow::Owned(n.to_string()),
        other => Cow::Owned(other.to_string()),
    }
}

fn to_int(v: &Value, default: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => match n.as_u64() {
                Some(u) => Value::from(u),
                None => Value::from(num_f64(n).trunc() as i64),
            },
        },
        Value::Bool(b) => Value::from(i64::from(*b)),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.replace('_', "").parse::<i64>() {
                Value::from(i)
            } else if let Ok(f) = t.parse::<f64>() {
                if f.is_finite() {
                    Value::from(f.trunc() as i64)
                } else {
                    default.clone()
                }
            } else {
                default.clone()
            }
        }
        _ => default.clone(),
    }
}

fn to_float(v: &Value, default: &Value) -> Value {
    let f = match v {
        Value::Number(n) => Some(num_f64(n)),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    };
    f.and_then(Number::from_f64)
        .map_or_else(|| default.clone(), Value::Number)
}

/// Ansible's `bool` filter.
fn to_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::Number(n) => Ok(num_f64(n) == 1.0),
        Value::String(s) => Ok(matches!(
            s.trim().to_lowercase().as_str(),
            "yes" | "on" | "1" | "true" | "y" | "t"
        )),
        other => Err(format!(
            "filter 'bool' needs a string, number or boolean, not {}",
            type_name(other)
        )),
    }
}

impl<'a> Ev<'a> {
    fn err(&self, at: usize, msg: impl Into<String>) -> ExprError {
        err_at(self.src, at, msg)
    }

    fn force(&self, v: V<'a>) -> Result<Cow<'a, Value>, ExprError> {
        match v {
            V::Def(c) => Ok(c),
            V::Undef { name, at } => Err(ExprError {
                col: Some(col_of(self.src, at)),
                msg: format!("undefined variable '{name}'"),
                var: Some(name),
            }),
        }
    }

    fn value(&self, n: &'a Node) -> Result<Cow<'a, Value>, ExprError> {
        let v = self.eval(n)?;
        self.force(v)
    }

    fn eval(&self, n: &'a Node) -> Result<V<'a>, ExprError> {
        Ok(match n {
            Node::Lit(v) => V::Def(Cow::Borrowed(v)),
            Node::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.value(i)?.into_owned());
                }
                V::Def(Cow::Owned(Value::Array(out)))
            }
            Node::Dict(pairs) => {
                let mut m = Map::new();
                for (k, v) in pairs {
                    let k = self.value(k)?;
                    let v = self.value(v)?.into_owned();
                    m.insert(to_text(&k).into_owned(), v);
                }
                V::Def(Cow::Owned(Value::Object(m)))
            }
            Node::Var { name, at } => match self.vars.get(name.as_str()) {
                Some(v) => V::Def(Cow::Borrowed(v)),
                None => V::Undef {
                    name: name.clone(),
                    at: *at,
                },
            },
            Node::Get { base, segs, at } => {
                let mut cur = match self.eval(base)? {
                    V::Def(c) => c,
                    undef => return Ok(undef),
                };
                for s in segs {
                    let key: Cow<'_, Value> = match &s.key {
                        SegKey::Name(k) => Cow::Owned(Value::String(k.clone())),
                        SegKey::Index(i) => Cow::Owned(Value::from(*i)),
                        SegKey::Expr(e) => self.value(e)?,
                    };
                    match get_cow(cur, &key) {
                        Some(next) => cur = next,
                        None => {
                            let name = self.src.get(*at..s.end).unwrap_or("?").to_string();
                            return Ok(V::Undef { name, at: *at });
                        }
                    }
                }
                V::Def(cur)
            }
            Node::Not(inner) => {
                let v = self.value(inner)?;
                V::Def(Cow::Owned(Value::Bool(!truthy(&v))))
            }
            Node::Neg { inner, at } => {
                let v = self.value(inner)?;
                let out = match v.as_ref() {
                    Value::Number(n) => match n.as_i64().and_then(i64::checked_neg) {
                        Some(i) => Value::from(i),
                        None => Number::from_f64(-num_f64(n)).map_or(Value::Null, Value::Number),
                    },
                    other => {
                        return Err(self.err(*at, format!("cannot negate {}", type_name(other))))
                    }
                };
                V::Def(Cow::Owned(out))
            }
            Node::And(items) => {
                let mut last = None;
                for i in items {
                    let v = self.value(i)?;
                    if !truthy(&v) {
                        return Ok(V::Def(v));
                    }
                    last = Some(v);
                }
                V::Def(last.unwrap_or(Cow::Owned(Value::Bool(true))))
            }
            Node::Or(items) => {
                let mut last = None;
                for i in items {
                    let v = self.value(i)?;
                    if truthy(&v) {
                        return Ok(V::Def(v));
                    }
                    last = Some(v);
                }
                V::Def(last.unwrap_or(Cow::Owned(Value::Bool(false))))
            }
            Node::Cmp { first, rest } => {
                let mut left = self.value(first)?;
                for (op, rhs, at) in rest {
                    let right = self.value(rhs)?;
                    if !self.compare(*op, &left, &right, *at)? {
                        return Ok(V::Def(Cow::Owned(Value::Bool(false))));
                    }
                    left = right;
                }
                V::Def(Cow::Owned(Value::Bool(true)))
            }
            Node::Post { base, ops } => {
                let mut cur = self.eval(base)?;
                for op in ops {
                    cur = match op {
                        PostOp::Filter { name, args, at } => self.filter(name, cur, args, *at)?,
                        PostOp::Test {
                            name,
                            negate,
                            args,
                            at,
                        } => {
                            let r = self.test(name, cur, args, *at)?;
                            V::Def(Cow::Owned(Value::Bool(r != *negate)))
                        }
                    };
                }
                cur
            }
        })
    }

    fn compare(&self, op: CmpOp, a: &Value, b: &Value, at: usize) -> Result<bool, ExprError> {
        Ok(match op {
            CmpOp::Eq => values_eq(a, b),
            CmpOp::Ne => !values_eq(a, b),
            CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
                let o = order(a, b).map_err(|m| self.err(at, format!("'{}': {m}", op.text())))?;
                match op {
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Le => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }
            }
            CmpOp::In | CmpOp::NotIn => {
                let found = match b {
                    Value::String(hay) => match a {
                        Value::String(needle) => hay.contains(needle.as_str()),
                        other => {
                            return Err(self.err(
                                at,
                                format!(
                                    "'{}' a string needs a string on its left, not {}",
                                    op.text(),
                                    type_name(other)
                                ),
                            ))
                        }
                    },
                    Value::Array(items) => items.iter().any(|i| values_eq(a, i)),
                    Value::Object(m) => match a {
                        Value::String(k) => m.contains_key(k),
                        Value::Number(_) | Value::Bool(_) => m.contains_key(to_text(a).as_ref()),
                        _ => false,
                    },
                    other => {
                        return Err(self.err(
                            at,
                            format!(
                                "'{}' needs a string, list or mapping on its right, not {}",
                                op.text(),
                                type_name(other)
                            ),
                        ))
                    }
                };
                found == (op == CmpOp::In)
            }
        })
    }

    fn filter(
        &self,
        name: &str,
        input: V<'a>,
        args: &'a [Node],
        at: usize,
    ) -> Result<V<'a>, ExprError> {
        if name == "default" || name == "d" {
            let falsy_too = match args.get(1) {
                Some(a) => truthy(self.value(a)?.as_ref()),
                None => false,
            };
            let use_default = match &input {
                V::Undef { .. } => true,
                V::Def(v) => falsy_too && !truthy(v),
            };
            if !use_default {
                return Ok(input);
            }
            return match args.first() {
                Some(a) => self.eval(a),
                None => Ok(V::Def(Cow::Owned(Value::String(String::new())))),
            };
        }
        let v = self.force(input)?;
        let arg0 = match args.first() {
            Some(a) => Some(self.value(a)?),
            None => None,
        };
        let bad = |what: &str| {
            self.err(
                at,
                format!("filter '{name}' needs {what}, not {}", type_name(&v)),
            )
        };
        let out = match name {
            "bool" => Value::Bool(to_bool(&v).map_err(|m| self.err(at, m))?),
            "length" | "count" => match v.as_ref() {
                Value::String(s) => Value::from(s.chars().count()),
                Value::Array(a) => Value::from(a.len()),
                Value::Object(m) => Value::from(m.len()),
                _ => return Err(bad("a string, list or mapping")),
            },
            "int" => to_int(&v, arg0.as_deref().unwrap_or(&Value::from(0))),
            "float" => to_float(&v, arg0.as_deref().unwrap_or(&Value::from(0.0))),
            "string" => Value::String(to_text(&v).into_owned()),
            "lower" => Value::String(to_text(&v).to_lowercase()),
            "upper" => Value::String(to_text(&v).to_uppercase()),
            "trim" => Value::String(to_text(&v).trim().to_string()),
            "first" | "last" => {
                let got = match v.as_ref() {
                    Value::Array(a) => if name == "first" { a.first() } else { a.last() }.cloned(),
                    Value::String(s) => if name == "first" {
                        s.chars().next()
                    } else {
                        s.chars().last()
                    }
                    .map(|c| Value::String(c.to_string())),
                    _ => return Err(bad("a list or string")),
                };
                match got {
                    Some(g) => g,
                    None => return Err(self.err(at, format!("filter '{name}' of an empty value"))),
                }
            }
            "join" => {
                let sep = arg0.as_deref().map(to_text).unwrap_or(Cow::Borrowed(""));
                match v.as_ref() {
                    Value::Array(a) => {
                        Value::String(a.iter().map(to_text).collect::<Vec<_>>().join(sep.as_ref()))
                    }
                    _ => return Err(bad("a list")),
                }
            }
            "abs" => match v.as_ref() {
                Value::Number(n) => match n.as_i64() {
                    Some(i) => i.checked_abs().map_or_else(
                        || Number::from_f64((i as f64).abs()).map_or(Value::Null, Value::Number),
                        Value::from,
                    ),
                    None => Number::from_f64(num_f64(n).abs()).map_or(Value::Null, Value::Number),
                },
                _ => return Err(bad("a number")),
            },
            "list" => match v.as_ref() {
                Value::Array(_) => v.into_owned(),
                Value::String(s) => {
                    Value::Array(s.chars().map(|c| Value::String(c.to_string())).collect())
                }
                Value::Object(m) => {
                    Value::Array(m.keys().map(|k| Value::String(k.clone())).collect())
                }
                _ => return Err(bad("a list, string or mapping")),
            },
            _ => return Err(self.err(at, format!("unknown filter '{name}'"))),
        };
        Ok(V::Def(Cow::Owned(out)))
    }

    fn test(
        &self,
        name: &str,
        input: V<'a>,
        args: &'a [Node],
        at: usize,
    ) -> Result<bool, ExprError> {
        match name {
            "defined" => return Ok(matches!(input, V::Def(_))),
            "undefined" => return Ok(matches!(input, V::Undef { .. })),
            _ => {}
        }
        let v = self.force(input)?;
        let flag = |key: &str| -> Result<bool, ExprError> {
            match v.as_ref() {
                Value::Object(m) => Ok(m.get(key).is_some_and(truthy)),
                other => Err(self.err(
                    at,
                    format!(
                        "test '{name}' needs a registered result (a mapping), not {}",
                        type_name(other)
                    ),
                )),
            }
        };
        Ok(match name {
            "none" => v.is_null(),
            "succeeded" | "success" | "successful" => !flag("failed")?,
            "failed" | "failure" => flag("failed")?,
            "changed" | "change" => flag("changed")?,
            "skipped" | "skip" => flag("skipped")?,
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            "float" => v.is_f64(),
            "boolean" => v.is_boolean(),
            "mapping" => v.is_object(),
            "sequence" | "iterable" => v.is_array() || v.is_string() || v.is_object(),
            "true" => v.as_ref() == &Value::Bool(true),
            "false" => v.as_ref() == &Value::Bool(false),
            "match" | "search" | "regex" => {
                let pat_node = args
                    .first()
                    .ok_or_else(|| self.err(at, "missing pattern"))?;
                let pat = self.value(pat_node)?;
                let pat = to_text(&pat);
                let re = if name == "match" {
                    regex::Regex::new(&format!("^(?:{pat})"))
                } else {
                    regex::Regex::new(&pat)
                }
                .map_err(|e| {
                    let first = e.to_string();
                    let last = first.lines().last().unwrap_or("").trim().to_string();
                    self.err(
                        at,
                        format!("test '{name}': invalid regular expression: {last}"),
                    )
                })?;
                re.is_match(&to_text(&v))
            }
            _ => return Err(self.err(at, format!("unknown test '{name}'"))),
        })
    }
}

/// Evaluates to a value.
pub fn eval(e: &Expr, vars: &Value) -> Result<Value, ExprError> {
    let ev = Ev { src: &e.src, vars };
    let v = ev.eval(&e.node)?;
    Ok(ev.force(v)?.into_owned())
}

/// Evaluates and hands the value to `f` without copying it.
pub(crate) fn eval_with<R>(
    e: &Expr,
    vars: &Value,
    f: impl FnOnce(&Value) -> R,
) -> Result<R, ExprError> {
    let ev = Ev { src: &e.src, vars };
    let v = ev.eval(&e.node)?;
    Ok(f(ev.force(v)?.as_ref()))
}

/// Evaluates to a boolean with Ansible/Jinja truthiness.
pub fn eval_bool(e: &Expr, vars: &Value) -> Result<bool, ExprError> {
    let ev = Ev { src: &e.src, vars };
    let v = ev.eval(&e.node)?;
    Ok(truthy(ev.force(v)?.as_ref()))
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Value {
        json!({
            "inventory_hostname": "new",
            "services": ["dovecot", "postfix"],
            "count": 3,
            "ratio": 1.0,
            "name": "Mail",
            "empty": "",
            "nothing": null,
            "enabled": "yes",
            "users": [{"name": "ann"}, {"name": "bob"}],
            "groups": {"old": ["mx1", "mx2"], "new": ["mx3"]},
            "hostvars": {"new": {"ansible_host": "10.0.0.3"}, "mx1": {}},
            "result": {"rc": 0, "stdout": "5\n", "stderr": "user already exists",
                       "changed": true, "failed": false},
            "bad": {"rc": 2, "failed": true, "changed": false},
            "skipped_r": {"skipped": true, "changed": false},
            "ünï": "ok",
        })
    }

    fn ev(src: &str) -> Result<Value, ExprError> {
        eval(&parse(src)?, &vars())
    }

    #[test]
    fn values() {
        let cases: &[(&str, Value)] = &[
            ("1", json!(1)),
            ("-2", json!(-2)),
            ("1.5", json!(1.5)),
            ("'a\\'b'", json!("a'b")),
            ("\"x\\\\y\"", json!("x\\y")),
            ("true", json!(true)),
            ("False", json!(false)),
            ("None", json!(null)),
            ("null", json!(null)),
            ("[1, 'a',]", json!([1, "a"])),
            ("(1, 2)", json!([1, 2])),
            ("{'k': 1}", json!({"k": 1})),
            ("count", json!(3)),
            ("result.rc", json!(0)),
            ("groups.old[0]", json!("mx1")),
            ("groups.old.1", json!("mx2")),
            ("groups['old'][-1]", json!("mx2")),
            ("groups[\"new\"]", json!(["mx3"])),
            (
                "hostvars[inventory_hostname].ansible_host",
                json!("10.0.0.3"),
            ),
            ("users[1].name", json!("bob")),
            ("name[0]", json!("M")),
            ("ünï", json!("ok")),
            ("result.stdout | int", json!(5)),
            ("'junk' | int", json!(0)),
            ("'3.7' | int", json!(3)),
            ("'2.5' | float", json!(2.5)),
            ("services | length", json!(2)),
            ("services.length", json!(2)),
            ("name.length", json!(4)),
            ("'héllo' | length", json!(5)),
            ("missing | default('x')", json!("x")),
            ("missing | d(count)", json!(3)),
            ("empty | default('e', true)", json!("e")),
            ("empty | default('e')", json!("")),
            ("hostvars.nope.x | default(1)", json!(1)),
            ("name | lower", json!("mail")),
            ("name | upper", json!("MAIL")),
            ("' a ' | trim", json!("a")),
            ("services | first", json!("dovecot")),
            ("services | last", json!("postfix")),
            ("services | join(',')", json!("dovecot,postfix")),
            ("-3 | abs", json!(3)),
            ("count | string", json!("3")),
            ("0 or 'b'", json!("b")),
            ("1 and 'b'", json!("b")),
            ("{{ count }}", json!(3)),
            ("  {{count}}  ", json!(3)),
        ];
        for (src, want) in cases {
            assert_eq!(
                &ev(src).unwrap_or_else(|e| panic!("{src}: {e:?}")),
                want,
                "{src}"
            );
        }
    }

    #[test]
    fn conditions() {
        let cases: &[(&str, bool)] = &[
            ("result.rc == 0", true),
            ("result.rc != 0", false),
            ("count == 3.0", true),
            ("ratio == 1", true),
            ("count == '3'", false),
            ("count != '3'", true),
            ("count > 2 and count <= 3", true),
            ("1 < count < 4", true),
            ("1 < count < 2", false),
            ("'a' < 'b'", true),
            ("'dovecot' in services", true),
            ("'exim' not in services", true),
            ("'ready' in result.stderr", true),
            ("'old' in groups", true),
            ("result.rc != 0 and 'already' not in result.stderr", false),
            ("result.stdout | int > 3", true),
            (
                "backup_users is defined and backup_users | length > 0",
                false,
            ),
            ("services is defined and services | length > 0", true),
            ("missing is not defined", true),
            ("missing is undefined", true),
            ("missing.deeper is defined", false),
            ("result.nokey is defined", false),
            ("groups.old[5] is defined", false),
            ("nothing is none", true),
            ("count is not none", true),
            ("result is succeeded", true),
            ("result is success", true),
            ("result is changed", true),
            ("bad is failed", true),
            ("bad is not failed", false),
            ("skipped_r is skipped", true),
            ("result is skipped", false),
            ("name is string", true),
            ("count is number", true),
            ("hostvars is mapping", true),
            ("services is sequence", true),
            ("result.stderr is search('already')", true),
            ("result.stderr is match('already')", false),
            ("enabled | bool", true),
            ("'off' | bool", false),
            ("'TRUE' | bool", true),
            ("1 | bool", true),
            ("not enabled | bool", false),
            ("not count == 3", false),
            ("not count == 4", true),
            ("not not true", true),
            ("true or missing", true),
            ("false and missing", false),
            ("false or true and false", false),
            ("(false or true) and true", true),
            ("not false and false", false),
            ("empty", false),
            ("services", true),
            ("[]", false),
            ("[1] == [1.0]", true),
            ("{{ result.rc == 0 }}", true),
            (
                "inventory_hostname in groups.new and not (skip | default(false) | bool)",
                false,
            ),
            (
                "inventory_hostname in hostvars and not (skip | default(false) | bool)",
                true,
            ),
            ("'x' | int(-1) == -1", true),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_or_else(|e| panic!("{src}: {e:?}"));
            let got = eval_bool(&e, &vars()).unwrap_or_else(|e| panic!("{src}: {e:?}"));
            assert_eq!(got, *want, "{src}");
        }
    }

    #[test]
    fn parse_errors() {
        // (source, column, message contains)
        let cases: &[(&str, usize, &str)] = &[
            ("x and", 3, "expected an operand after 'and'"),
            ("x and )", 7, "expected an operand after 'and', found ')'"),
            (
                "x is defind",
                6,
                "unknown test 'defind' (did you mean 'defined'?)",
            ),
            (
                "x | lenght > 0",
                5,
                "unknown filter 'lenght' (did you mean 'length'?)",
            ),
            ("(a == 1", 8, "expected ')' to close '(' at column 1"),
            ("a == 1)", 7, "unmatched ')'"),
            ("'abc", 1, "unterminated string"),
            ("x == \"abc", 6, "unterminated string"),
            ("a = 1", 3, "use '=='"),
            ("a && b", 3, "use 'and'"),
            ("a b", 3, "unexpected 'b'"),
            ("a + 1", 3, "operator '+' is not supported"),
            ("", 1, "empty expression"),
            ("   ", 4, "empty expression"),
            ("{{ }}", 4, "empty expression"),
            (
                "x.startswith('a')",
                13,
                "calling 'x.startswith' is not supported",
            ),
            (
                "x | default(1, 2, 3)",
                5,
                "filter 'default' takes 0 to 2 arguments, given 3",
            ),
            ("x is search", 6, "test 'search' takes 1 argument, given 0"),
            ("x is", 3, "expected a test name after 'is'"),
            ("x |", 3, "expected a filter name after '|'"),
            ("{{ a }} == {{ b }}", 6, "drop the `{{ }}`"),
            ("a.", 2, "expected a name after '.'"),
            ("é == @", 6, "unexpected character '@'"),
            ("[1, 2", 6, "expected ']' to close '[' at column 1"),
        ];
        for (src, col, msg) in cases {
            let e = parse(src).expect_err(src);
            assert!(e.msg.contains(msg), "{src}: {}", e.msg);
            assert_eq!(e.col, Some(*col), "{src}: {}", e.msg);
        }
    }

    #[test]
    fn eval_errors() {
        // (source, column, message, undefined variable)
        let cases: &[(&str, usize, &str, Option<&str>)] = &[
            (
                "users_file == 'x'",
                1,
                "undefined variable 'users_file'",
                Some("users_file"),
            ),
            (
                "result.rcc == 0",
                1,
                "undefined variable 'result.rcc'",
                Some("result.rcc"),
            ),
            ("x and 1", 1, "undefined variable 'x'", Some("x")),
            (
                "1 == 1 and hostvars[inventory_hostname].nope",
                12,
                "undefined variable 'hostvars[inventory_hostname].nope'",
                Some("hostvars[inventory_hostname].nope"),
            ),
            (
                "hostvars[nohost]",
                10,
                "undefined variable 'nohost'",
                Some("nohost"),
            ),
            (
                "missing | int",
                1,
                "undefined variable 'missing'",
                Some("missing"),
            ),
            (
                "missing is failed",
                1,
                "undefined variable 'missing'",
                Some("missing"),
            ),
            ("count < 'a'", 7, "cannot order a number and a string", None),
            ("1 in 'abc'", 3, "needs a string on its left", None),
            (
                "'a' in 3",
                5,
                "needs a string, list or mapping on its right",
                None,
            ),
            ("count is failed", 10, "needs a registered result", None),
            ("services | bool", 12, "filter 'bool' needs", None),
            ("name is search('(')", 9, "invalid regular expression", None),
            (
                "{{ missing }}",
                4,
                "undefined variable 'missing'",
                Some("missing"),
            ),
        ];
        for (src, col, msg, var) in cases {
            let e = ev(src).expect_err(src);
            assert!(e.msg.contains(msg), "{src}: {}", e.msg);
            assert_eq!(e.col, Some(*col), "{src}: {}", e.msg);
            assert_eq!(e.var.as_deref(), *var, "{src}");
        }
    }

    #[test]
    fn nasty_inputs_do_not_panic() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse(&deep).expect_err("too deep");
        assert!(e.msg.contains("nested too deeply"), "{}", e.msg);
        let e = parse(&"not ".repeat(10_000)).expect_err("too deep");
        assert!(e.msg.contains("nested too deeply"), "{}", e.msg);
        let e = parse(&"[".repeat(10_000)).expect_err("too deep");
        assert!(e.msg.contains("nested too deeply"), "{}", e.msg);
        let e = parse(&"-".repeat(10_000)).expect_err("too deep");
        assert!(e.msg.contains("nested too deeply"), "{}", e.msg);
        // Long flat chains are fine (no recursion per operand).
        let long = vec!["true"; 5_000].join(" and ");
        assert!(eval_bool(&parse(&long).unwrap(), &vars()).unwrap());
        let filters = format!("count{}", " | int".repeat(5_000));
        assert_eq!(ev(&filters).unwrap(), json!(3));
        for src in [
            "{{",
            "}}",
            "{{ x",
            "'",
            "\"\\",
            "é",
            "日本 == 'x'",
            "x[",
            "x[]",
            "x.",
            "|",
            "is",
            "not",
            "1e",
            "1e999",
            "99999999999999999999",
            "0x10",
            "a..b",
            "'\u{1F600}' in x",
            "x is not",
            "x | default(",
            "{",
            "{'a'",
            "{'a':",
            "[1,,2]",
            "()",
            "(,)",
            "\\",
            "x\u{0}",
            "a.0.1.2",
            "1.",
            ".5",
            "--1",
            "- -9223372036854775808",
        ] {
            if let Ok(e) = parse(src) {
                let _ = eval(&e, &vars());
            }
        }
        assert_eq!(ev("'日本' | length").unwrap(), json!(2));
        assert_eq!(ev("'日本'[-1]").unwrap(), json!("本"));
    }
}
