//! The INI inventory format, parsed as ansible-core's `ini` plugin parses it.

use super::address::{expand_hostname_range, parse_address};
use super::data::Data;
use super::literal::ini_value;
use crate::error::{Pos, SourceError};
use std::collections::HashMap;
use std::path::Path;

/// Python's `shlex.split(line, comments=True)` (POSIX mode). Err: the
/// message and the 0-based char index where the problem starts.
pub(crate) fn shlex_split(line: &str) -> Result<Vec<(usize, String)>, (usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let start = i;
        let mut tok = String::new();
        let mut quoted = false;
        let mut done = false;
        while i < chars.len() && !done {
            let c = chars[i];
            match c {
                '\'' | '"' => {
                    quoted = true;
                    let q = c;
                    let open = i;
                    i += 1;
                    loop {
                        let Some(&d) = chars.get(i) else {
                            return Err((open, "No closing quotation".into()));
                        };
                        i += 1;
                        if d == q {
                            break;
                        }
                        if q == '"' && d == '\\' {
                            match chars.get(i) {
                                Some(&e) if e == '"' || e == '\\' => {
                                    tok.push(e);
                                    i += 1;
                                }
                                Some(_) => tok.push('\\'),
                                None => return Err((open, "No closing quotation".into())),
                            }
                        } else {
                            tok.push(d);
                        }
                    }
                }
                '\\' => {
                    let Some(&e) = chars.get(i + 1) else {
                        return Err((i, "No escaped character".into()));
                    };
                    tok.push(e);
                    i += 2;
                }
                '#' => {
                    // A comment even inside a word: the rest of the line goes.
                    i = chars.len();
                    done = true;
                }
                c if c.is_whitespace() => done = true,
                c => {
                    tok.push(c);
                    i += 1;
                }
            }
        }
        if !tok.is_empty() || quoted {
            out.push((start, tok));
        }
    }
    Ok(out)
}

struct Pending {
    line: usize,
    col: usize,
    children: bool,
    parents: Vec<String>,
}

/// Parses INI text into `data`. Errors point at the offending line.
pub(crate) fn parse(data: &mut Data, src: &str, path: &Path) -> Result<(), SourceError> {
    let err = |line: usize, col: usize, msg: String| {
        SourceError::with_source(path, src, Pos { line, col }, msg)
    };
    let mut pending: indexmap::IndexMap<String, Pending> = indexmap::IndexMap::new();
    let mut group = "ungrouped".to_string();
    let mut state = "hosts";
    for (n, raw) in src.lines().enumerate() {
        let lineno = n + 1;
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let line = raw.trim();
        let col0 = indent + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((name, kind)) = section(line) {
            let kind = kind.unwrap_or("hosts");
            state = match kind {
                "hosts" => "hosts",
                "children" => "children",
                "vars" => "vars",
                other => {
                    let help = crate::suggest::did_you_mean(other, ["children", "vars"]);
                    return Err(err(
                        lineno,
                        col0 + 2 + name.chars().count(),
                        format!("section [{name}:{other}] has unknown type: {other}"),
                    )
                    .help(help));
                }
            };
            group = name.to_string();
            if !data.groups.contains_key(name) {
                if state == "vars" && !pending.contains_key(name) {
                    pending.insert(
                        name.to_string(),
                        Pending {
                            line: lineno,
                            col: col0,
                            children: false,
                            parents: vec![],
                        },
                    );
                }
                data.add_group(name);
            }
            if state != "vars" {
                if let Some(p) = pending.get(name) {
                    if p.children {
                        add_pending_children(data, name, &mut pending)
                            .map_err(|m| err(lineno, col0, m))?;
                    } else {
                        pending.shift_remove(name);
                    }
                }
            }
            continue;
        }
        // A line in brackets that is no section is an error; `[0:2]x` is a
        // host range, as in Ansible.
        if line.starts_with('[') && line.ends_with(']') {
            return Err(err(
                lineno,
                col0,
                format!("invalid section entry '{line}': a section is [name], [name:vars] or [name:children], without spaces"),
            ));
        }
        if line.starts_with('[') && !line.contains(']') {
            return Err(err(
                lineno,
                col0,
                format!("unclosed section '{line}': expected ']'"),
            ));
        }
        match state {
            "hosts" => host_line(data, &group, line, lineno, col0, &err)?,
            "vars" => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(
                        lineno,
                        col0,
                        format!("expected key=value in [{group}:vars], got: {line}"),
                    ));
                };
                let k = k.trim();
                if k.is_empty() {
                    return Err(err(lineno, col0, format!("empty variable name in: {line}")));
                }
                data.set_group_var(&group, k, ini_value(v.trim()))
                    .map_err(|m| err(lineno, col0, m))?;
            }
            _ => {
                let Some(child) = group_name(line) else {
                    return Err(err(
                        lineno,
                        col0,
                        format!("expected a group name, got: {line}"),
                    ));
                };
                if data.groups.contains_key(child) {
                    data.add_child(&group, child)
                        .map_err(|m| err(lineno, col0, m))?;
                } else if let Some(p) = pending.get_mut(child) {
                    p.parents.push(group.clone());
                } else {
                    pending.insert(
                        child.to_string(),
                        Pending {
                            line: lineno,
                            col: col0,
                            children: true,
                            parents: vec![group.clone()],
                        },
                    );
                }
            }
        }
    }
    if let Some((name, p)) = pending.first() {
        let known: Vec<String> = data
            .groups
            .keys()
            .filter(|g| !pending.contains_key(*g))
            .cloned()
            .collect();
        let help = crate::suggest::did_you_mean(name, known.iter());
        let msg = if p.children {
            let parent = p.parents.last().map_or("", String::as_str);
            format!("section [{parent}:children] includes undefined group '{name}'")
        } else {
            format!("section [{name}:vars] is for undefined group '{name}'")
        };
        return Err(err(p.line, p.col, msg).help(help));
    }
    Ok(())
}

