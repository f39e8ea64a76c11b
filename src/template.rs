//! Handlebars rendering, strict: an undefined variable is an error naming it.
//!
//! A tag holding a variable path — `{{ users_file }}`, `{{ item.name }}`,
//! and the Jinja index forms `{{ groups.old[0] }}`, `{{ hostvars['new'].x }}`,
//! `{{ hostvars[inventory_hostname].x }}` — optionally with
//! `| default(...)`, is looked up by [`crate::expr`]'s path rules. A string
//! made only of such tags is rendered without handlebars at all (the common
//! case: no copy of the variables). A template with blocks (`{{#if}}`,
//! `{{#each}}`…) or other handlebars syntax goes through one global strict
//! handlebars registry; its variable tags are rewritten to a helper so that
//! the Jinja index forms, `default` and the value rendering stay the same.
//!
//! Values render as: strings as they are, numbers as JSON numbers, booleans
//! as `true`/`false`, none as the empty string, lists and mappings as
//! compact JSON. No HTML escaping.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, TemplateErrorReason,
};
use serde_json::{Map, Value};

use crate::expr::{self, Expr, TagShape};

/// Deepest nesting of blocks (and of parentheses inside a tag).
pub const MAX_DEPTH: usize = 64;

/// Deepest nesting of arrays/objects [`render_value`] walks into.
const MAX_VALUE_DEPTH: usize = 128;

/// Name of the helper variable tags are rewritten to.
const VAR_HELPER: &str = "mailrun_var";

const DOC_HINT: &str = "see \"Templates and expressions\" in the README";

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// The undefined variable, when that is the cause.
    pub var: Option<String>,
    pub msg: String,
    /// Where in the template text (a byte offset) a syntax error is.
    pub offset: Option<usize>,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for TemplateError {}

impl TemplateError {
    fn new(msg: impl Into<String>) -> TemplateError {
        TemplateError {
            var: None,
            msg: msg.into(),
            offset: None,
        }
    }

    fn at(mut self, offset: usize) -> TemplateError {
        self.offset = Some(offset);
        self
    }

    fn undefined(var: String) -> TemplateError {
        TemplateError {
            msg: format!("undefined variable '{var}'"),
            var: Some(var),
            offset: None,
        }
    }
}

impl From<expr::ExprError> for TemplateError {
    fn from(e: expr::ExprError) -> TemplateError {
        TemplateError {
            var: e.var,
            msg: e.msg,
            offset: None,
        }
    }
}

/// True when the string holds `{{`.
pub fn has_template(s: &str) -> bool {
    s.contains("{{")
}

// ---------------------------------------------------------------- scanning

#[derive(Debug)]
enum Kind {
    /// A variable path (maybe with `| default`), evaluated by `expr`.
    Var(Expr),
    /// Anything else handlebars understands (blocks, helpers, `this`…).
    Native,
}

#[derive(Debug)]
struct Tag {
    /// Byte range of the whole tag, braces included.
    start: usize,
    end: usize,
    /// `~` whitespace control on either side.
    trim_left: bool,
    trim_right: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Part<'a> {
    Text(&'a str),
    Tag(Tag),
}

#[derive(Debug, Default)]
struct Scan<'a> {
    parts: Vec<Part<'a>>,
    /// Something only handlebars can render (blocks, helpers, escapes…).
    needs_handlebars: bool,
    /// Pass the template to handlebars unchanged (raw blocks).
    verbatim: bool,
    /// Top-level names the template may read (to copy only those).
    words: BTreeSet<String>,
    /// The template may read the whole context (`this`, `@root`).
    whole_context: bool,
}

/// 1-based line and column of a byte offset.
fn line_col(s: &str, at: usize) -> (usize, usize) {
    let before = s.get(..at).unwrap_or(s);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// A one-line excerpt of `s` starting at `at`, at most `max` chars.
fn snippet(s: &str, at: usize, max: usize) -> String {
    let rest = s.get(at..).unwrap_or("");
    let line = rest.split('\n').next().unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

fn err_at(tpl: &str, at: usize, what: &str) -> TemplateError {
    let (line, col) = line_col(tpl, at);
    TemplateError::new(format!(
        "{what} at line {line}, column {col}: `{}`",
        snippet(tpl, at, 40)
    ))
    .at(at)
}

/// Byte offset of the `close` that ends a tag opened before `from`,
/// skipping quoted strings; `None` when it never comes.
fn find_close(tpl: &str, from: usize, close: &str) -> Option<usize> {
    let rest = tpl.get(from..)?;
    let mut quote: Option<char> = None;
    let mut it = rest.char_indices();
    while let Some((i, c)) = it.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    it.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if rest[i..].starts_with(close) {
                    return Some(from + i);
                }
            }
        }
    }
    // An unbalanced quote: fall back to the first `close`, so the error is
    // about the string, not a missing `}}`.
    rest.find(close).map(|i| from + i)
}

