//! Host patterns (`all`, globs, `a:b`, `a:&b`, `a:!b`, `~regex`, `g[0]`,
//! `g[1:3]`) evaluated as ansible-core's `InventoryManager.get_hosts`.

use super::address::parse_address;
use super::data::Data;
use crate::error::{Error, Result};
use regex::Regex;

pub(crate) const LOCALHOST: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// `split_host_pattern`: commas split; else `:` (unless the whole text is
/// one address such as `fe80::1` or `host:22`) and whitespace split.
pub(crate) fn split_host_pattern(pattern: &str) -> Vec<String> {
    let parts: Vec<String> = if pattern.contains(',') {
        pattern.split(',').map(str::to_string).collect()
    } else if parse_address(pattern, true).is_some() {
        vec![pattern.to_string()]
    } else {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '[' {
                // A complete bracketed expression stays in the word.
                let mut br = String::from('[');
                let mut closed = false;
                for d in chars.by_ref() {
                    br.push(d);
                    if d == ']' {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    cur.push_str(&br);
                } else {
                    // An unclosed '[' separates like ':' (the regex skips it),
                    // then the rest is matched again.
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                    let rest: String = br.chars().skip(1).collect();
                    out.extend(split_host_pattern_words(&rest));
                }
            } else if c.is_whitespace() || c == ':' || c == ']' {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    };
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn split_host_pattern_words(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ':' || c == '[' || c == ']')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Regular patterns first, then `&` intersections, then `!` exclusions;
/// only exclusions means "all but".
fn order_patterns(patterns: &[String]) -> Vec<String> {
    let mut regular = Vec::new();
    let mut inter = Vec::new();
    let mut excl = Vec::new();
    for p in patterns.iter().filter(|p| !p.is_empty()) {
        if p.starts_with('!') {
            excl.push(p.clone());
        } else if p.starts_with('&') {
            inter.push(p.clone());
        } else {
            regular.push(p.clone());
        }
    }
    if regular.is_empty() {
        regular.push("all".into());
    }
    regular.into_iter().chain(inter).chain(excl).collect()
}

/// Evaluates split patterns; implicit localhost included when named.
pub(crate) fn evaluate(
    data: &Data,
    patterns: &[String],
    has_localhost: bool,
) -> Result<Vec<String>> {
    // Sets beside the lists: `contains` on a list made `all` on 100000
    // hosts take minutes (found fuzzing the inventory parsers).
    use std::collections::HashSet;
    let mut hosts: Vec<String> = Vec::new();
    let mut have: HashSet<String> = HashSet::new();
    for p in order_patterns(patterns) {
        if data.hosts.contains_key(&p) {
            if have.insert(p.clone()) {
                hosts.push(p);
            }
            continue;
        }
        let that = match_one(data, &p, has_localhost)?;
        if p.starts_with('!') || p.starts_with('&') {
            let that: HashSet<&String> = that.iter().collect();
            let keep = p.starts_with('&');
            hosts.retain(|h| that.contains(h) == keep);
            have.retain(|h| that.contains(h) == keep);
        } else {
            for h in that {
                if have.insert(h.clone()) {
                    hosts.push(h);
                }
            }
        }
    }
    Ok(hosts)
}

fn match_one(data: &Data, pattern: &str, has_localhost: bool) -> Result<Vec<String>> {
    let pattern = pattern.strip_prefix(['&', '!']).unwrap_or(pattern);
    if pattern.is_empty() {
        return Ok(vec![]);
    }
    let (expr, subscript) = split_subscript(pattern);
    let hosts = enumerate(data, expr, has_localhost)?;
    apply_subscript(hosts, subscript).ok_or_else(|| {
        Error::Other(format!(
            "no hosts matched the subscripted pattern '{pattern}'"
        ))
    })
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Subscript {
    Index(i64),
    Range(usize, Option<usize>),
}

/// `name[3]`, `name[-1]`, `name[1:3]`, `name[1:]` (not after `~`).
fn split_subscript(pattern: &str) -> (&str, Option<Subscript>) {
    if pattern.starts_with('~') || !pattern.ends_with(']') {
        return (pattern, None);
    }
    let Some(open) = pattern.rfind('[') else {
        return (pattern, None);
    };
    let head = &pattern[..open];
    let inner = &pattern[open + 1..pattern.len() - 1];
    if head.is_empty() {
        return (pattern, None);
    }
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if digits(inner.strip_prefix('-').unwrap_or(inner)) {
        if let Ok(i) = inner.parse() {
            return (head, Some(Subscript::Index(i)));
        }
    }
    for sep in [':', '-'] {
        if let Some((a, b)) = inner.split_once(sep) {
            if digits(a) && (b.is_empty() || digits(b)) {
                let (Ok(start), end) = (a.parse(), b.parse().ok()) else {
                    return (pattern, None);
                };
                return (
                    head,
                    Some(Subscript::Range(
                        start,
                        if b.is_empty() { None } else { end },
                    )),
                );
            }
        }
    }
    (pattern, None)
}

/// None: an index out of range (Ansible's IndexError).
fn apply_subscript(hosts: Vec<String>, sub: Option<Subscript>) -> Option<Vec<String>> {
    let Some(sub) = sub else {
        return Some(hosts);
    };
    if hosts.is_empty() {
        return Some(hosts);
    }
    let n = hosts.len();
    match sub {
        // `x[0:0]` is x[0] in Ansible (a zero end counts as "no end").
        Subscript::Range(start, Some(end)) if end != 0 => Some(
            hosts
                .into_iter()
                .skip(start)
                .take((end + 1).saturating_sub(start))
                .collect(),
        ),
        Subscript::Range(start, None) => Some(hosts.into_iter().skip(start).collect()),
        Subscript::Range(start, Some(_)) => hosts.get(start).map(|h| vec![h.clone()]),
        Subscript::Index(i) => {
            let idx = if i < 0 { n as i64 + i } else { i };
            usize::try_from(idx)
                .ok()
                .and_then(|i| hosts.get(i))
                .map(|h| vec![h.clone()])
        }
    }
}

/// fnmatch.translate: `*`, `?`, `[seq]`, `[!seq]`, the rest literal.
fn glob_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^(?s:");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                out.push_str(".*");
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
            }
            '?' => out.push('.'),
            '[' => {
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str("\\[");
                } else {
                    let body: String = chars[i..j].iter().collect();
                    i = j + 1;
                    let (neg, body) = match body.strip_prefix('!') {
                        Some(b) => (true, b.to_string()),
                        None => (false, body),
                    };
                    let esc: String = body
                        .chars()
                        .map(|c| match c {
                            '\\' | '[' | ']' | '&' | '~' | '|' | '^' => format!("\\{c}"),
                            c => c.to_string(),
                        })
                        .collect();
                    if esc.is_empty() {
                        out.push_str(if neg { "." } else { "[^\\s\\S]" });
                    } else {
                        out.push('[');
                        if neg {
                            out.push('^');
                        }
                        out.push_str(&esc);
                        out.push(']');
                    }
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str(")$");
    out
}

fn compile(pattern: &str) -> Result<Regex> {
    let src = match pattern.strip_prefix('~') {
        // Python's re.match anchors at the start only.
        Some(re) => format!("^(?:{re})"),
        None => glob_regex(pattern),
    };
    Regex::new(&src).map_err(|e| Error::Other(format!("invalid host pattern '{pattern}': {e}")))
}

fn enumerate(data: &Data, pattern: &str, has_localhost: bool) -> Result<Vec<String>> {
    let re = compile(pattern)?;
    let mut results: Vec<String> = Vec::new();
    let mut matched_group = false;
    for g in data.groups.keys() {
        if re.is_match(g) {
            matched_group = true;
            results.extend(data.group_hosts(g));
        }
    }
    let special = pattern.starts_with('~') || pattern.contains(['.', '?', '*', '[']);
    if !matched_group || special {
        results.extend(data.hosts.keys().filter(|h| re.is_match(h)).cloned());
    }
    if results.is_empty() && has_localhost && LOCALHOST.contains(&pattern) {
        results.push(pattern.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    results.retain(|h| seen.insert(h.clone()));
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let cases: &[(&str, &[&str])] = &[
            ("a,b[1], c[2:3] , d", &["a", "b[1]", "c[2:3]", "d"]),
            ("web:&db:!x", &["web", "&db", "!x"]),
            ("web:db", &["web", "db"]),
            ("fe80::1", &["fe80::1"]),
            ("host:22", &["host:22"]),
            ("g[1:3]", &["g[1:3]"]),
            ("a b", &["a", "b"]),
            ("", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(split_host_pattern(text), *want, "{text}");
        }
    }

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("web*", "web1", true),
            ("web*", "db1", false),
            ("w?b", "web", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "aXexample.com", false),
            ("db[12]", "db1", true),
            ("db[!12]", "db1", false),
            ("db[!12]", "db3", true),
            ("a[", "a[", true),
        ];
        for (glob, name, want) in cases {
            let re = Regex::new(&glob_regex(glob)).expect(glob);
            assert_eq!(re.is_match(name), *want, "{glob} ~ {name}");
        }
    }

    #[test]
    fn subscripts() {
        let h: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("g[0]", Some(&["a"])),
            ("g[-1]", Some(&["d"])),
            ("g[1:2]", Some(&["b", "c"])),
            ("g[2:]", Some(&["c", "d"])),
            ("g[1:9]", Some(&["b", "c", "d"])),
            ("g[0:0]", Some(&["a"])),
            ("g[9]", None),
            ("g", Some(&["a", "b", "c", "d"])),
        ];
        for (p, want) in cases {
            let (_, sub) = split_subscript(p);
            let got = apply_subscript(h.clone(), sub);
            assert_eq!(
                got.as_deref(),
                want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .as_deref(),
                "{p}"
            );
        }
    }
}