fn add_pending_children(
    data: &mut Data,
    group: &str,
    pending: &mut indexmap::IndexMap<String, Pending>,
) -> Result<(), String> {
    let Some(p) = pending.shift_remove(group) else {
        return Ok(());
    };
    for parent in p.parents {
        data.add_child(&parent, group)?;
        if pending.get(&parent).is_some_and(|pp| pp.children) {
            add_pending_children(data, &parent, pending)?;
        }
    }
    Ok(())
}

/// `^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let inner = &rest[..close];
    let after = rest[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == ']' || c == ':')
    {
        return None;
    }
    if let Some(k) = kind {
        if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
    }
    Some((name, kind))
}

/// `^([^:\]\s]+)\s*(?:#.*)?$`
fn group_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace() || c == '#')
        .unwrap_or(line.len());
    let name = &line[..end];
    let after = line[end..].trim_start();
    (!name.is_empty() && (after.is_empty() || after.starts_with('#'))).then_some(name)
}

/// `(hostnames, port)` for one host pattern (INI token or YAML key).
pub(crate) fn expand_hostpattern(pattern: &str) -> Result<(Vec<String>, Option<u64>), String> {
    let (host, port) = parse_address(pattern, true).unwrap_or_else(|| (pattern.to_string(), None));
    if pattern.trim().ends_with(':') && port.is_none() {
        return Err(format!(
            "invalid host pattern '{pattern}': a trailing ':' is reserved for a port"
        ));
    }
    let hosts = if host.contains('[') {
        expand_hostname_range(&host).map_err(|m| format!("in host pattern '{pattern}': {m}"))?
    } else {
        vec![host]
    };
    for h in &hosts {
        if h.trim() == "---" {
            return Err(format!(
                "invalid host pattern '{pattern}': '---' is normally a sign this is a YAML file"
            ));
        }
        if h.is_empty() {
            return Err("empty host name".into());
        }
    }
    Ok((hosts, port))
}