/// Whether a `|` (not `||`) appears outside quotes.
fn has_pipe(body: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    it.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == '|' && prev != '|' && it.peek() != Some(&'|') {
                    return true;
                }
            }
        }
        prev = c;
    }
    false
}

/// Deepest nesting of `(`, `[`, `{` outside quotes.
fn bracket_depth(body: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut it = body.chars();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    it.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// An upper bound of the nesting handlebars' parser would see: blocks
/// plus brackets, quotes ignored.
fn crude_depth(tpl: &str) -> usize {
    let (mut blocks, mut brackets, mut max) = (0usize, 0usize, 0usize);
    let b = tpl.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match c {
            b'{' if b.get(i + 1) == Some(&b'{') && matches!(b.get(i + 2), Some(b'#' | b'^')) => {
                blocks += 1
            }
            b'{' if b.get(i + 1) == Some(&b'{') && b.get(i + 2) == Some(&b'/') => {
                blocks = blocks.saturating_sub(1)
            }
            b'(' | b'[' => brackets += 1,
            b')' | b']' => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        max = max.max(blocks + brackets);
    }
    max
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | ':')
}

fn filter_error(tpl: &str, at: usize, filter: &str) -> TemplateError {
    let (line, col) = line_col(tpl, at);
    TemplateError::new(format!(
        "filters (`|`) are Jinja syntax; mailrun templates are handlebars: `| {filter}` at \
         line {line}, column {col} (only `| default(...)` is supported in templates; \
         filters work in `when` expressions; {DOC_HINT})"
    ))
    .at(at)
}

