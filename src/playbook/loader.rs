//! Reads playbook files into [`Playbook`], checking everything that can be
//! checked without hosts.

use super::{Cond, Origin, Play, Playbook, Strategy, Task};
use crate::error::{Error, Pos, SourceError};
use crate::expr;
use crate::modules;
use crate::suggest::did_you_mean;
use crate::template;
use crate::yaml::{self, Node, Yaml};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What the loader needs from the command line.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-e` variables: used to render `vars_files` names.
    pub extra_vars: Map<String, Value>,
}

const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "vars",
    "vars_files",
    "tasks",
    "pre_tasks",
    "post_tasks",
    "handlers",
    "become",
    "become_user",
    "tags",
    "id",
    "needs",
    "strategy",
    "any_errors_fatal",
    "gather_facts",
    "connection",
    "remote_user",
    "become_method",
];

const TASK_KEYS: &[&str] = &[
    "name",
    "id",
    "needs",
    "when",
    "loop",
    "with_items",
    "with_list",
    "loop_control",
    "register",
    "notify",
    "listen",
    "tags",
    "become",
    "become_user",
    "ignore_errors",
    "changed_when",
    "failed_when",
    "retries",
    "until",
    "delay",
    "delegate_to",
    "run_once",
    "no_log",
    "timeout",
    "check_mode",
    "vars",
    "args",
    "any_errors_fatal",
];

const INCLUDE_KEYS: &[&str] = &["include_tasks", "import_tasks"];
const MAX_INCLUDE_DEPTH: usize = 32;

/// Loads the playbooks named on the command line, in order.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<Playbook, Error> {
    let mut loader = Loader {
        opts,
        plays: Vec::new(),
        stack: Vec::new(),
        top: 0,
    };
    for (i, path) in paths.iter().enumerate() {
        loader.top = i;
        loader.playbook_file(path)?;
    }
    let book = Playbook {
        paths: paths.to_vec(),
        plays: loader.plays,
    };
    check_references(&book)?;
    Ok(book)
}

/// Loads one playbook from its text, as if read from `path` (includes and
/// imports are found beside it). For tests and the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn load_str(path: &Path, text: &str, opts: &LoadOptions) -> Result<Playbook, Error> {
    let mut loader = Loader {
        opts,
        plays: Vec::new(),
        stack: Vec::new(),
        top: 0,
    };
    loader.playbook_text(path, text)?;
    let book = Playbook {
        paths: vec![path.to_path_buf()],
        plays: loader.plays,
    };
    check_references(&book)?;
    Ok(book)
}

struct Loader<'a> {
    opts: &'a LoadOptions,
    plays: Vec<Play>,
    /// Files being read, to catch an include or import of itself.
    stack: Vec<PathBuf>,
    /// The index of the command-line playbook being read.
    top: usize,
}

/// The file a node came from, for errors.
struct Src<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> Error {
        SourceError::with_source(self.file, self.text, pos, msg).into()
    }
    fn err_help(&self, pos: Pos, msg: impl Into<String>, help: Option<String>) -> Error {
        SourceError::with_source(self.file, self.text, pos, msg)
            .help(help)
            .into()
    }
    fn origin(&self, pos: Pos) -> Origin {
        Origin {
            file: self.file.to_path_buf(),
            pos,
        }
    }
}

fn read(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Parse(format!("{}: cannot read: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        // Point at the first byte that is not UTF-8.
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let before = String::from_utf8_lossy(good);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let msg = "this file is not UTF-8 text (save it as UTF-8)";
        SourceError::with_source(path, &text, Pos { line, col }, msg).into()
    })
}

/// `dir/rel`, or `rel` as given when it is absolute.
fn resolve(dir: &Path, rel: &str) -> PathBuf {
    let p = Path::new(rel);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Loader<'_> {
    fn enter(&mut self, path: &Path, src: &Src, pos: Pos) -> Result<(), Error> {
        let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&canon) || self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(src.err(
                pos,
                format!(
                    "{} includes itself (directly or through other files)",
                    path.display()
                ),
            ));
        }
        self.stack.push(canon);
        Ok(())
    }

    fn playbook_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = read(path)?;
        self.playbook_text(path, &text)
    }

    fn playbook_text(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        let root = yaml::parse(text, path)?;
        let src = Src { file: path, text };
        self.stack
            .push(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()));
        let entries = match &root.value {
            Yaml::Seq(items) => items,
            Yaml::Null => return Err(src.err(root.pos, "empty playbook: expected a list of plays")),
            _ => {
                return Err(src.err(
                    root.pos,
                    format!("a playbook is a list of plays, found {}", root.kind()),
                ));
            }
        };
        for entry in entries {
            let Some(map) = entry.as_map() else {
                return Err(src.err(
                    entry.pos,
                    format!(
                        "a play is a mapping (name:, hosts:, tasks: …), found {}",
                        entry.kind()
                    ),
                ));
            };
            if let Some(target) = entry.get("import_playbook") {
                // `vars` and `tags` given here apply to every imported play.
                let (mut import_vars, mut import_tags) = (Map::new(), Vec::new());
                for (k, v) in map {
                    let key = k.key_string();
                    match key.as_str() {
                        "import_playbook" | "name" => {}
                        "vars" => import_vars = mapping(v, &src, "vars")?,
                        "tags" => import_tags = tags(v, &src)?,
                        _ => {
                            let help =
                                did_you_mean(&key, ["import_playbook", "name", "vars", "tags"]);
                            let msg = format!("unknown key '{key}' beside import_playbook");
                            return Err(src.err_help(k.pos, msg, help));
                        }
                    }
                }
                let Some(rel) = target.as_str() else {
                    return Err(src.err(target.pos, "import_playbook takes a file name"));
                };
                let file = resolve(&dir_of(path), rel);
                if !file.is_file() {
                    return Err(src.err(
                        target.pos,
                        format!("import_playbook: no such file: {}", file.display()),
                    ));
                }
                self.enter(&file, &src, target.pos)?;
                let first = self.plays.len();
                self.playbook_file(&file)?;
                self.stack.pop();
                for play in &mut self.plays[first..] {
                    play.tags.extend(import_tags.iter().cloned());
                    for (k, v) in &import_vars {
                        play.vars.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                continue;
            }
            let play = self.play(entry, &src)?;
            self.plays.push(play);
        }
        self.stack.pop();
        Ok(())
    }

    fn play(&mut self, node: &Node, src: &Src) -> Result<Play, Error> {
        let mut play = Play {
            origin: src.origin(node.pos),
            dir: dir_of(src.file),
            top: self.top,
            ..Default::default()
        };
        let mut hosts_seen = false;
        let (mut pre, mut main, mut post) = (Vec::new(), Vec::new(), Vec::new());
        let mut handlers_node = None;
        let mut vars_files_node = None;
        for (k, v) in node.as_map().unwrap_or_default() {
            let key = k.key_string();
            match key.as_str() {
                "name" => {
                    check_templates(v, src)?;
                    play.name = scalar(v, src, "name")?
                }
                "hosts" => {
                    hosts_seen = true;
                    check_templates(v, src)?;
                    play.hosts = match &v.value {
                        Yaml::Seq(items) => {
                            let mut parts = Vec::new();
                            for i in items {
                                parts.push(scalar(i, src, "hosts")?);
                            }
                            parts.join(",")
                        }
                        _ => scalar(v, src, "hosts")?,
                    }
                }
                "vars" => play.vars = mapping(v, src, "vars")?,
                "vars_files" => vars_files_node = Some(v),
                "tasks" => main = self.tasks(v, src, &Inherit::default(), false)?,
                "pre_tasks" => pre = self.tasks(v, src, &Inherit::default(), false)?,
                "post_tasks" => post = self.tasks(v, src, &Inherit::default(), false)?,
                "handlers" => handlers_node = Some(v),
                "become" => play.become_ = Some(boolean(v, src, "become")?),
                "become_user" => play.become_user = Some(scalar(v, src, "become_user")?),
                "tags" => play.tags = tags(v, src)?,
                "id" => play.id = Some(identifier(v, src, "id")?),
                "needs" => {
                    play.needs = needs(v, src)?;
                    play.needs_given = true;
                }
                "strategy" => {
                    play.strategy = match scalar(v, src, "strategy")?.as_str() {
                        "linear" => Strategy::Linear,
                        "graph" => Strategy::Graph,
                        other => {
                            return Err(src.err_help(
                                v.pos,
                                format!("unknown strategy '{other}': expected 'linear' or 'graph'"),
                                did_you_mean(other, ["linear", "graph"]),
                            ))
                        }
                    }
                }
                "any_errors_fatal" => play.any_errors_fatal = boolean(v, src, "any_errors_fatal")?,
                "gather_facts" => {
                    boolean(v, src, "gather_facts")?;
                }
                "connection" => {
                    let c = scalar(v, src, "connection")?;
                    if c != "local" && c != "ssh" {
                        let help = did_you_mean(&c, ["local", "ssh"]);
                        return Err(src.err_help(
                            v.pos,
                            format!("unknown connection '{c}': expected local or ssh"),
                            help,
                        ));
                    }
                    play.connection = Some(c);
                }
                "remote_user" => play.remote_user = Some(scalar(v, src, "remote_user")?),
                "become_method" => {
                    let m = scalar(v, src, "become_method")?;
                    if m != "sudo" {
                        return Err(src.err(v.pos, format!("become_method '{m}' is not supported: mailrun becomes through sudo")));
                    }
                }
                _ => {
                    let help = if modules::get(&key).is_some() {
                        Some(format!(
                            "'{key}' is a module: tasks go in a list under `tasks:`"
                        ))
                    } else if key == "roles" {
                        Some("roles are not supported; use include_tasks".into())
                    } else {
                        did_you_mean(&key, PLAY_KEYS)
                    };
                    return Err(src.err_help(k.pos, format!("unknown play key '{key}'"), help));
                }
            }
        }
        if !hosts_seen {
            return Err(src.err(
                node.pos,
                "a play needs `hosts:` (a host pattern such as `all`)",
            ));
        }
        if play.name.is_empty() {
            play.name = play.hosts.clone();
        }
        play.tasks = pre.into_iter().chain(main).chain(post).collect();
        // After `vars:`, wherever it was written: their names may use play vars.
        if let Some(v) = vars_files_node {
            self.vars_files(&mut play, v, src)?;
        }
        if let Some(h) = handlers_node {
            play.handlers = self.tasks(h, src, &Inherit::default(), true)?;
        }
        for (i, t) in play.tasks.iter_mut().enumerate() {
            t.index = i;
        }
        for (i, t) in play.handlers.iter_mut().enumerate() {
            t.index = i;
            t.handler = true;
        }
        // Handlers of a play must exist for every notify.
        for task in play.tasks.iter().chain(&play.handlers) {
            for (i, n) in task.notify.iter().enumerate() {
                let found = play
                    .handlers
                    .iter()
                    .any(|h| &h.name == n || h.listen.contains(n));
                if !found {
                    let names: Vec<&str> = play.handlers.iter().map(|h| h.name.as_str()).collect();
                    let at = task.notify_at.get(i).unwrap_or(&task.origin);
                    let e = SourceError::new(
                        &at.file,
                        at.pos,
                        format!("notify: no handler named '{n}' in this play"),
                    );
                    return Err(e.help(did_you_mean(n, names)).into());
                }
            }
        }
        // `hostvars`, `groups` and the play's hosts are built only for tasks
        // that may read them: through their own text, their variables and
        // conditions (also a block's), or a play variable. Copying them for
        // every task on every host costs hosts² on a big fleet.
        let play_text = format!("{:?}{:?}", play.vars, play.vars_files);
        let play_hostvars = play_text.contains("hostvars");
        let play_world = mentions_play_world(&play_text);
        for t in play.tasks.iter_mut().chain(play.handlers.iter_mut()) {
            let mut text = format!("{}{:?}", t.source, t.vars);
            if let Some(Cond::All(e)) = &t.when {
                for e in e {
                    text.push_str(&e.src);
                }
            }
            t.mentions_hostvars |= play_hostvars || text.contains("hostvars");
            t.mentions_groups |= play_world || mentions_play_world(&text);
        }
        // Task names may use the play's variables and extra vars (handler
        // names stay as written: notify refers to them).
        let mut ctx = play.vars.clone();
        ctx.extend(play.vars_files.clone());
        ctx.extend(self.opts.extra_vars.clone());
        let ctx = Value::Object(ctx);
        for t in play.tasks.iter_mut() {
            if t.named && template::has_template(&t.name) {
                if let Ok(name) = template::render_str(&t.name, &ctx) {
                    t.name = name;
                }
            }
        }
        Ok(play)
    }

    /// Reads `vars_files` (names may use play and extra vars) into the play.
    fn vars_files(&self, play: &mut Play, v: &Node, src: &Src) -> Result<(), Error> {
        for (name, pos) in string_list(v, src, "vars_files")? {
            let name = if template::has_template(&name) {
                let ctx = Value::Object(merged(&play.vars, &self.opts.extra_vars));
                template::render_str(&name, &ctx)
                    .map_err(|e| src.err(pos, format!("vars_files: {e}")))?
            } else {
                name
            };
            let file = resolve(&play.dir, &name);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                src.err(
                    pos,
                    format!("vars_files: cannot read {}: {e}", file.display()),
                )
            })?;
            let vnode = yaml::parse(&text, &file)?;
            let vsrc = Src {
                file: &file,
                text: &text,
            };
            for (key, value) in mapping(&vnode, &vsrc, "a vars file")? {
                play.vars_files.insert(key, value);
            }
        }
        Ok(())
    }

    fn tasks(
        &mut self,
        node: &Node,
        src: &Src,
        inherit: &Inherit,
        handlers: bool,
    ) -> Result<Vec<Task>, Error> {
        let items = match &node.value {
            Yaml::Null => return Ok(Vec::new()),
            Yaml::Seq(items) => items,
            _ => {
                return Err(src.err(
                    node.pos,
                    format!("expected a list of tasks, found {}", node.kind()),
                ))
            }
        };
        let mut out = Vec::new();
        for item in items {
            let Some(map) = item.as_map() else {
                return Err(src.err(
                    item.pos,
                    format!(
                        "a task is a mapping (name:, a module, …), found {}",
                        item.kind()
                    ),
                ));
            };
            if let Some((_, v)) = map.iter().find(|(k, _)| k.key_string() == "block") {
                self.block(item, v, src, inherit, handlers, &mut out)?;
                continue;
            }
            if let Some((k, v)) = map
                .iter()
                .find(|(k, _)| INCLUDE_KEYS.contains(&short_name(&k.key_string())))
            {
                self.include(item, k, v, src, inherit, handlers, &mut out)?;
                continue;
            }
            let mut task = self.task(item, src, handlers)?;
            inherit.apply(&mut task);
            out.push(task);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn include(
        &mut self,
        item: &Node,
        key: &Node,
        value: &Node,
        src: &Src,
        inherit: &Inherit,
        handlers: bool,
        out: &mut Vec<Task>,
    ) -> Result<(), Error> {
        let kw = key.key_string();
        let mut inner = inherit.clone();
        for (k, v) in item.as_map().unwrap_or_default() {
            match k.key_string().as_str() {
                "name" => {}
                "when" => match cond(v, src)? {
                    Cond::All(mut exprs) => inner.when.append(&mut exprs),
                    Cond::Const(true) => {}
                    Cond::Const(false) => return Ok(()),
                },
                "tags" => inner.tags.extend(tags(v, src)?),
                "vars" => inner.vars.extend(mapping(v, src, "vars")?),
                k2 if k2 == kw => {}
                other => {
                    return Err(src.err_help(
                        k.pos,
                        format!("unknown key '{other}' beside {kw}"),
                        did_you_mean(other, ["name", "when", "tags", "vars"]),
                    ))
                }
            }
        }
        let file = match &value.value {
            Yaml::Str(s) => s.clone(),
            Yaml::Map(_) => match value.get("file") {
                Some(f) => scalar(f, src, "file")?,
                None => return Err(src.err(value.pos, format!("{kw} needs a file name (`file:`)"))),
            },
            _ => return Err(src.err(value.pos, format!("{kw} takes a file name"))),
        };
        if template::has_template(&file) {
            return Err(src.err(
                value.pos,
                format!("{kw}: a templated file name is not supported; name the file"),
            ));
        }
        let path = resolve(&dir_of(src.file), &file);
        if !path.is_file() {
            return Err(src.err(value.pos, format!("{kw}: no such file: {}", path.display())));
        }
        self.enter(&path, src, value.pos)?;
        let text = read(&path)?;
        let root = yaml::parse(&text, &path)?;
        let isrc = Src {
            file: &path,
            text: &text,
        };
        let tasks = self.tasks(&root, &isrc, &inner, handlers)?;
        self.stack.pop();
        out.extend(tasks);
        Ok(())
    }

    /// `block:` groups tasks that share `when`, `tags`, `vars`, `become`,
    /// `ignore_errors` and `no_log`; they are flattened in place. `rescue` and
    /// `always` are not supported (yet): refused with their position.
    fn block(
        &mut self,
        item: &Node,
        body: &Node,
        src: &Src,
        inherit: &Inherit,
        handlers: bool,
        out: &mut Vec<Task>,
    ) -> Result<(), Error> {
        const BLOCK_KEYS: &[&str] = &[
            "block",
            "name",
            "when",
            "tags",
            "vars",
            "become",
            "become_user",
            "ignore_errors",
            "no_log",
        ];
        let mut inner = inherit.clone();
        for (k, v) in item.as_map().unwrap_or_default() {
            let key = k.key_string();
            match key.as_str() {
                "block" | "name" => {}
                "when" => match cond(v, src)? {
                    Cond::All(mut exprs) => inner.when.append(&mut exprs),
                    Cond::Const(true) => {}
                    Cond::Const(false) => return Ok(()),
                },
                "tags" => inner.tags.extend(tags(v, src)?),
                "vars" => inner.vars.extend(mapping(v, src, "vars")?),
                "become" => inner.become_ = Some(boolean(v, src, "become")?),
                "become_user" => inner.become_user = Some(scalar(v, src, "become_user")?),
                "ignore_errors" => inner.ignore_errors |= boolean(v, src, "ignore_errors")?,
                "no_log" => inner.no_log |= boolean(v, src, "no_log")?,
                "rescue" | "always" => {
                    return Err(src.err(
                        k.pos,
                        format!("'{key}' is not supported yet: use ignore_errors, or a `when:` on a registered result"),
                    ))
                }
                _ => {
                    let help = did_you_mean(&key, BLOCK_KEYS);
                    return Err(src.err_help(k.pos, format!("unknown block key '{key}'"), help));
                }
            }
        }
        if body.as_seq().is_none() {
            return Err(src.err(
                body.pos,
                format!("block takes a list of tasks, found {}", body.kind()),
            ));
        }
        out.extend(self.tasks(body, src, &inner, handlers)?);
        Ok(())
    }

    fn task(&mut self, node: &Node, src: &Src, handler: bool) -> Result<Task, Error> {
        let mut t = Task {
            origin: src.origin(node.pos),
            loop_var: "item".into(),
            delay: 5.0,
            ..Default::default()
        };
        let mut module: Option<(&Node, &Node)> = None;
        let mut unknown: Option<(&Node, String)> = None;
        let mut extra_args: Option<&Node> = None;
        for (k, v) in node.as_map().unwrap_or_default() {
            let key = k.key_string();
            match key.as_str() {
                "name" => {
                    check_templates(v, src)?;
                    t.name = scalar(v, src, "name")?;
                    t.named = true;
                }
                "id" => t.id = Some(identifier(v, src, "id")?),
                "needs" => t.needs = needs(v, src)?,
                "when" => t.when = Some(cond(v, src)?),
                "loop" | "with_items" | "with_list" => {
                    if t.loop_.is_some() {
                        return Err(src.err(k.pos, "a task has one loop"));
                    }
                    match &v.value {
                        Yaml::Seq(_) => {
                            check_templates(v, src)?;
                            t.loop_ = Some(v.to_json())
                        }
                        Yaml::Str(s) if template::has_template(s) => {
                            check_templates(v, src)?;
                            t.loop_ = Some(v.to_json())
                        }
                        _ => {
                            return Err(src.err(
                                v.pos,
                                format!(
                                    "{key} takes a list or a template giving one, found {}",
                                    v.kind()
                                ),
                            ))
                        }
                    }
                }
                "loop_control" => {
                    for (lk, lv) in v
                        .as_map()
                        .ok_or_else(|| src.err(v.pos, "loop_control is a mapping"))?
                    {
                        match lk.key_string().as_str() {
                            "label" => {
                                check_templates(lv, src)?;
                                t.loop_label = Some(scalar(lv, src, "label")?)
                            }
                            "loop_var" => t.loop_var = var_name(lv, src, "loop_var")?,
                            other => {
                                return Err(src.err_help(
                                    lk.pos,
                                    format!("unknown loop_control key '{other}'"),
                                    did_you_mean(other, ["label", "loop_var"]),
                                ))
                            }
                        }
                    }
                }
                "register" => t.register = Some(var_name(v, src, "register")?),
                "notify" => {
                    let names = string_list(v, src, "notify")?;
                    t.notify_at = names.iter().map(|(_, p)| src.origin(*p)).collect();
                    t.notify = names.into_iter().map(|(s, _)| s).collect()
                }
                "listen" if handler => {
                    t.listen = string_list(v, src, "listen")?
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                }
                "tags" => t.tags = tags(v, src)?,
                "become" => t.become_ = Some(boolean(v, src, "become")?),
                "become_user" => t.become_user = Some(scalar(v, src, "become_user")?),
                "ignore_errors" => t.ignore_errors = boolean(v, src, "ignore_errors")?,
                "changed_when" => t.changed_when = Some(cond(v, src)?),
                "failed_when" => t.failed_when = Some(cond(v, src)?),
                "until" => t.until = Some(cond(v, src)?),
                "retries" => {
                    let n = uint(v, src, "retries")?;
                    t.retries = Some(
                        u32::try_from(n)
                            .ok()
                            .filter(|n| *n <= 10_000)
                            .ok_or_else(|| src.err(v.pos, "retries: at most 10000"))?,
                    )
                }
                "delay" => {
                    t.delay = match &v.value {
                        Yaml::Int(i) if (0..=86_400).contains(i) => *i as f64,
                        Yaml::Float(f) if (0.0..=86_400.0).contains(f) => *f,
                        _ => {
                            return Err(
                                src.err(v.pos, "delay takes a number of seconds, from 0 to 86400")
                            )
                        }
                    }
                }
                "delegate_to" => {
                    check_templates(v, src)?;
                    t.delegate_to = Some(scalar(v, src, "delegate_to")?)
                }
                "run_once" => t.run_once = boolean(v, src, "run_once")?,
                "no_log" => t.no_log = boolean(v, src, "no_log")?,
                "timeout" => t.timeout = Some(uint(v, src, "timeout")?),
                "check_mode" => t.check_mode = Some(boolean(v, src, "check_mode")?),
                "vars" => t.vars = mapping(v, src, "vars")?,
                "args" => extra_args = Some(v),
                "any_errors_fatal" => t.any_errors_fatal = boolean(v, src, "any_errors_fatal")?,
                _ if modules::get(short_name(&key)).is_some() => {
                    if let Some((first, _)) = module {
                        return Err(src.err(
                            k.pos,
                            format!(
                                "a task calls one module: found '{}' and '{key}'",
                                first.key_string()
                            ),
                        ));
                    }
                    module = Some((k, v));
                }
                "rescue" | "always" => {
                    return Err(src.err(
                        k.pos,
                        format!("'{key}' belongs to a block (`block:` with its tasks)"),
                    ));
                }
                _ => {
                    // Reported after the loop, when the task's module is known.
                    unknown.get_or_insert((k, key));
                }
            }
        }
        if let Some((k, key)) = unknown {
            let what = if handler { "handler" } else { "task" };
            // `msg:` under `debug:` but not indented: say so.
            let module_arg = module.and_then(|(mk, mv)| {
                let name = short_name(&mk.key_string()).to_string();
                let takes = modules::get(&name)?
                    .doc()
                    .args
                    .iter()
                    .any(|a| a.name == key);
                takes.then(|| {
                    format!(
                        "'{key}' is an argument of {name}: indent it under `{}:`{}",
                        mk.key_string(),
                        if mv.is_null() { "" } else { " with the others" }
                    )
                })
            });
            let help = module_arg
                .or_else(|| crate::plugin::not_taken(short_name(&key)))
                .or_else(|| {
                    let mut candidates: Vec<&str> = TASK_KEYS.to_vec();
                    candidates.extend(modules::names());
                    did_you_mean(&key, candidates)
                });
            return Err(src.err_help(k.pos, format!("unknown module or {what} key '{key}'"), help));
        }
        let Some((mkey, mval)) = module else {
            let names = modules::names().join(", ");
            return Err(src.err(
                node.pos,
                format!("this task calls no module: add one of {names}"),
            ));
        };
        t.module = short_name(&mkey.key_string()).to_string();
        let Some(m) = modules::get(&t.module) else {
            return Err(src.err(mkey.pos, format!("unknown module '{}'", t.module)));
        };
        if let Some(e) = m.unusable() {
            return Err(src.err_help(mkey.pos, e.msg, e.help));
        }
        let doc = m.doc();
        // An empty value has no place of its own: point at the module's name.
        let mval_pos = if mval.is_null() { mkey.pos } else { mval.pos };
        let mut args = match &mval.value {
            Yaml::Null => Map::new(),
            Yaml::Map(_) => mval.to_json().as_object().cloned().unwrap_or_default(),
            Yaml::Str(s) => modules::args::parse_kv_module(&t.module, &doc, s)
                .map_err(|e| src.err(mval.pos, format!("{}: {e}", t.module)))?,
            _ => match (doc.free_form, mval.scalar_string()) {
                (Some(ff), Some(s)) => Map::from_iter([(ff.to_string(), Value::String(s))]),
                _ => {
                    return Err(src.err(
                        mval.pos,
                        format!(
                            "{}: arguments are a mapping or `k=v` text, found {}",
                            t.module,
                            mval.kind()
                        ),
                    ))
                }
            },
        };
        if let Some(extra) = extra_args {
            for (k, v) in mapping(extra, src, "args")? {
                args.entry(k).or_insert(v);
            }
        }
        // An argument error points at the argument's key (in the module's
        // mapping or in `args:`), else at the module's value.
        let refuse = |e: crate::module::ArgError| {
            let key_pos = |n: &Node| {
                let a = e.arg.as_deref()?;
                n.as_map()?
                    .iter()
                    .find(|(k, _)| k.key_string() == a)
                    .map(|(k, _)| k.pos)
            };
            // In `k=v` text: the word itself.
            let word_pos = || {
                let a = e.arg.as_deref()?;
                let text = mval.as_str()?;
                let at = text
                    .match_indices(&format!("{a}="))
                    .map(|(i, _)| i)
                    .find(|&i| i == 0 || text[..i].ends_with(|c: char| c.is_whitespace()))?;
                Some(locate(src, mval, text, at))
            };
            let pos = key_pos(mval)
                .or_else(|| extra_args.and_then(key_pos))
                .or_else(word_pos)
                .unwrap_or(mval_pos);
            src.err_help(pos, e.msg, e.help)
        };
        m.check_args(&args).map_err(refuse)?;
        check_templates(mval, src)?;
        // Arguments without templates can be checked in full now (types,
        // exclusive arguments, a module's own rules such as assert's `that`).
        let value = Value::Object(args.clone());
        if !mentions_template(&value) {
            m.parse(&value).map_err(refuse)?;
        }
        check_local_files(&t.module, &args, mval, src)?;
        // As Ansible's: one pause for the play, not one per host.
        if t.module == "pause" {
            t.run_once = true;
        }
        if !t.named {
            t.name = t.module.clone();
        }
        t.args = args;
        let raw = node.to_json().to_string();
        t.mentions_hostvars = raw.contains("hostvars");
        t.mentions_groups = mentions_play_world(&raw);
        t.source = raw;
        Ok(t)
    }
}

/// What an `include_tasks` passes down to the tasks it includes.
#[derive(Debug, Clone, Default)]
struct Inherit {
    when: Vec<expr::Expr>,
    tags: Vec<String>,
    vars: Map<String, Value>,
    become_: Option<bool>,
    become_user: Option<String>,
    ignore_errors: bool,
    no_log: bool,
}

impl Inherit {
    fn apply(&self, t: &mut Task) {
        if !self.when.is_empty() {
            t.when = Some(match t.when.take() {
                Some(Cond::Const(false)) => Cond::Const(false),
                own => {
                    let mut all = self.when.clone();
                    if let Some(Cond::All(mut own)) = own {
                        all.append(&mut own);
                    }
                    Cond::All(all)
                }
            });
        }
        for tag in &self.tags {
            if !t.tags.contains(tag) {
                t.tags.push(tag.clone());
            }
        }
        for (k, v) in &self.vars {
            t.vars.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if t.become_.is_none() {
            t.become_ = self.become_;
        }
        if t.become_user.is_none() {
            t.become_user.clone_from(&self.become_user);
        }
        t.ignore_errors |= self.ignore_errors;
        t.no_log |= self.no_log;
    }
}

/// A module or keyword without Ansible's collection prefix
/// (`ansible.builtin.shell` → `shell`).
fn short_name(name: &str) -> &str {
    name.strip_prefix("ansible.builtin.")
        .or_else(|| name.strip_prefix("ansible.legacy."))
        .or_else(|| name.strip_prefix("ansible.posix."))
        .unwrap_or(name)
}

fn merged(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut m = a.clone();
    m.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}

fn scalar(v: &Node, src: &Src, what: &str) -> Result<String, Error> {
    v.scalar_string()
        .filter(|_| !v.is_null())
        .ok_or_else(|| src.err(v.pos, format!("{what} takes a string, found {}", v.kind())))
}

fn identifier(v: &Node, src: &Src, what: &str) -> Result<String, Error> {
    let s = scalar(v, src, what)?;
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(src.err(v.pos, format!("{what} '{s}' is not a valid name (letters, digits, _ and -, not starting with a digit)")));
    }
    Ok(s)
}

/// A variable name: usable in templates and expressions, so no `-`.
fn var_name(v: &Node, src: &Src, what: &str) -> Result<String, Error> {
    let s = scalar(v, src, what)?;
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        let hint = s.replace('-', "_");
        let help = (hint != s).then(|| format!("did you mean '{hint}'?"));
        let msg = format!("{what} '{s}' is not a valid variable name (letters, digits and _, not starting with a digit)");
        return Err(src.err_help(v.pos, msg, help));
    }
    Ok(s)
}

fn boolean(v: &Node, src: &Src, what: &str) -> Result<bool, Error> {
    match &v.value {
        Yaml::Bool(b) => Ok(*b),
        Yaml::Str(s) => match s.to_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            _ => Err(src.err(v.pos, format!("{what} takes true or false, found '{s}'"))),
        },
        Yaml::Int(1) => Ok(true),
        Yaml::Int(0) => Ok(false),
        _ => Err(src.err(
            v.pos,
            format!("{what} takes true or false, found {}", v.kind()),
        )),
    }
}

fn uint(v: &Node, src: &Src, what: &str) -> Result<u64, Error> {
    match &v.value {
        Yaml::Int(i) if *i >= 0 => Ok(*i as u64),
        Yaml::Str(s) if s.parse::<u64>().is_ok() => Ok(s.parse().unwrap_or(0)),
        _ => {
            let found = v
                .scalar_string()
                .filter(|_| !v.is_null())
                .map_or_else(|| v.kind().to_string(), |s| format!("'{s}'"));
            Err(src.err(
                v.pos,
                format!("{what} takes a whole number (0 or more), found {found}"),
            ))
        }
    }
}

/// A mapping of variables (or arguments); its template strings are checked.
fn mapping(v: &Node, src: &Src, what: &str) -> Result<Map<String, Value>, Error> {
    match &v.value {
        Yaml::Null => Ok(Map::new()),
        Yaml::Map(_) => {
            check_templates(v, src)?;
            Ok(v.to_json().as_object().cloned().unwrap_or_default())
        }
        _ => Err(src.err(
            v.pos,
            format!("{what} is a mapping of names to values, found {}", v.kind()),
        )),
    }
}

fn string_list(v: &Node, src: &Src, what: &str) -> Result<Vec<(String, Pos)>, Error> {
    match &v.value {
        Yaml::Seq(items) => items
            .iter()
            .map(|i| Ok((scalar(i, src, what)?, i.pos)))
            .collect(),
        _ => Ok(vec![(scalar(v, src, what)?, v.pos)]),
    }
}

fn tags(v: &Node, src: &Src) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for (s, _) in string_list(v, src, "tags")? {
        out.extend(
            s.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        );
    }
    Ok(out)
}

fn needs(v: &Node, src: &Src) -> Result<Vec<(String, Origin)>, Error> {
    string_list(v, src, "needs").map(|l| l.into_iter().map(|(s, p)| (s, src.origin(p))).collect())
}

/// A `when`-style condition: a boolean, an expression, or a list of them.
fn cond(v: &Node, src: &Src) -> Result<Cond, Error> {
    match &v.value {
        Yaml::Bool(b) => Ok(Cond::Const(*b)),
        Yaml::Seq(items) => {
            let mut exprs = Vec::new();
            for i in items {
                match cond(i, src)? {
                    Cond::All(mut e) => exprs.append(&mut e),
                    Cond::Const(true) => {}
                    Cond::Const(false) => return Ok(Cond::Const(false)),
                }
            }
            Ok(Cond::All(exprs))
        }
        Yaml::Str(s) => expr::parse(s).map(|e| Cond::All(vec![e])).map_err(|e| {
            let offset = s
                .char_indices()
                .nth(e.col.unwrap_or(1).saturating_sub(1))
                .map_or(s.len(), |(i, _)| i);
            let pos = locate(src, v, s, offset);
            src.err_help(pos, format!("in expression `{s}`: {}", e.msg), None)
        }),
        Yaml::Int(_) | Yaml::Float(_) => {
            let s = v.key_string();
            expr::parse(&s)
                .map(|e| Cond::All(vec![e]))
                .map_err(|e| src.err(v.pos, e.msg))
        }
        _ => Err(src.err(
            v.pos,
            format!(
                "a condition is an expression, true/false, or a list of expressions, found {}",
                v.kind()
            ),
        )),
    }
}

/// `file_copy`/`template` with a plain `src`: the file must exist on this
/// machine, and a template must parse, before anything runs.
fn check_local_files(
    module: &str,
    args: &Map<String, Value>,
    mval: &Node,
    src: &Src,
) -> Result<(), Error> {
    // With from_host, src is a path on that host, not here.
    if (module != "file_copy" && module != "template") || args.contains_key("from_host") {
        return Ok(());
    }
    let Some(name) = args
        .get("src")
        .and_then(Value::as_str)
        .filter(|n| !looks_templated(n))
    else {
        return Ok(());
    };
    let at = mval.get("src").map_or(mval.pos, |n| n.pos);
    let path = resolve(&dir_of(src.file), name);
    if !path.is_file() {
        return Err(src.err(
            at,
            format!(
                "{module}: src '{name}' not found (looked for {})",
                path.display()
            ),
        ));
    }
    if module == "template" {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| src.err(at, format!("template: cannot read {}: {e}", path.display())))?;
        if let Err(e) = template::check_syntax(&text) {
            let before = text.get(..e.offset.unwrap_or(0)).unwrap_or("");
            let pos = Pos {
                line: before.matches('\n').count() + 1,
                col: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
            };
            return Err(SourceError::with_source(
                &path,
                &text,
                pos,
                format!("template error: {e}"),
            )
            .into());
        }
    }
    Ok(())
}

/// A string that looks like a template (handlebars, or Jinja to refuse).
fn looks_templated(s: &str) -> bool {
    template::has_template(s) || (s.contains("{%") && s.contains("%}"))
}

/// Whether text may read `groups` or the play's host lists
/// (`ansible_play_hosts`, `ansible_play_hosts_all`, `ansible_play_batch`,
/// `play_hosts`).
pub(crate) fn mentions_play_world(text: &str) -> bool {
    text.contains("groups") || text.contains("play_hosts") || text.contains("play_batch")
}

fn mentions_template(v: &Value) -> bool {
    match v {
        Value::String(s) => looks_templated(s),
        Value::Array(a) => a.iter().any(mentions_template),
        Value::Object(o) => o.values().any(mentions_template),
        _ => false,
    }
}

fn check_template(s: &str, node: &Node, src: &Src) -> Result<(), Error> {
    template::check_syntax(s).map_err(|e| {
        let pos = e.offset.map_or(node.pos, |o| locate(src, node, s, o));
        src.err(pos, format!("template error: {e}"))
    })
}

/// Where the text at `offset` (bytes) of a scalar's value stands in the
/// file: the value is walked beside its source (quotes, escapes, folded
/// lines and block indentation skipped), so the caret lands on the token.
fn locate(src: &Src, node: &Node, value: &str, offset: usize) -> Pos {
    let text = src.text;
    let line_start: usize = text
        .split_inclusive('\n')
        .take(node.pos.line.saturating_sub(1))
        .map(str::len)
        .sum();
    let Some(line) = text.get(line_start..) else {
        return node.pos;
    };
    let mut sp = line_start
        + line
            .char_indices()
            .nth(node.pos.col.saturating_sub(1))
            .map_or(0, |(i, _)| i);
    match text.get(sp..).and_then(|r| r.chars().next()) {
        Some('|' | '>') => {
            sp = text
                .get(sp..)
                .and_then(|r| r.find('\n'))
                .map_or(text.len(), |i| sp + i + 1)
        }
        Some('"' | '\'') => sp += 1,
        _ => {}
    }
    let mut offset = offset.min(value.len());
    while !value.is_char_boundary(offset) {
        offset -= 1;
    }
    let rest = |sp: usize| text.get(sp..).unwrap_or("");
    for d in value[..offset].chars() {
        if d.is_whitespace() {
            let skip: usize = rest(sp)
                .chars()
                .take_while(|c| c.is_whitespace())
                .map(char::len_utf8)
                .sum();
            sp += skip;
        } else if let Some((i, c)) = rest(sp).char_indices().take(8).find(|(_, c)| *c == d) {
            sp += i + c.len_utf8();
        }
    }
    // The target character itself (past any escape or line break).
    if let Some(d) = value[offset..].chars().next() {
        if let Some((i, _)) = rest(sp).char_indices().take(8).find(|(_, c)| *c == d) {
            sp += i;
        }
    }
    let before = text.get(..sp).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos { line, col }
}

/// Checks the syntax of every template string in a node.
fn check_templates(node: &Node, src: &Src) -> Result<(), Error> {
    match &node.value {
        Yaml::Str(s) if looks_templated(s) => check_template(s, node, src),
        Yaml::Seq(items) => items.iter().try_for_each(|i| check_templates(i, src)),
        Yaml::Map(pairs) => pairs.iter().try_for_each(|(_, v)| check_templates(v, src)),
        _ => Ok(()),
    }
}

/// Every `needs` names a known id; ids are unique; the task order has no cycle.
fn check_references(book: &Playbook) -> Result<(), Error> {
    let mut ids: HashMap<&str, &Origin> = HashMap::new();
    let mut all = Vec::new();
    for play in &book.plays {
        if let Some(id) = &play.id {
            all.push((id, &play.origin));
        }
        for t in &play.tasks {
            if let Some(id) = &t.id {
                all.push((id, &t.origin));
            }
        }
        if let Some(h) = play
            .handlers
            .iter()
            .find(|h| h.id.is_some() || !h.needs.is_empty())
        {
            return Err(SourceError::new(
                &h.origin.file,
                h.origin.pos,
                "a handler has no `id` or `needs`: it runs when notified, at the end of its host's play",
            )
            .into());
        }
    }
    for (id, origin) in all {
        if let Some(first) = ids.insert(id, origin) {
            return Err(SourceError::new(
                &origin.file,
                origin.pos,
                format!("id '{id}' is already used at {first}"),
            )
            .into());
        }
    }
    let names: Vec<&str> = ids.keys().copied().collect();
    for play in &book.plays {
        let needs = play.needs.iter().chain(
            play.tasks
                .iter()
                .chain(&play.handlers)
                .flat_map(|t| t.needs.iter()),
        );
        for t in &play.tasks {
            if let (Some(id), Some((_, origin))) = (
                &t.id,
                t.needs.iter().find(|(n, _)| Some(n) == t.id.as_ref()),
            ) {
                return Err(SourceError::new(
                    &origin.file,
                    origin.pos,
                    format!("task '{}' needs itself (id '{id}')", t.name),
                )
                .into());
            }
        }
        for (id, origin) in needs {
            if !ids.contains_key(id.as_str()) {
                let e = SourceError::new(
                    &origin.file,
                    origin.pos,
                    format!("needs: no task or play has the id '{id}'"),
                );
                return Err(e.help(did_you_mean(id, names.iter().copied())).into());
            }
        }
    }
    crate::engine::graph::check_cycles(book)
}