fn host_line(
    data: &mut Data,
    group: &str,
    line: &str,
    lineno: usize,
    col0: usize,
    err: &dyn Fn(usize, usize, String) -> SourceError,
) -> Result<(), SourceError> {
    let tokens = shlex_split(line).map_err(|(at, m)| {
        err(
            lineno,
            col0 + at,
            format!("cannot parse host definition: {m}"),
        )
    })?;
    let Some(((_, first), rest)) = tokens.split_first() else {
        return Ok(());
    };
    let (hosts, port) = expand_hostpattern(first).map_err(|m| err(lineno, col0, m))?;
    data.check_room(&hosts).map_err(|m| err(lineno, col0, m))?;
    let mut vars: Vec<(String, serde_json::Value)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (at, t) in rest {
        let Some((k, v)) = t.split_once('=') else {
            return Err(err(
                lineno,
                col0 + at,
                format!("expected key=value host variable, got: {t}"),
            ));
        };
        let value = ini_value(v);
        match seen.get(k) {
            Some(&i) => vars[i].1 = value,
            None => {
                seen.insert(k.to_string(), vars.len());
                vars.push((k.to_string(), value));
            }
        }
    }
    for h in &hosts {
        data.add_host(h, Some(group), port);
        for (k, v) in &vars {
            data.set_host_var(h, k, v.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Data, g: &str) -> Vec<String> {
        d.groups[g].hosts.clone()
    }

    #[test]
    fn shlex() {
        let cases: &[(&str, Result<&[&str], ()>)] = &[
            ("a b", Ok(&["a", "b"])),
            ("h x=\"a b\" y='c d'", Ok(&["h", "x=a b", "y=c d"])),
            ("h x=1 # comment", Ok(&["h", "x=1"])),
            ("h x=1#c", Ok(&["h", "x=1"])),
            ("h x=\"a\\\"b\"", Ok(&["h", "x=a\"b"])),
            ("h x=\"\\u\"", Ok(&["h", "x=\\u"])),
            ("h x=a\\ b", Ok(&["h", "x=a b"])),
            ("h x=\"\"", Ok(&["h", "x="])),
            ("h x=\"open", Err(())),
            ("h x=\\", Err(())),
        ];
        for (text, want) in cases {
            let got = shlex_split(text).map(|v| v.into_iter().map(|(_, s)| s).collect::<Vec<_>>());
            match want {
                Ok(w) => assert_eq!(
                    got.ok(),
                    Some(w.iter().map(|s| s.to_string()).collect()),
                    "{text}"
                ),
                Err(()) => assert!(got.is_err(), "{text}"),
            }
        }
    }

    #[test]
    fn ini_parsing() {
        let src = "a\n[web]\nw1 x=1\nw[2:3]:2222\n[web:vars]\ny=yes\n[dc:children]\nweb\n";
        let mut d = Data::default();
        parse(&mut d, src, Path::new("hosts")).expect("parses");
        assert_eq!(names(&d, "ungrouped"), ["a"]);
        assert_eq!(names(&d, "web"), ["w1", "w2", "w3"]);
        assert_eq!(d.hosts["w2"].vars["ansible_port"], 2222);
        assert_eq!(d.hosts["w1"].vars["x"], 1);
        assert_eq!(d.groups["web"].vars["y"], "yes");
        assert_eq!(d.groups["dc"].children, ["web"]);
    }

    #[test]
    fn ini_errors() {
        // (source, line, column, message fragment)
        let cases: &[(&str, usize, usize, &str)] = &[
            ("[g:vars]\nnovalue\n", 2, 1, "expected key=value"),
            ("[g]\nh\n[g:vars]\n  novalue\n", 4, 3, "expected key=value"),
            ("[g\nh\n", 1, 1, "unclosed section"),
            ("[g x]\n", 1, 1, "invalid section"),
            ("[g:kids]\n", 1, 4, "unknown type"),
            ("mx[3:1]\n", 1, 1, "empty"),
            ("mx[01:3]\n", 1, 1, "equal-length"),
            ("h x=\"open\n", 1, 5, "No closing quotation"),
            ("h novalue\n", 1, 3, "expected key=value host variable"),
            ("[p:children]\nmissing\n", 2, 1, "undefined group 'missing'"),
            ("[lonely:vars]\na=1\n", 1, 1, "undefined group 'lonely'"),
            ("h:\n", 1, 1, "trailing ':'"),
            ("---\n", 1, 1, "YAML"),
            ("[a:children]\nb\n[b:children]\na\n", 4, 1, "recursive"),
            // Each line within the range cap, the inventory not.
            ("a[1:60000]\n[g]\n  b[1:60000]\n", 3, 3, "too many hosts"),
            ("mx[1:100001]\n", 1, 1, "too many hosts"),
        ];
        for (src, line, col, frag) in cases {
            let mut d = Data::default();
            let e = parse(&mut d, src, Path::new("inv")).expect_err(src);
            assert_eq!((e.pos.line, e.pos.col), (*line, *col), "{src:?}: {e}");
            assert!(e.msg.contains(frag), "{src:?}: {}", e.msg);
        }
    }
}