/// `{% if %}` and friends: Jinja statements, not handlebars.
fn jinja_statement(tpl: &str) -> Option<usize> {
    const WORDS: &[&str] = &[
        "if ", "for ", "set ", "endif", "endfor", "else", "elif ", "include ", "macro ", "raw",
        "endraw",
    ];
    let mut from = 0;
    while let Some(i) = tpl.get(from..).and_then(|r| r.find("{%")) {
        let at = from + i;
        let rest = tpl[at + 2..].trim_start_matches(['-', '+']).trim_start();
        if WORDS.iter().any(|w| rest.starts_with(w)) {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

fn scan(tpl: &str) -> Result<Scan<'_>, TemplateError> {
    let mut sc = Scan::default();
    if let Some(at) = jinja_statement(tpl) {
        return Err(err_at(
            tpl,
            at,
            "`{% … %}` is Jinja syntax; mailrun templates are handlebars \
             (`{{#if x}}…{{/if}}`, `{{#each xs}}…{{/each}}`)",
        ));
    }
    let mut i = 0;
    let mut text_start = 0;
    let mut depth = 0usize;
    // Open blocks: name and where.
    let mut open: Vec<(String, usize)> = Vec::new();
    while let Some(off) = tpl.get(i..).and_then(|r| r.find("{{")) {
        let s = i + off;
        let backslashes = tpl[..s].chars().rev().take_while(|&c| c == '\\').count();
        if backslashes > 0 {
            sc.needs_handlebars = true;
            if backslashes == 1 {
                // `\{{` is a literal `{{`.
                i = s + 2;
                continue;
            }
        }
        if tpl[s..].starts_with("{{{{") {
            // Raw blocks: handlebars gets the text as it is; only make sure
            // its parser cannot recurse too deep.
            if crude_depth(tpl) > MAX_DEPTH {
                return Err(err_at(tpl, s, "template nested too deeply"));
            }
            sc.needs_handlebars = true;
            sc.verbatim = true;
            sc.whole_context = true;
            return Ok(sc);
        }
        if s > text_start {
            sc.parts.push(Part::Text(&tpl[text_start..s]));
        }
        // Comments.
        if tpl[s..].starts_with("{{!") {
            let (close, len) = if tpl[s..].starts_with("{{!--") {
                (tpl[s + 5..].find("--}}").map(|j| s + 5 + j), 4)
            } else {
                (tpl[s + 3..].find("}}").map(|j| s + 3 + j), 2)
            };
            let Some(close) = close else {
                return Err(err_at(tpl, s, "unclosed comment"));
            };
            sc.needs_handlebars = true;
            sc.parts.push(Part::Tag(Tag {
                start: s,
                end: close + len,
                trim_left: false,
                trim_right: false,
                kind: Kind::Native,
            }));
            i = close + len;
            text_start = i;
            continue;
        }
        let triple = tpl[s..].starts_with("{{{");
        let (open_len, close_pat) = if triple { (3, "}}}") } else { (2, "}}") };
        let Some(close) = find_close(tpl, s + open_len, close_pat) else {
            return Err(err_at(tpl, s, "unclosed `{{`"));
        };
        let end = close + close_pat.len();
        let inner = &tpl[s + open_len..close];
        let mut body = inner.trim();
        let trim_left = body.starts_with('~');
        if trim_left {
            body = body[1..].trim_start();
        }
        let trim_right = body.ends_with('~');
        if trim_right {
            body = body[..body.len() - 1].trim_end();
        }
        if triple || trim_left || trim_right {
            sc.needs_handlebars = true;
        }
        if body.is_empty() {
            return Err(err_at(tpl, s, "empty `{{ }}`"));
        }
        if bracket_depth(body) > MAX_DEPTH {
            return Err(err_at(tpl, s, "template tag nested too deeply"));
        }
        let body_at = s + open_len + (inner.len() - inner.trim_start().len());
        let first = body.chars().next().unwrap_or(' ');
        let is_else = body == "else" || body.starts_with("else ");
        let is_this = body == "this" || body.starts_with("this.") || body.starts_with("this/");
        let outer_depth = depth;
        let kind = if "#/^>&*{!".contains(first) || is_else || is_this {
            let block_name = || -> String {
                body[1..]
                    .trim_start_matches(['>', '*'])
                    .trim_start()
                    .chars()
                    .take_while(|&c| is_word_char(c))
                    .collect()
            };
            match first {
                '#' | '^' if body.len() > 1 => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(err_at(
                            tpl,
                            s,
                            &format!("blocks nested too deeply (more than {MAX_DEPTH})"),
                        ));
                    }
                    open.push((block_name(), s));
                }
                '/' => {
                    depth = depth.saturating_sub(1);
                    let closing = block_name();
                    if let Some((name, at)) = open.pop() {
                        if !closing.is_empty() && name != closing {
                            let (line, col) = line_col(tpl, at);
                            return Err(err_at(
                                tpl,
                                s,
                                &format!(
                                    "`{{{{/{closing}}}}}` closes `{{{{#{name}}}}}` (opened at line {line}, column {col})"
                                ),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if has_pipe(body) && !body.contains(" as |") {
                let pipe = body.find('|').unwrap_or(0);
                let name: String = body[pipe + 1..]
                    .trim_start()
                    .chars()
                    .take_while(|&c| is_word_char(c))
                    .collect();
                return Err(filter_error(tpl, body_at + pipe, &name));
            }
            Kind::Native
        } else if has_pipe(body) {
            match expr::parse_bare(body) {
                Ok(e) => match e.tag_shape() {
                    TagShape::Var => Kind::Var(e),
                    TagShape::Filtered(name) => {
                        let pipe = body.find('|').unwrap_or(0);
                        return Err(filter_error(tpl, body_at + pipe, &name));
                    }
                    TagShape::Other => return Err(not_a_variable(tpl, s, body)),
                },
                Err(e) => {
                    let col_at = body_at
                        + body
                            .char_indices()
                            .nth(e.col.unwrap_or(1).saturating_sub(1))
                            .map_or(0, |(b, _)| b);
                    let (line, col) = line_col(tpl, col_at);
                    return Err(TemplateError::new(format!(
                        "{} at line {line}, column {col}: `{}`",
                        e.msg,
                        snippet(tpl, s, 40)
                    )));
                }
            }
        } else {
            match expr::parse_bare(body) {
                Ok(e) => match e.tag_shape() {
                    TagShape::Var => Kind::Var(e),
                    _ => return Err(not_a_variable(tpl, s, body)),
                },
                Err(_) => Kind::Native,
            }
        };
        if matches!(kind, Kind::Native) {
            sc.needs_handlebars = true;
        }
        // Names the tag may read at the top level.
        for w in body.split(|c: char| !is_word_char(c) && c != '@') {
            if w.is_empty() {
                continue;
            }
            if (w == "this" && outer_depth == 0) || w == "@root" {
                sc.whole_context = true;
            }
            sc.words.insert(w.trim_start_matches('@').to_string());
        }
        if body.starts_with('.') || (body.contains("../") && outer_depth == 0) {
            sc.whole_context = true;
        }
        sc.parts.push(Part::Tag(Tag {
            start: s,
            end,
            trim_left,
            trim_right,
            kind,
        }));
        i = end;
        text_start = end;
    }
    if let Some((name, at)) = open.pop() {
        return Err(err_at(
            tpl,
            at,
            &format!("`{{{{#{name}}}}}` is never closed (add `{{{{/{name}}}}}`)"),
        ));
    }
    if text_start < tpl.len() {
        sc.parts.push(Part::Text(&tpl[text_start..]));
    }
    Ok(sc)
}

fn not_a_variable(tpl: &str, at: usize, body: &str) -> TemplateError {
    let (line, col) = line_col(tpl, at);
    TemplateError::new(format!(
        "`{{{{ {body} }}}}` at line {line}, column {col} is not a variable: templates \
         substitute variables (`{{{{ path }}}}`, `{{{{ path | default(...) }}}}`) and run \
         handlebars helpers (`{{{{#if x}}}}…{{{{/if}}}}`); conditions belong in `when`; {DOC_HINT}"
    ))
    .at(at)
}

// ---------------------------------------------------------------- rendering

/// How a value is written into text.
pub fn value_text(v: &Value) -> Cow<'_, str> {
    expr::to_text(v)
}

fn registry() -> &'static Handlebars<'static> {
    static HB: OnceLock<Handlebars<'static>> = OnceLock::new();
    HB.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper(VAR_HELPER, Box::new(var_helper));
        hb
    })
}

fn missing(name: String) -> RenderError {
    RenderErrorReason::MissingVariable(Some(name)).into()
}

/// Handlebars' path text back in Jinja's form: `a.[0].[k]` → `a[0].k`.
fn jinja_name(hb: &str) -> String {
    let mut out = String::new();
    let mut rest = hb;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".[").or_else(|| rest.strip_prefix('[')) {
            let end = r.find(']').unwrap_or(r.len());
            let key = &r[..end];
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_digit()) {
                out.push_str(&format!("[{key}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `{{mailrun_var root key… default=…}}`: looks the path up as `expr` does
/// and writes the value as [`value_text`].
fn var_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let params = h.params();
    let Some(root) = params.first() else {
        return Err(
            RenderErrorReason::Other("internal: variable helper without a name".into()).into(),
        );
    };
    let mut name = jinja_name(root.relative_path().map_or("?", |s| s.as_str()));
    let mut cur: Option<Cow<'_, Value>> = if root.is_value_missing() {
        None
    } else {
        Some(Cow::Borrowed(root.value()))
    };
    for p in params.iter().skip(1) {
        let Some(v) = cur.take() else { break };
        match p.relative_path() {
            Some(path) => {
                if p.is_value_missing() {
                    return Err(missing(jinja_name(path)));
                }
                name.push_str(&format!("[{}]", jinja_name(path)));
            }
            None => match p.value() {
                Value::String(k) => {
                    name.push('.');
                    name.push_str(k);
                }
                other => name.push_str(&format!("[{other}]")),
            },
        }
        cur = match v {
            Cow::Borrowed(b) => expr::lookup(b, p.value()),
            Cow::Owned(o) => expr::lookup(&o, p.value()).map(|c| Cow::Owned(c.into_owned())),
        };
    }
    let falsy_too = h.hash_get("default_falsy").is_some();
    let value = match (cur, h.hash_get("default")) {
        (Some(v), Some(_)) if falsy_too && !expr::truthy(&v) => None,
        (Some(v), _) => Some(v),
        (None, _) => None,
    };
    let value = match value {
        Some(v) => v,
        None => match h.hash_get("default") {
            Some(d) if d.is_value_missing() => {
                return Err(missing(jinja_name(
                    d.relative_path().map_or("default", |s| s.as_str()),
                )))
            }
            Some(d) => Cow::Borrowed(d.value()),
            None => return Err(missing(name)),
        },
    };
    out.write(&value_text(&value))?;
    Ok(())
}

/// Where each piece of a rewritten template came from: (offset in the
/// rewrite, offset in the original, copied verbatim).
type SourceMap = Vec<(usize, usize, bool)>;

/// The template as handlebars should see it, and where each piece came
/// from: (offset in the rewrite, offset in the original, copied verbatim).
fn rewrite(tpl: &str, sc: &Scan<'_>) -> Result<(String, SourceMap), TemplateError> {
    let mut out = String::with_capacity(tpl.len() + 32);
    let mut map = Vec::with_capacity(sc.parts.len());
    for p in &sc.parts {
        match p {
            Part::Text(t) => {
                // Texts are slices of `tpl`, in order.
                let at = t.as_ptr() as usize - tpl.as_ptr() as usize;
                map.push((out.len(), at, true));
                out.push_str(t);
            }
            Part::Tag(tag) => match &tag.kind {
                Kind::Native => {
                    map.push((out.len(), tag.start, true));
                    out.push_str(&tpl[tag.start..tag.end]);
                }
                Kind::Var(e) => {
                    let Some(args) = e.handlebars_args() else {
                        return Err(err_at(
                            tpl,
                            tag.start,
                            "a computed index or default is not supported in a template \
                                 with blocks; set a variable first",
                        ));
                    };
                    map.push((out.len(), tag.start, false));
                    out.push_str("{{");
                    if tag.trim_left {
                        out.push('~');
                    }
                    out.push_str(VAR_HELPER);
                    out.push(' ');
                    out.push_str(&args);
                    if tag.trim_right {
                        out.push('~');
                    }
                    out.push_str("}}");
                }
            },
        }
    }
    Ok((out, map))
}

/// The original offset of an offset in the rewritten template.
fn map_back(map: &[(usize, usize, bool)], at: usize) -> usize {
    let i = map.partition_point(|(new, _, _)| *new <= at);
    match i.checked_sub(1).and_then(|i| map.get(i)) {
        Some((new, orig, true)) => orig + (at - new),
        Some((_, orig, false)) => *orig,
        None => 0,
    }
}

/// Byte offset of a 1-based line and column (column in chars).
fn offset_of(s: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (n, l) in s.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            return off
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        off += l.len();
    }
    s.len()
}

fn compile_error(
    tpl: &str,
    rewritten: &str,
    map: &[(usize, usize, bool)],
    e: &handlebars::TemplateError,
) -> TemplateError {
    let reason = match e.reason() {
        TemplateErrorReason::InvalidSyntax(_) => "invalid handlebars syntax".to_string(),
        TemplateErrorReason::MismatchingClosedHelper(open, close) => {
            format!("`{{{{#{open}}}}}` is closed by `{{{{/{close}}}}}`")
        }
        other => other.to_string(),
    };
    match e.pos() {
        Some((line, col)) => {
            let at = map_back(map, offset_of(rewritten, line, col));
            err_at(tpl, at.min(tpl.len()), &reason)
        }
        None => TemplateError::new(reason),
    }
}

fn render_error(e: RenderError) -> TemplateError {
    match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            TemplateError::undefined(jinja_name(path))
        }
        RenderErrorReason::MissingVariable(None) => TemplateError::new("undefined variable"),
        RenderErrorReason::HelperNotFound(name) => {
            let known = [
                "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "lt", "and", "or",
                "not", "len",
            ];
            let hint = crate::suggest::did_you_mean(name, known)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            TemplateError::new(format!("unknown handlebars helper '{name}'{hint}"))
        }
        RenderErrorReason::TemplateError(t) => TemplateError::new(t.reason().to_string()),
        other => TemplateError::new(format!("template error: {other}")),
    }
}

/// Only the variables the template may read, to keep the copy handlebars
/// needs small.
fn context_for(sc: &Scan<'_>, vars: &Value) -> Value {
    match vars {
        Value::Object(m) if !sc.whole_context => {
            let mut out = Map::new();
            for w in &sc.words {
                if let Some(v) = m.get(w) {
                    out.insert(w.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn render_scanned(tpl: &str, sc: &Scan<'_>, vars: &Value) -> Result<String, TemplateError> {
    if !sc.needs_handlebars {
        let mut out = String::with_capacity(tpl.len());
        for p in &sc.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Tag(Tag {
                    kind: Kind::Var(e), ..
                }) => expr::eval_with(e, vars, |v| out.push_str(&value_text(v)))?,
                Part::Tag(_) => {}
            }
        }
        return Ok(out);
    }
    let (text, map) = if sc.verbatim {
        (tpl.to_string(), vec![(0, 0, true)])
    } else {
        rewrite(tpl, sc)?
    };
    let ctx = Context::from(context_for(sc, vars));
    registry()
        .render_template_with_context(&text, &ctx)
        .map_err(|e| match e.reason() {
            RenderErrorReason::TemplateError(t) => compile_error(tpl, &text, &map, t),
            _ => render_error(e),
        })
}

/// Checks a template's syntax without rendering it (parse time).
pub fn check_syntax(tpl: &str) -> Result<(), TemplateError> {
    if !has_template(tpl) && !tpl.contains("{%") {
        return Ok(());
    }
    let sc = scan(tpl)?;
    if sc.needs_handlebars {
        let (text, map) = if sc.verbatim {
            (tpl.to_string(), vec![(0, 0, true)])
        } else {
            rewrite(tpl, &sc)?
        };
        handlebars::Template::compile(&text).map_err(|e| compile_error(tpl, &text, &map, &e))?;
    }
    Ok(())
}

/// Renders a template string against the variables.
pub fn render_str(tpl: &str, vars: &Value) -> Result<String, TemplateError> {
    if !has_template(tpl) {
        return Ok(tpl.to_string());
    }
    let sc = scan(tpl)?;
    render_scanned(tpl, &sc, vars)
}

/// The variable of a string that is exactly one `{{ path }}` tag (spaces
/// around allowed).
fn single_var<'a>(sc: &'a Scan<'_>) -> Option<&'a Expr> {
    if sc.needs_handlebars {
        return None;
    }
    let mut found = None;
    for p in &sc.parts {
        match p {
            Part::Text(t) if t.trim().is_empty() => {}
            Part::Tag(Tag {
                kind: Kind::Var(e), ..
            }) if found.is_none() => found = Some(e),
            _ => return None,
        }
    }
    found
}

/// Renders every string inside a value; a string that is exactly one
/// `{{ path }}` becomes the value at that path, its type kept.
pub fn render_value(v: &Value, vars: &Value) -> Result<Value, TemplateError> {
    render_value_at(v, vars, 0)
}

fn render_value_at(v: &Value, vars: &Value, depth: usize) -> Result<Value, TemplateError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(TemplateError::new(format!(
            "value nested too deeply (more than {MAX_VALUE_DEPTH} levels)"
        )));
    }
    Ok(match v {
        Value::String(s) if has_template(s) => {
            let sc = scan(s)?;
            match single_var(&sc) {
                Some(e) => expr::eval(e, vars)?,
                None => Value::String(render_scanned(s, &sc, vars)?),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value_at(i, vars, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, item) in m {
                let k = if has_template(k) {
                    render_str(k, vars)?
                } else {
                    k.clone()
                };
                out.insert(k, render_value_at(item, vars, depth + 1)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Value {
        json!({
            "inventory_hostname": "new",
            "users_file": "/etc/dovecot/users",
            "port": 993,
            "ratio": 0.5,
            "enabled": true,
            "nothing": null,
            "empty": "",
            "item": {"name": "ann", "quota": 10},
            "users": [{"name": "ann", "mail": "a@x"}, {"name": "bob", "mail": "b@x"}],
            "services": ["dovecot", "postfix"],
            "groups": {"old": ["mx1", "mx2"], "new": ["mx3"]},
            "hostvars": {"new": {"ansible_host": "10.0.0.3"}, "mx1": {"ansible_host": "10.0.0.1"}},
            "result": {"rc": 0, "stdout": "ok"},
            "braces": "{{ not a template }}",
            "ünï": "çà",
        })
    }

    fn render(t: &str) -> Result<String, TemplateError> {
        render_str(t, &vars())
    }

    #[test]
    fn renders() {
        let cases: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("{{ users_file }}", "/etc/dovecot/users"),
            ("{{users_file}}.bak", "/etc/dovecot/users.bak"),
            ("port {{ port }}", "port 993"),
            ("{{ ratio }} {{ enabled }} [{{ nothing }}]", "0.5 true []"),
            ("{{ item }}", r#"{"name":"ann","quota":10}"#),
            ("{{ services }}", r#"["dovecot","postfix"]"#),
            ("{{ item.name }}", "ann"),
            ("{{ hostvars.new.ansible_host }}", "10.0.0.3"),
            ("{{ hostvars['new'].ansible_host }}", "10.0.0.3"),
            ("{{ hostvars[\"mx1\"].ansible_host }}", "10.0.0.1"),
            (
                "{{ hostvars[inventory_hostname].ansible_host }}",
                "10.0.0.3",
            ),
            (
                "{{ groups.old[0] }} {{ groups.old.1 }} {{ groups.old[-1] }}",
                "mx1 mx2 mx2",
            ),
            ("{{ result.stdout }}", "ok"),
            ("{{ missing | default('x') }}", "x"),
            ("{{ empty | default('e', true) }}", "e"),
            ("{{ missing | default(port) }}", "993"),
            ("{{ braces }}", "{{ not a template }}"),
            ("<{{ ünï }}> & é", "<çà> & é"),
            ("a {{ 'x' }}", ""), // replaced below: error case
        ];
        for (t, want) in &cases[..cases.len() - 1] {
            assert_eq!(
                &render(t).unwrap_or_else(|e| panic!("{t}: {e}")),
                want,
                "{t}"
            );
        }
    }

    #[test]
    fn renders_blocks() {
        let cases: &[(&str, &str)] = &[
            ("{{#each users}}{{ name }}:{{ this.mail }};{{/each}}", "ann:a@x;bob:b@x;"),
            ("{{#each users}}{{@index}}={{name}} {{/each}}", "0=ann 1=bob "),
            ("{{#each services}}{{this}},{{/each}}", "dovecot,postfix,"),
            ("{{#if enabled}}on{{else}}off{{/if}}", "on"),
            ("{{#unless enabled}}off{{/unless}}", ""),
            ("{{#if missing}}yes{{else}}no{{/if}}", "no"),
            ("{{#each groups.old}}{{this}} {{/each}}{{ groups.old[0] }}", "mx1 mx2 mx1"),
            (
                "{{#each users}}{{ @root.hostvars[@root.inventory_hostname].ansible_host }}{{/each}}",
                "",
            ),
            ("{{#with item}}{{ name }}={{ quota }}{{/with}}", "ann=10"),
            ("{{#each users}}{{ @root.inventory_hostname }}/{{ ../port }} {{/each}}", "new/993 new/993 "),
            ("{{#each users}}{{ name | default('?') }}{{/each}}", "annbob"),
            ("{{#if enabled}}{{ hostvars['new'].ansible_host }}{{/if}}", "10.0.0.3"),
            ("{{#if enabled}}{{ hostvars[inventory_hostname].ansible_host }}{{/if}}", "10.0.0.3"),
            ("{{#if enabled}}{{ item }}{{/if}}", r#"{"name":"ann","quota":10}"#),
            ("{{#if users}}# {{ users.length }} users{{/if}}", "# 2 users"),
            ("{{#if enabled}}<&>{{ braces }}{{/if}}", "<&>{{ not a template }}"),
            ("{{! a comment }}x", "x"),
            ("\\{{ users_file }}", "{{ users_file }}"),
            ("{{lookup hostvars inventory_hostname}}", "[object]"),
            ("a  {{~ port ~}}  b", "a993b"),
            ("{{{ users_file }}}", "/etc/dovecot/users"),
        ];
        for (t, want) in cases {
            if want.is_empty() {
                continue;
            }
            assert_eq!(
                &render(t).unwrap_or_else(|e| panic!("{t}: {e}")),
                want,
                "{t}"
            );
            check_syntax(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }

    #[test]
    fn undefined_variables() {
        let cases: &[(&str, &str)] = &[
            ("{{ users_fil }}", "users_fil"),
            ("x {{ item.nme }}", "item.nme"),
            ("{{ hostvars.old.ansible_host }}", "hostvars.old"),
            ("{{ groups.old[7] }}", "groups.old[7]"),
            ("{{ hostvars[nobody].x }}", "nobody"),
            ("{{ missing | default(also_missing) }}", "also_missing"),
            ("{{#if enabled}}{{ users_fil }}{{/if}}", "users_fil"),
            ("{{#if enabled}}{{ item.nme }}{{/if}}", "item.nme"),
            ("{{#if enabled}}{{ groups.old[7] }}{{/if}}", "groups.old[7]"),
            ("{{#each users}}{{ nme }}{{/each}}", "nme"),
            ("{{#each nobody}}x{{/each}}", "nobody"),
        ];
        for (t, var) in cases {
            let e = render(t).expect_err(t);
            assert_eq!(e.var.as_deref(), Some(*var), "{t}: {e}");
            assert_eq!(e.msg, format!("undefined variable '{var}'"), "{t}");
            let e = render_value(&json!({"k": [t]}), &vars()).expect_err(t);
            assert_eq!(e.var.as_deref(), Some(*var), "{t}: {e}");
        }
    }

    #[test]
    fn syntax_errors() {
        // (template, message contains)
        let cases: &[(&str, &str)] = &[
            (
                "x {{ users_file",
                "unclosed `{{` at line 1, column 3: `{{ users_file`",
            ),
            ("{{", "unclosed `{{` at line 1, column 1"),
            ("a\n  {{ x }", "unclosed `{{` at line 2, column 3"),
            ("{{ x | lower }}", "filters (`|`) are Jinja syntax"),
            (
                "{{ x | lower }}",
                "`| lower` at line 1, column 6 (only `| default(...)`",
            ),
            ("{{#if x | bool}}y{{/if}}", "filters (`|`) are Jinja syntax"),
            ("{{ x is defined }}", "is not a variable"),
            ("{{ x | bool }}", "`| bool`"),
            ("{% if x %}y{% endif %}", "Jinja syntax"),
            ("{{ }}", "empty `{{ }}`"),
            ("{{ a == 1 }}", "is not a variable"),
            ("{{ 'lit' }}", "is not a variable"),
            (
                "a {{#if x}}never closed",
                "`{{#if}}` is never closed (add `{{/if}}`) at line 1, column 3",
            ),
            (
                "{{#each a}}{{#if x}}{{/each}}",
                "`{{/each}}` closes `{{#if}}` (opened at line 1, column 12) at line 1, column 21",
            ),
            ("{{#if x}}a{{/each}}", "`{{/each}}` closes `{{#if}}`"),
            ("line1\n{{#if x}}\n{{ a b c ) }}\n{{/if}}", "line 3"),
            ("{{ x | default('a }}", "unterminated string"),
            ("{{!-- open comment", "unclosed comment"),
        ];
        for (t, msg) in cases {
            let e = check_syntax(t).expect_err(t);
            assert!(e.msg.contains(msg), "{t}: {}", e.msg);
            if !has_template(t) {
                continue; // rendering returns such strings as they are
            }
            let e = render(t).expect_err(t);
            assert!(e.msg.contains(msg), "{t}: {}", e.msg);
        }
        for ok in [
            "no tags",
            "{{ a }}",
            "{{ a[0]['b'] }}",
            "{{#each xs}}{{ this }}{{/each}}",
            "50% {x}",
        ] {
            check_syntax(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn values_keep_their_type() {
        let v = vars();
        let cases: &[(Value, Value)] = &[
            (json!("{{ users }}"), v["users"].clone()),
            (json!("  {{ port }} "), json!(993)),
            (json!("{{port}}"), json!(993)),
            (json!("{{ enabled }}"), json!(true)),
            (json!("{{ nothing }}"), json!(null)),
            (json!("{{ groups.old }}"), json!(["mx1", "mx2"])),
            (json!("{{ missing | default([]) }}"), json!([])),
            (json!("{{ port }}/{{ port }}"), json!("993/993")),
            (json!("port {{ port }}"), json!("port 993")),
            (json!("{{#if enabled}}{{ port }}{{/if}}"), json!("993")),
            (
                json!({"dest": "{{ users_file }}", "n": 1, "list": ["{{ port }}", "x"], "{{ inventory_hostname }}": "k"}),
                json!({"dest": "/etc/dovecot/users", "n": 1, "list": [993, "x"], "new": "k"}),
            ),
            (json!("no template"), json!("no template")),
        ];
        for (input, want) in cases {
            assert_eq!(
                &render_value(input, &v).unwrap_or_else(|e| panic!("{input}: {e}")),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn nasty_inputs_do_not_panic() {
        let deep_blocks = "{{#if a}}".repeat(1_000) + &"{{/if}}".repeat(1_000);
        let e = check_syntax(&deep_blocks).expect_err("deep");
        assert!(e.msg.contains("nested too deeply"), "{}", e.msg);
        let deep_parens = format!(
            "{{{{#if {}a{}}}}}x{{{{/if}}}}",
            "(".repeat(1_000),
            ")".repeat(1_000)
        );
        assert!(check_syntax(&deep_parens).is_err());
        let raw_deep = format!(
            "{{{{{{{{raw}}}}}}}}x{{{{{{{{/raw}}}}}}}}{}",
            "{{#if a}}".repeat(1_000)
        );
        assert!(check_syntax(&raw_deep).is_err());
        assert!(render(&raw_deep).is_err());
        let deep_index = format!("{{{{ a{} }}}}", "[0]".repeat(10_000));
        assert!(render(&deep_index).is_err());
        let deep_expr = format!("{{{{ {}a{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(render(&deep_expr).is_err());
        let mut deep_value = json!("{{ port }}");
        for _ in 0..500 {
            deep_value = json!([deep_value]);
        }
        assert!(render_value(&deep_value, &vars()).is_err());
        for t in [
            "{{",
            "}}",
            "{{{",
            "{{{{",
            "{{{{raw}}}}{{x}}{{{{/raw}}}}",
            "\\{{",
            "\\\\{{ port }}",
            "{{~",
            "{{~}}",
            "{{ ~ }}",
            "{{#}}",
            "{{/}}",
            "{{^}}",
            "{{else}}",
            "{{ é",
            "{{ 日本 }}",
            "é{{ port }}ü{{",
            "{{ '\u{1F600}",
            "{{ a[ }}",
            "{{ a.[0] }}",
            "{{ a | }}",
            "{{ | }}",
            "{{!}}",
            "{{!-",
            "{{>partial}}",
            "{{#each}}{{/each}}",
            "{{#each users as |u|}}{{u.name}}{{/each}}",
            "{%",
            "{% if",
            "{{ x }}}",
            "{{{ x }}",
            "{{ 'a' | default }}",
            "{{\u{0}}}",
        ] {
            let _ = check_syntax(t);
            let _ = render(t);
            let _ = render_value(&json!(t), &vars());
        }
    }

    #[test]
    fn only_needed_vars_are_copied() {
        let sc = scan("{{#each users}}{{ name }}{{/each}}").unwrap();
        let ctx = context_for(&sc, &vars());
        assert_eq!(
            ctx.as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["users".to_string()])
        );
        let sc = scan("{{#each this}}{{@key}}{{/each}}").unwrap();
        assert_eq!(context_for(&sc, &vars()), vars());
    }
}
