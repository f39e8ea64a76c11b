//! `lineinfile`: one line in a text file, as Ansible's module: found by
//! `regexp`, `search_string` or the line itself; replaced, inserted
//! (`insertafter`/`insertbefore`, EOF by default) or removed. The new
//! content is installed like `file_copy` (validate, backup, mode, diff).

use super::args::{self, Mode};
use super::file_copy::{host_read, install, InstallOpts};
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use regex::{Captures, Regex};
use serde::Deserialize;
use serde_json::Value;

pub struct LineInFile;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    path: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    dest: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    regexp: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    search_string: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    line: Option<String>,
    #[serde(default)]
    state: State,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    insertafter: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    insertbefore: Option<String>,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    create: bool,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    backrefs: bool,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    firstmatch: bool,
    #[serde(default, deserialize_with = "args::bool_lenient")]
    backup: bool,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    validate: Option<String>,
    #[serde(default, deserialize_with = "args::mode")]
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    group: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum State {
    #[default]
    Present,
    Absent,
}

fn err(arg: &str, msg: String) -> ArgError {
    ArgError {
        arg: Some(arg.into()),
        msg: format!("lineinfile: {msg}"),
        help: None,
    }
}

/// Compiled once per pattern and run (every host's task asks for the same
/// few; compiling costs far more than matching).
fn regex(arg: &str, pattern: &str) -> Result<Regex, ArgError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().last().unwrap_or_default().trim().to_string();
        err(arg, format!("{arg} is not a valid regular expression: {first}"))
    })?;
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() < 256 {
        map.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

/// Where a line goes when nothing matches it.
#[derive(Debug, Clone)]
enum Anchor {
    Eof,
    Bof,
    After(Regex),
    Before(Regex),
}

/// What to look for.
#[derive(Debug, Clone)]
enum Find {
    Regexp(Regex),
    Search(String),
    Line,
}

#[derive(Debug)]
struct Job {
    path: String,
    find: Find,
    line: Option<String>,
    state: State,
    anchor: Anchor,
    create: bool,
    backrefs: bool,
    firstmatch: bool,
    opts: InstallOpts,
}

fn parse(args: &Value) -> Result<Job, ArgError> {
    let p: Params = args::typed("lineinfile", args)?;
    let path = match (p.path, p.dest) {
        (Some(p), None) | (None, Some(p)) => p,
        (Some(_), Some(_)) => return Err(err("dest", "give path or dest (its older name), not both".into())),
        (None, None) => {
            return Err(ArgError {
                arg: None,
                msg: "lineinfile: missing required argument 'path'".into(),
                help: None,
            })
        }
    };
    let find = match (&p.regexp, &p.search_string) {
        (Some(_), Some(_)) => {
            return Err(err("search_string", "regexp and search_string exclude each other".into()))
        }
        (Some(r), None) => Find::Regexp(regex("regexp", r)?),
        (None, Some(s)) => Find::Search(s.clone()),
        (None, None) => Find::Line,
    };
    if p.backrefs && !matches!(find, Find::Regexp(_)) {
        return Err(err("backrefs", "backrefs needs regexp".into()));
    }
    let anchor = match (p.insertafter.as_deref(), p.insertbefore.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(err("insertbefore", "insertafter and insertbefore exclude each other".into()))
        }
        (None, None) | (Some("EOF"), None) => Anchor::Eof,
        (Some("BOF"), None) | (None, Some("BOF")) => Anchor::Bof,
        (Some(r), None) => Anchor::After(regex("insertafter", r)?),
        (None, Some(r)) => Anchor::Before(regex("insertbefore", r)?),
    };
    match p.state {
        State::Present if p.line.is_none() => {
            return Err(ArgError {
                arg: None,
                msg: "lineinfile: state=present needs 'line'".into(),
                help: Some("give line: the text the file must hold".into()),
            })
        }
        State::Absent if matches!(find, Find::Line) && p.line.is_none() => {
            return Err(ArgError {
                arg: None,
                msg: "lineinfile: state=absent needs regexp, search_string or line".into(),
                help: None,
            })
        }
        _ => {}
    }
    if let Some(l) = &p.line {
        if l.contains('\n') {
            return Err(err("line", "line holds a newline: it must be one line (use file_copy or template for more)".into()));
        }
    }
    super::file_copy::check_validate("lineinfile", p.validate.as_deref())?;
    Ok(Job {
        opts: InstallOpts {
            dest: path.clone(),
            mode: p.mode,
            owner: p.owner,
            group: p.group,
            backup: p.backup,
            validate: p.validate,
            force: true,
            known: None,
            checksum: None,
        },
        path,
        find,
        line: p.line,
        state: p.state,
        anchor,
        create: p.create,
        backrefs: p.backrefs,
        firstmatch: p.firstmatch,
    })
}

/// Python's `match.expand`: `\1`, `\g<1>`, `\g<name>`, `\\`.
fn expand(template: &str, caps: &Captures) -> String {
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|&(_, c)| c) {
            Some('\\') => {
                chars.next();
                out.push('\\');
            }
            Some(d) if d.is_ascii_digit() => {
                let mut n = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_digit() && n.len() < 2 {
                        n.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let idx: usize = n.parse().unwrap_or(0);
                out.push_str(caps.get(idx).map_or("", |m| m.as_str()));
            }
            Some('g') if template[i + 2..].starts_with('<') => {
                if let Some(end) = template[i + 3..].find('>') {
                    let name = &template[i + 3..i + 3 + end];
                    let m = match name.parse::<usize>() {
                        Ok(n) => caps.get(n),
                        Err(_) => caps.name(name),
                    };
                    out.push_str(m.map_or("", |m| m.as_str()));
                    // Skip `g<name>`.
                    for _ in 0..name.chars().count() + 3 {
                        chars.next();
                    }
                } else {
                    out.push('\\');
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

/// The file's new lines (each keeps its own line end) and a message, or
/// None when nothing changes.
fn edit(job: &Job, text: &str) -> (Vec<String>, Option<String>, usize) {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let bare = |l: &str| l.trim_end_matches(['\r', '\n']).to_string();
    let line = job.line.clone().unwrap_or_default();
    let matches = |l: &str| -> bool {
        match &job.find {
            Find::Regexp(r) => r.is_match(l),
            Find::Search(s) => l.contains(s.as_str()),
            Find::Line => bare(l) == line,
        }
    };
    if job.state == State::Absent {
        let before = lines.len();
        lines.retain(|l| !matches(&bare(l)));
        let found = before - lines.len();
        let msg = (found > 0).then(|| format!("{found} line(s) removed"));
        return (lines, msg, found);
    }
    let mut found: Option<usize> = None;
    let mut insert_at: Option<usize> = None;
    for (i, l) in lines.iter().enumerate() {
        let b = bare(l);
        if matches(&b) {
            found = Some(i);
            if job.firstmatch {
                break;
            }
        } else {
            match &job.anchor {
                Anchor::After(r) if r.is_match(&b) => {
                    insert_at = Some(i + 1);
                    if job.firstmatch {
                        break;
                    }
                }
                Anchor::Before(r) if r.is_match(&b) => {
                    insert_at = Some(i);
                    if job.firstmatch {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    let terminated = |l: &str| l.ends_with('\n');
    if let Some(i) = found {
        let new = match (&job.find, job.backrefs) {
            (Find::Regexp(r), true) => {
                let cur = bare(&lines[i]);
                r.captures(&cur).map_or(line.clone(), |c| expand(&line, &c))
            }
            _ => line.clone(),
        };
        // The line keeps its own end (CRLF stays CRLF; the last line may have none).
        let end = &lines[i][bare(&lines[i]).len()..];
        let replaced = format!("{new}{end}");
        if lines[i] == replaced {
            return (lines, None, 1);
        }
        lines[i] = replaced;
        return (lines, Some("line replaced".into()), 1);
    }
    if job.backrefs {
        // Not safe to make the line without the match's groups.
        return (lines, None, 0);
    }
    let new = format!("{line}\n");
    let at = match (&job.anchor, insert_at) {
        (Anchor::Bof, _) => 0,
        (Anchor::After(_), Some(i)) => {
            if lines.get(i).is_some_and(|l| bare(l) == line) {
                return (lines, None, 0);
            }
            i
        }
        (Anchor::Before(_), Some(i)) => {
            if i > 0 && bare(&lines[i - 1]) == line {
                return (lines, None, 0);
            }
            i
        }
        // EOF, or the anchor matched nothing.
        _ => lines.len(),
    };
    if at > 0 && !terminated(&lines[at - 1]) {
        lines[at - 1].push('\n');
    }
    lines.insert(at, new);
    (lines, Some("line added".into()), 0)
}

#[async_trait]
impl Module for LineInFile {
    fn doc(&self) -> ModuleDoc {
        let spec = |name, kind, default, description| ArgSpec {
            name,
            kind,
            required: false,
            default,
            description,
        };
        ModuleDoc {
            name: "lineinfile",
            description: "Keeps one line in a text file, as Ansible's lineinfile: the line matching `regexp` (or `search_string`, or the line itself) is replaced, else the line is inserted (after `insertafter`, before `insertbefore`, or at the end); `state: absent` removes every matching line. Validate, backup, mode and diff as file_copy.",
            args: vec![
                spec("path", "path", None, "The file to edit (required; `dest` is the older name)."),
                spec("dest", "path", None, "Ansible's older name for path."),
                spec("regexp", "string", None, "A regular expression (Rust regex syntax, close to Python's) finding the line to replace or remove; the last matching line counts (the first with firstmatch)."),
                spec("search_string", "string", None, "A literal string finding the line, instead of regexp."),
                spec("line", "string", None, "The line the file must hold (state=present). With backrefs, `\\1`, `\\g<name>` take regexp's groups."),
                spec("state", "present|absent", Some("present"), "present: the line is there; absent: no line matches."),
                spec("insertafter", "string", Some("EOF"), "Where a new line goes: after the last line matching this regular expression, or `EOF`/`BOF`. If nothing matches: at the end."),
                spec("insertbefore", "string", None, "Where a new line goes: before the last line matching this regular expression, or `BOF`."),
                spec("create", "bool", Some("false"), "Create the file if it is missing (otherwise a missing file fails)."),
                spec("backrefs", "bool", Some("false"), "Expand regexp's groups in line; when regexp matches nothing the file is left as it is."),
                spec("firstmatch", "bool", Some("false"), "Use the first matching line (regexp and insertafter/insertbefore) instead of the last."),
                spec("backup", "bool", Some("false"), "Copy the old file to `path.<UTC time>~` first; the result's `backup` names it."),
                spec("validate", "string", None, "A command checking the new file before it is installed; `%s` is its temp path."),
                spec("mode", "mode", None, "Permissions, as file_copy's."),
                spec("owner", "string", None, "Owner (name or uid)."),
                spec("group", "string", None, "Group (name or gid)."),
            ],
            check_mode: true,
            example: "- name: Root may log in with a key for the copy\n  lineinfile:\n    path: /etc/ssh/sshd_config\n    regexp: '^#?PermitRootLogin '\n    line: PermitRootLogin prohibit-password\n    validate: /usr/sbin/sshd -t -f %s\n    backup: true\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        parse(args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let job = match parse(&args) {
            Ok(j) => j,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let (text, existed) = match host_read(ctx, &job.path).await? {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(t) => (t, true),
                Err(_) => {
                    return Ok(Outcome::failed(format!(
                        "{} is not UTF-8 text: lineinfile edits text files",
                        job.path
                    )))
                }
            },
            None if job.state == State::Absent => {
                return Ok(Outcome::ok()
                    .msg("file not present")
                    .with("path", job.path.as_str())
                    .with("found", 0))
            }
            None if !job.create => {
                return Ok(Outcome::failed(format!(
                    "Destination {} does not exist ! (create: true makes it)",
                    job.path
                ))
                .with("rc", 257));
            }
            None => (String::new(), false),
        };
        let (lines, msg, found) = edit(&job, &text);
        let attrs = job.opts.mode.is_some() || job.opts.owner.is_some() || job.opts.group.is_some();
        if msg.is_none() && !attrs {
            // Nothing to write: one read was all it took.
            let mut o = Outcome::ok().with("path", job.path.as_str());
            if job.state == State::Absent {
                o = o.with("found", 0);
            }
            return Ok(o);
        }
        let new: String = lines.concat();
        let mut o = install(ctx, new.as_bytes(), &job.opts).await?;
        if o.failed {
            return Ok(o);
        }
        o.msg = match (&msg, o.changed) {
            (Some(m), _) if !existed => Some(format!("{m} (file created)")),
            (Some(m), _) => Some(m.clone()),
            (None, true) => Some("ownership or permissions changed".into()),
            (None, false) => None,
        };
        if let Some(b) = o.data.get("backup_file").cloned() {
            o.data.insert("backup".into(), b);
        }
        if job.state == State::Absent {
            o = o.with("found", found as u64);
        }
        Ok(o.with("path", job.path.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testutil::{ctx, p, rt, run};
    use serde_json::json;
    use std::fs;

    fn job(args: Value) -> Job {
        parse(&args).expect("valid")
    }

    fn after(args: Value, text: &str) -> (String, bool) {
        let j = job(args);
        let (lines, msg, _) = edit(&j, text);
        (lines.concat(), msg.is_some())
    }

    #[test]
    fn replaces_the_last_match_or_appends() {
        let a = json!({"path": "/x", "regexp": "^#?PermitRootLogin ", "line": "PermitRootLogin no"});
        assert_eq!(
            after(a.clone(), "Port 22\n#PermitRootLogin yes\nX 1\n"),
            ("Port 22\nPermitRootLogin no\nX 1\n".into(), true)
        );
        assert_eq!(
            after(a.clone(), "Port 22\nPermitRootLogin no\n"),
            ("Port 22\nPermitRootLogin no\n".into(), false)
        );
        // No match: at the end, after adding the missing newline.
        assert_eq!(after(a.clone(), "Port 22"), ("Port 22\nPermitRootLogin no\n".into(), true));
        assert_eq!(after(a.clone(), ""), ("PermitRootLogin no\n".into(), true));
        // The last of several matches, or the first with firstmatch.
        let two = "A=1\nB\nA=2\n";
        assert_eq!(after(json!({"path": "/x", "regexp": "^A=", "line": "A=9"}), two).0, "A=1\nB\nA=9\n");
        assert_eq!(
            after(json!({"path": "/x", "regexp": "^A=", "line": "A=9", "firstmatch": true}), two).0,
            "A=9\nB\nA=2\n"
        );
        // CRLF lines keep their end.
        assert_eq!(after(a, "#PermitRootLogin yes\r\nX\r\n").0, "PermitRootLogin no\r\nX\r\n");
    }

    #[test]
    fn inserts_after_before_bof_and_only_once() {
        let text = "[main]\na=1\n[other]\nb=2\n";
        let a = json!({"path": "/x", "line": "new=1", "insertafter": "^\\[main\\]"});
        let (t, changed) = after(a.clone(), text);
        assert_eq!((t.as_str(), changed), ("[main]\nnew=1\na=1\n[other]\nb=2\n", true));
        assert_eq!(after(a, &t), (t.clone(), false));
        let b = json!({"path": "/x", "line": "new=1", "insertbefore": "^\\[other\\]"});
        let (t, _) = after(b.clone(), text);
        assert_eq!(t, "[main]\na=1\nnew=1\n[other]\nb=2\n");
        assert_eq!(after(b, &t), (t.clone(), false));
        let bof = json!({"path": "/x", "line": "# managed", "insertbefore": "BOF"});
        assert_eq!(after(bof.clone(), text).0, format!("# managed\n{text}"));
        assert!(!after(bof, &format!("# managed\n{text}")).1, "already there");
        // An anchor that matches nothing: at the end.
        let c = json!({"path": "/x", "line": "z", "insertafter": "^nothing"});
        assert_eq!(after(c, text).0, format!("{text}z\n"));
    }

    #[test]
    fn absent_backrefs_and_search_string() {
        let text = "keep\nListen 80\nkeep2\nListen 8080\n";
        let j = job(json!({"path": "/x", "regexp": "^Listen ", "state": "absent"}));
        let (lines, msg, found) = edit(&j, text);
        assert_eq!((lines.concat().as_str(), found), ("keep\nkeep2\n", 2));
        assert_eq!(msg.as_deref(), Some("2 line(s) removed"));
        assert_eq!(after(json!({"path": "/x", "line": "keep", "state": "absent"}), text).0, "Listen 80\nkeep2\nListen 8080\n");
        let br = json!({"path": "/x", "regexp": "^(Listen) (\\d+)$", "line": "\\1 127.0.0.1:\\2", "backrefs": true});
        assert_eq!(after(br.clone(), text).0, "keep\nListen 80\nkeep2\nListen 127.0.0.1:8080\n");
        // backrefs with no match leaves the file alone.
        assert_eq!(after(br, "nothing\n"), ("nothing\n".into(), false));
        let named = json!({"path": "/x", "regexp": "^(?P<k>\\w+)=(?P<v>.*)$", "line": "\\g<k> = \\g<v>", "backrefs": true});
        assert_eq!(after(named, "a=b\n").0, "a = b\n");
        let s = json!({"path": "/x", "search_string": "Listen 80", "line": "Listen 81"});
        // A substring: "Listen 8080" holds it too, and the last match counts.
        assert_eq!(after(s, text).0, "keep\nListen 80\nkeep2\nListen 81\n");
    }

    #[test]
    fn bad_arguments_are_refused_with_reasons() {
        for (args, want) in [
            (json!({"regexp": "x", "line": "y"}), "missing required argument 'path'"),
            (json!({"path": "/x", "regexp": "("}), "regexp is not a valid regular expression"),
            (json!({"path": "/x", "regexp": "a", "search_string": "b", "line": "c"}), "exclude each other"),
            (json!({"path": "/x", "line": "a", "insertafter": "b", "insertbefore": "c"}), "exclude each other"),
            (json!({"path": "/x", "regexp": "a"}), "needs 'line'"),
            (json!({"path": "/x", "line": "a\nb"}), "one line"),
            (json!({"path": "/x", "line": "a", "backrefs": true}), "backrefs needs regexp"),
            (json!({"path": "/x", "line": "a", "validate": "true"}), "must contain %s"),
        ] {
            let e = parse(&args).expect_err(want);
            assert!(e.msg.contains(want), "{want}: {}", e.msg);
        }
    }

    #[test]
    fn runs_twice_with_check_diff_backup_validate_and_create() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = p(dir.path(), "sshd_config");
        fs::write(&path, "Port 22\n#PermitRootLogin yes\n").expect("write");
        let args = json!({"path": path, "regexp": "^#?PermitRootLogin", "line": "PermitRootLogin no", "backup": true});
        let rt = rt();
        let mut c = ctx(dir.path());
        c.check = true;
        c.diff = true;
        let o = rt.block_on(run(&c, "lineinfile", args.clone()));
        assert!(o.changed && !o.failed, "{o:?}");
        assert!(o.diff.as_ref().is_some_and(|d| d.after.contains("PermitRootLogin no")));
        assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some("Port 22\n#PermitRootLogin yes\n"));
        let c = ctx(dir.path());
        let o = rt.block_on(run(&c, "lineinfile", args.clone()));
        assert!(o.changed, "{o:?}");
        assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some("Port 22\nPermitRootLogin no\n"));
        let backup = o.data["backup"].as_str().expect("backup named").to_string();
        assert_eq!(fs::read_to_string(backup).ok().as_deref(), Some("Port 22\n#PermitRootLogin yes\n"));
        let o = rt.block_on(run(&c, "lineinfile", args));
        assert!(!o.changed && !o.failed, "second run: {o:?}");

        // validate refuses: nothing installed.
        let o = rt.block_on(run(&c, "lineinfile", json!({"path": path, "line": "Bad line", "validate": "! grep -q Bad %s"})));
        assert!(o.failed, "{o:?}");
        assert!(!fs::read_to_string(&path).unwrap_or_default().contains("Bad"));

        // A missing file fails unless create.
        let missing = p(dir.path(), "new.conf");
        let o = rt.block_on(run(&c, "lineinfile", json!({"path": missing, "line": "a"})));
        assert!(o.failed && o.msg.unwrap_or_default().contains("does not exist"));
        let args = json!({"path": missing, "line": "a", "create": true, "mode": "0640"});
        let o = rt.block_on(run(&c, "lineinfile", args.clone()));
        assert!(o.changed && !o.failed, "{o:?}");
        assert_eq!(fs::read_to_string(&missing).ok().as_deref(), Some("a\n"));
        assert!(!rt.block_on(run(&c, "lineinfile", args)).changed);
        // Absent on a missing file: ok.
        let o = rt.block_on(run(&c, "lineinfile", json!({"path": p(dir.path(), "nope"), "line": "a", "state": "absent"})));
        assert!(!o.changed && !o.failed, "{o:?}");
    }
}
