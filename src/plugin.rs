//! Plugin modules: executables in any language, found in `modules/` folders,
//! described by a `describe` exchange on the control machine and run on the
//! hosts with a JSON request on stdin (protocol in `modules/README.md`).
//!
//! - [`install`] finds the plugin files once per process, in the documented
//!   order; a plugin never shadows a built-in (a warning says so).
//! - A plugin is described on first use (`describe` run locally, 10 s at
//!   most); its answer becomes the [`ModuleDoc`] that `mailrun doc` prints
//!   and that validation checks arguments against, so the two cannot drift.
//! - On a host it is uploaded once, into a private directory, under a name
//!   holding its SHA-256; a run is one exec that finds it there (or asks for
//!   the upload first).

use crate::connection::{self, ConnError, ExecOutput};
use crate::module::{ArgError, ArgSpec, Context, Diff, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The protocol version this mailrun speaks.
pub const PROTOCOL: u64 = 1;

/// How long `describe` may take on the control machine.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a host prints when the plugin is not uploaded yet.
const MISSING: &str = "mailrun-plugin-not-uploaded-5c1e";
const MISSING_RC: i32 = 97;

/// One plugin file found in a search directory.
struct Entry {
    name: String,
    path: PathBuf,
    module: OnceLock<&'static Plugin>,
}

struct Registry {
    /// Sorted by name.
    entries: Vec<Entry>,
    /// Files that look like plugins but were not taken: (name, why).
    not_taken: Vec<(String, String)>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Where plugins are looked for, in order (first wins):
/// 1. `--module-path` directories, as given;
/// 2. `MAILRUN_MODULE_PATH` (a `:`-separated list);
/// 3. `modules/` beside each playbook named on the command line;
/// 4. the project's `modules/`: the nearest one found going up from each
///    playbook's directory, the inventory's directory and the current
///    directory, stopping at a repository root (a directory holding `.git`).
///
/// Also returns warnings for `--module-path`/`MAILRUN_MODULE_PATH` entries
/// that are not folders.
pub fn search_dirs(
    module_path: &[PathBuf],
    playbooks: &[PathBuf],
    inventories: &[String],
) -> (Vec<PathBuf>, Vec<String>) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut warnings = Vec::new();
    let mut given = |d: PathBuf, origin: &str| {
        if !d.is_dir() {
            warnings.push(format!("{origin} {}: no such folder", d.display()));
        }
        dirs.push(d);
    };
    for p in module_path {
        for d in std::env::split_paths(p) {
            given(d, "--module-path");
        }
    }
    if let Some(env) = std::env::var_os("MAILRUN_MODULE_PATH") {
        for d in std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()) {
            given(d, "MAILRUN_MODULE_PATH");
        }
    }
    let dir_of = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut starts = Vec::new();
    for p in playbooks {
        let d = dir_of(p);
        dirs.push(d.join("modules"));
        starts.push(d);
    }
    for i in inventories {
        let p = Path::new(i);
        if p.exists() {
            starts.push(if p.is_dir() {
                p.to_path_buf()
            } else {
                dir_of(p)
            });
        }
    }
    starts.push(PathBuf::from("."));
    for s in starts {
        if let Some(d) = project_modules(&s) {
            dirs.push(d);
        }
    }
    (dirs, warnings)
}

/// The nearest `modules/` folder at or above `start`, not beyond the
/// repository root.
fn project_modules(start: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(start).ok()?;
    for d in start.ancestors() {
        let m = d.join("modules");
        if m.is_dir() {
            return Some(m);
        }
        if d.join(".git").exists() {
            return None;
        }
    }
    None
}

/// Finds the plugins in `dirs` (see [`search_dirs`]) and makes them
/// available to [`crate::modules::get`]. Returns warnings: shadowed names,
/// files that are not executable. Only the first call counts.
pub fn install(dirs: &[PathBuf]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut seen_dirs: Vec<PathBuf> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut not_taken: Vec<(String, String)> = Vec::new();
    for dir in dirs {
        let Ok(canon) = std::fs::canonicalize(dir) else {
            continue;
        };
        if seen_dirs.contains(&canon) {
            continue;
        }
        seen_dirs.push(canon);
        let Ok(read) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = read.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if file.starts_with('.') || file.starts_with("README") || !path.is_file() {
                continue;
            }
            let name = file.split_once('.').map_or(file, |(stem, _)| stem);
            let ext = file.split_once('.').map(|(_, e)| e);
            if matches!(
                ext,
                Some("md" | "txt" | "json" | "yml" | "yaml" | "orig" | "bak")
            ) {
                continue;
            }
            if !valid_name(name) {
                warnings.push(format!(
                    "{}: not a plugin module name (letters, digits and _ only); ignored",
                    path.display()
                ));
                continue;
            }
            if !is_executable(&path) {
                let why = format!(
                    "{}: not executable, so not a plugin module (chmod +x it)",
                    path.display()
                );
                not_taken.push((name.to_string(), why.clone()));
                warnings.push(why);
                continue;
            }
            if crate::modules::builtin(name).is_some() {
                warnings.push(format!(
                    "{}: not used: '{name}' is a built-in module name (a plugin may not shadow it; rename the file)",
                    path.display()
                ));
                continue;
            }
            if let Some(first) = entries.iter().find(|e| e.name == name) {
                warnings.push(format!(
                    "{}: not used: plugin '{name}' is already found at {}",
                    path.display(),
                    first.path.display()
                ));
                continue;
            }
            entries.push(Entry {
                name: name.to_string(),
                path,
                module: OnceLock::new(),
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let _ = REGISTRY.set(Registry { entries, not_taken });
    warnings
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The plugin called `name`, described on first use (a plugin whose
/// describe failed is returned too: it refuses every use, saying why).
pub fn get(name: &str) -> Option<&'static Plugin> {
    let reg = REGISTRY.get()?;
    let i = reg
        .entries
        .binary_search_by(|e| e.name.as_str().cmp(name))
        .ok()?;
    let e = &reg.entries[i];
    Some(
        e.module
            .get_or_init(|| Box::leak(Box::new(Plugin::load(&e.name, &e.path)))),
    )
}

/// Why a file named like `name` was not taken as a plugin, if one was found.
pub fn not_taken(name: &str) -> Option<String> {
    let reg = REGISTRY.get()?;
    reg.not_taken
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, why)| why.clone())
}

/// The names of the plugins found, sorted.
pub fn names() -> Vec<&'static str> {
    REGISTRY
        .get()
        .map(|r| r.entries.iter().map(|e| e.name.as_str()).collect())
        .unwrap_or_default()
}

/// A plugin module: its file, its described doc, its content and checksum.
pub struct Plugin {
    pub path: PathBuf,
    doc: ModuleDoc,
    /// Defaults from describe, filled in before a run.
    defaults: Map<String, Value>,
    /// Arguments described `no_log: true`: their values are secrets.
    no_log: Vec<String>,
    /// Why the plugin cannot be used, when describe failed.
    broken: Option<String>,
    content: Arc<[u8]>,
    sha256: String,
}

fn leak(s: impl Into<String>) -> &'static str {
    Box::leak(s.into().into_boxed_str())
}

impl Plugin {
    fn load(name: &str, path: &Path) -> Plugin {
        let name_s = leak(name);
        let broken_doc = |why: &str| ModuleDoc {
            name: name_s,
            description: leak(format!("(unusable plugin: {why})")),
            args: Vec::new(),
            check_mode: false,
            example: "",
            free_form: None,
        };
        let content: Arc<[u8]> = match std::fs::read(path) {
            Ok(c) => c.into(),
            Err(e) => {
                let why = format!("cannot read {}: {e}", path.display());
                return Plugin {
                    path: path.to_path_buf(),
                    doc: broken_doc(&why),
                    defaults: Map::new(),
                    no_log: Vec::new(),
                    broken: Some(why),
                    content: Arc::from(Vec::new()),
                    sha256: String::new(),
                };
            }
        };
        let sha256 = hex(&Sha256::digest(&content));
        let (doc, defaults, no_log, broken) = match describe(name_s, path) {
            Ok((doc, defaults, no_log)) => (doc, defaults, no_log, None),
            Err(why) => (broken_doc(&why), Map::new(), Vec::new(), Some(why)),
        };
        Plugin {
            path: path.to_path_buf(),
            doc,
            defaults,
            no_log,
            broken,
            content,
            sha256,
        }
    }

    /// The name the file gets on a host: the module's name and checksum.
    fn remote_file(&self) -> String {
        format!("{}-{}", self.doc.name, self.sha256)
    }

    fn label(&self) -> String {
        format!("plugin module {}", self.doc.name)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a local run ended: the exit code, or how it was killed; stdout; stderr.
type LocalRun = (Result<i32, String>, Vec<u8>, Vec<u8>);

/// Runs `path` on the control machine with `input` on stdin; kills it after
/// `timeout`.
fn run_local(path: &Path, input: &[u8], timeout: Duration) -> Result<LocalRun, String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(path)
        // Its own process group: a timeout ends its children too (they
        // would otherwise hold the output pipes open).
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let stdin = child.stdin.take();
    let input = input.to_vec();
    // A plugin that does not read stdin must not block us: write aside.
    let writer = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&input);
        }
    });
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.by_ref().take(4 << 20).read_to_end(&mut buf);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                crate::local::kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                let stderr = err.join().unwrap_or_default();
                return Err(format!(
                    "describe did not answer within {} s (killed){}",
                    timeout.as_secs(),
                    stderr_note(&stderr)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {}: {e}", path.display())),
        }
    };
    // Whatever it left running in the background would hold the pipes.
    crate::local::kill_group(child.id());
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => Ok(c),
        (None, Some(s)) => Err(format!("killed by signal {s}")),
        _ => Err("ended abnormally".into()),
    };
    Ok((code, stdout, stderr))
}

/// `; stderr: …` (the last lines, trimmed) or nothing.
fn stderr_note(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    let tail = if tail.len() > 4000 {
        let mut i = tail.len() - 4000;
        while !tail.is_char_boundary(i) {
            i += 1;
        }
        format!("…{}", &tail[i..])
    } else {
        tail
    };
    format!("; stderr: {tail}")
}

/// A short excerpt of unexpected output.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "nothing".into();
    }
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Asks the plugin to describe itself and turns the answer into its doc.
type Described = (ModuleDoc, Map<String, Value>, Vec<String>);

fn describe(name: &'static str, path: &Path) -> Result<Described, String> {
    let request = json!({"protocol": PROTOCOL, "request": "describe", "module": name});
    let (code, stdout, stderr) =
        run_local(path, format!("{request}\n").as_bytes(), DESCRIBE_TIMEOUT)?;
    let note = stderr_note(&stderr);
    let answer: Value = match serde_json::from_slice(&stdout) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let how = match &code {
                Ok(0) => String::new(),
                Ok(c) => format!(" (it exited with status {c})"),
                Err(s) => format!(" ({s})"),
            };
            return Err(format!(
                "its describe answer is not one JSON object{how}: got {}{note}",
                excerpt(&stdout)
            ));
        }
    };
    match code {
        Ok(0) => {}
        Ok(c) => return Err(format!("describe exited with status {c}{note}")),
        Err(s) => return Err(format!("describe {s}{note}")),
    }
    let (doc, defaults) = parse_describe(name, &answer)?;
    Ok((doc, defaults, no_log_args(&answer)))
}

/// The arguments a describe answer marks `"no_log": true`.
pub fn no_log_args(answer: &Value) -> Vec<String> {
    answer
        .get("args")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, spec)| spec.get("no_log") == Some(&Value::Bool(true)))
        .map(|(name, _)| name.clone())
        .collect()
}

const DESCRIBE_KEYS: &[&str] = &[
    "protocol",
    "name",
    "description",
    "args",
    "check_mode",
    "example",
    "free_form",
];
const ARG_KEYS: &[&str] = &[
    "type",
    "required",
    "default",
    "choices",
    "description",
    "no_log",
];

/// The describe answer (see `modules/README.md`) as a doc and defaults.
pub fn parse_describe(
    name: &'static str,
    answer: &Value,
) -> Result<(ModuleDoc, Map<String, Value>), String> {
    let Some(obj) = answer.as_object() else {
        return Err("its describe answer is not a JSON object".into());
    };
    for k in obj.keys() {
        if !DESCRIBE_KEYS.contains(&k.as_str()) {
            let hint = crate::suggest::did_you_mean(k, DESCRIBE_KEYS.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(format!("describe: unknown field '{k}'{hint}"));
        }
    }
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    match field("protocol") {
        Some(Value::Number(n)) if n.as_u64() == Some(PROTOCOL) => {}
        Some(v) => {
            return Err(format!(
                "describe: it speaks protocol {v}; this mailrun speaks {PROTOCOL}"
            ))
        }
        None => {
            return Err(format!(
                "describe: missing field 'protocol' (must be {PROTOCOL})"
            ))
        }
    }
    let text = |k: &str| -> Result<String, String> {
        match field(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(format!("describe: '{k}' must be a string, found {v}")),
            None => Err(format!("describe: missing field '{k}' (a string)")),
        }
    };
    let said = text("name")?;
    if said != name {
        return Err(format!(
            "describe: it calls itself '{said}' but its file makes it '{name}' (rename one)"
        ));
    }
    let description = text("description")?;
    let example = text("example")?;
    let check_mode = match field("check_mode") {
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(format!(
                "describe: 'check_mode' must be true or false, found {v}"
            ))
        }
        None => return Err("describe: missing field 'check_mode' (true or false)".into()),
    };
    let args = match field("args") {
        Some(Value::Object(m)) => m.clone(),
        Some(v) => return Err(format!("describe: 'args' must be an object, found {v}")),
        None => return Err("describe: missing field 'args' (an object, {} for none)".into()),
    };
    let mut specs = Vec::new();
    let mut defaults = Map::new();
    for (arg, spec) in &args {
        if !valid_name(arg) {
            return Err(format!(
                "describe: argument name '{arg}' must be letters, digits and _"
            ));
        }
        let Some(spec) = spec.as_object() else {
            return Err(format!("describe: argument '{arg}' must be an object"));
        };
        for k in spec.keys() {
            if !ARG_KEYS.contains(&k.as_str()) {
                let hint = crate::suggest::did_you_mean(k, ARG_KEYS.iter().copied())
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                return Err(format!(
                    "describe: argument '{arg}': unknown field '{k}'{hint}"
                ));
            }
        }
        let ty = match spec.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(v) => {
                return Err(format!(
                    "describe: argument '{arg}': 'type' must be a string, found {v}"
                ))
            }
            None => return Err(format!("describe: argument '{arg}': missing 'type'")),
        };
        let kind = match ty {
            "str" | "string" => "string",
            "path" => "path",
            "bool" | "boolean" => "bool",
            "int" | "integer" => "int",
            "float" | "number" => "float",
            "list" => "list",
            "dict" | "map" | "object" => "dict",
            "raw" | "any" => "any",
            other => {
                return Err(format!(
                    "describe: argument '{arg}': unknown type '{other}' (one of str, path, bool, int, float, list, dict, raw)"
                ))
            }
        };
        let description = match spec.get("description") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(format!(
                    "describe: argument '{arg}': missing 'description' (a string)"
                ))
            }
        };
        if let Some(v) = spec
            .get("no_log")
            .filter(|v| !v.is_null() && !v.is_boolean())
        {
            return Err(format!(
                "describe: argument '{arg}': 'no_log' must be true or false, found {v}"
            ));
        }
        let required = match spec.get("required") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(format!(
                    "describe: argument '{arg}': 'required' must be true or false, found {v}"
                ))
            }
        };
        let kind: &'static str = match spec.get("choices") {
            None | Some(Value::Null) => kind,
            Some(Value::Array(c)) if !c.is_empty() => {
                let words: Vec<String> = c
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                if words.iter().any(|w| w.contains('|') || w.is_empty()) {
                    return Err(format!(
                        "describe: argument '{arg}': choices must be non-empty and hold no '|'"
                    ));
                }
                leak(words.join("|"))
            }
            Some(v) => {
                return Err(format!(
                    "describe: argument '{arg}': 'choices' must be a non-empty list, found {v}"
                ))
            }
        };
        let default = match spec.get("default") {
            None | Some(Value::Null) => None,
            Some(v) => {
                if required {
                    return Err(format!(
                        "describe: argument '{arg}' is required and has a default: give one or the other"
                    ));
                }
                if let Some(e) = coerce(kind, v).err() {
                    return Err(format!(
                        "describe: argument '{arg}': its default {v} is not {e}"
                    ));
                }
                defaults.insert(arg.clone(), v.clone());
                Some(leak(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }))
            }
        };
        specs.push(ArgSpec {
            name: leak(arg.as_str()),
            kind,
            required,
            default,
            description: leak(description),
        });
    }
    let free_form = match field("free_form") {
        None => None,
        Some(Value::String(s)) if args.contains_key(s) => Some(leak(s.as_str())),
        Some(v) => {
            return Err(format!(
                "describe: 'free_form' must name one of its arguments, found {v}"
            ))
        }
    };
    Ok((
        ModuleDoc {
            name,
            description: leak(description),
            args: specs,
            check_mode,
            example: leak(example),
            free_form,
        },
        defaults,
    ))
}

/// `v` converted to the argument's kind (as Ansible converts a module's
/// arguments): "yes" → true, "3" → 3, 3 → "3", "a,b" → ["a", "b"].
/// Err names what was expected.
fn coerce(kind: &str, v: &Value) -> Result<Value, &'static str> {
    use crate::modules::args::{to_bool, to_int};
    let scalar_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match kind {
        "string" | "path" => scalar_text(v).map(Value::String).ok_or("a string"),
        "bool" => to_bool(v).map(Value::Bool).ok_or("a boolean"),
        "int" => to_int(v).map(Value::from).ok_or("an integer"),
        "float" => match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        .ok_or("a number"),
        "list" => match v {
            Value::Array(_) => Ok(v.clone()),
            Value::String(s) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Value>(s) {
                    Ok(list @ Value::Array(_)) => Ok(list),
                    _ => Err("a list"),
                }
            }
            Value::String(s) => Ok(Value::Array(
                s.split(',')
                    .map(|w| Value::String(w.trim().to_string()))
                    .filter(|w| w.as_str() != Some(""))
                    .collect(),
            )),
            Value::Number(_) | Value::Bool(_) => Ok(Value::Array(vec![v.clone()])),
            _ => Err("a list"),
        },
        "dict" => match v {
            Value::Object(_) => Ok(v.clone()),
            // `-a 'opts={"a": 1}'`: JSON text, as Ansible takes it.
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(m @ Value::Object(_)) => Ok(m),
                _ => Err("a mapping"),
            },
            _ => Err("a mapping"),
        },
        k if k.contains('|') => {
            let t = scalar_text(v).ok_or("one of the choices")?;
            if k.split('|').any(|c| c == t) {
                Ok(v.clone())
            } else {
                Err("one of the choices")
            }
        }
        _ => Ok(v.clone()),
    }
}

/// Uploads once per (host, user, content) in this run.
type UploadLocks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>;

fn upload_locks() -> &'static UploadLocks {
    static LOCKS: OnceLock<UploadLocks> = OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

/// The private directories a plugin may live in on a host, as shell words:
/// `~/.cache/mailrun/plugins` of the user it runs as, else
/// `/tmp/mailrun-UID/plugins`.
const DIRS: &str = r#""${HOME:+$HOME/.cache/mailrun/plugins}" "/tmp/mailrun-$(id -u)/plugins""#;

/// Runs the plugin file if it is there and intact, else says it is missing
/// (and the upload puts it right): the folder must be ours and private
/// (`drwx------`), the file ours, executable and, where `sha256sum` exists,
/// hold the content its name promises. With a limit, the host's `timeout`
/// stops it (its whole process group) so that what it wrote to stderr still
/// comes back.
fn run_script(file: &str, sha256: &str, limit: Option<Duration>) -> String {
    let wrap = match limit {
        Some(l) => format!(
            "t='timeout -k 1 {}'; command -v timeout >/dev/null 2>&1 || t=''; ",
            l.as_secs().max(1)
        ),
        None => "t=''; ".into(),
    };
    format!(
        "{wrap}for d in {DIRS}; do f=\"$d/{file}\"; \
         if [ -n \"$d\" ] && [ -O \"$d\" ] && [ -f \"$f\" ] && [ -x \"$f\" ] && [ -O \"$f\" ]; then \
         case \"$(ls -ld \"$d\")\" in drwx------*) ;; *) break ;; esac; \
         if command -v sha256sum >/dev/null 2>&1; then case \"$(sha256sum < \"$f\")\" in {sha256}*) ;; *) break ;; esac; fi; \
         exec $t \"$f\"; fi; done; echo {MISSING} >&2; exit {MISSING_RC}"
    )
}

/// How much longer than the task's limit the connection waits for the
/// host's `timeout` to report.
const REPORT_GRACE: Duration = Duration::from_secs(3);

/// Puts stdin into the first private directory that is ours, replacing
/// older versions of the same plugin.
fn upload_script(name: &str, file: &str) -> String {
    format!(
        r#"umask 077
for d in {DIRS}; do
  [ -n "$d" ] || continue
  mkdir -p -- "$d" 2>/dev/null || continue
  [ -O "$d" ] && [ -O "${{d%/*}}" ] && [ ! -L "$d" ] || continue
  chmod 700 -- "$d" || continue
  t="$d/.{file}.$$"
  if cat > "$t" && chmod 700 -- "$t" && mv -f -- "$t" "$d/{file}"; then
    for o in "$d/{name}-"*; do [ "$o" = "$d/{file}" ] || rm -f -- "$o"; done
    exit 0
  fi
  rm -f -- "$t"
  echo "cannot write the plugin into $d" >&2
  exit 1
done
echo "no private directory for plugins: tried ~/.cache/mailrun/plugins and /tmp/mailrun-$(id -u)/plugins" >&2
exit 1"#
    )
}

impl Plugin {
    async fn exec(
        &self,
        ctx: &Context,
        cmd: String,
        stdin: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ConnError> {
        ctx.conn
            .exec(&connection::Command {
                cmd,
                stdin: Some(stdin),
                timeout,
                become_user: ctx.become_user.clone(),
            })
            .await
    }

    /// Uploads the plugin, once per host, user and content in this run:
    /// a task that waited while another uploaded it just runs it again
    /// (`force` uploads anyway).
    async fn upload(&self, ctx: &Context, force: bool) -> Result<Option<Outcome>, ConnError> {
        let key = format!(
            "{}\0{:?}\0{}\0{}",
            ctx.host,
            ctx.conn.address(),
            ctx.become_user.as_deref().unwrap_or(""),
            self.sha256
        );
        let lock = upload_locks()
            .lock()
            .map(|mut m| m.entry(key).or_default().clone())
            .unwrap_or_default();
        let mut done = lock.lock().await;
        if *done && !force {
            return Ok(None);
        }
        let out = self
            .exec(
                ctx,
                upload_script(self.doc.name, &self.remote_file()),
                self.content.to_vec(),
                ctx.timeout,
            )
            .await?;
        if out.rc != 0 {
            return Ok(Some(Outcome::failed(format!(
                "{}: cannot upload it to the host (rc {}){}",
                self.label(),
                out.rc,
                stderr_note(&out.stderr)
            ))));
        }
        *done = true;
        Ok(None)
    }

    /// The run request: arguments converted to their kinds, defaults filled.
    /// Each argument converted to its declared kind (see [`coerce`]);
    /// nulls, unknown names, choices, and with `keep_templates` strings
    /// still to be rendered, as they are.
    fn convert(
        &self,
        args: &Map<String, Value>,
        keep_templates: bool,
    ) -> Result<Map<String, Value>, ArgError> {
        let mut converted = Map::new();
        for (k, v) in args {
            let templated =
                keep_templates && matches!(v, Value::String(s) if crate::template::has_template(s));
            if v.is_null() || templated {
                converted.insert(k.clone(), v.clone());
                continue;
            }
            // Unknown names and choices are left to `validate`, whose
            // messages name the arguments and the choices.
            let Some(kind) = self
                .doc
                .args
                .iter()
                .find(|a| a.name == k)
                .map(|a| a.kind)
                .filter(|kind| !kind.contains('|'))
            else {
                converted.insert(k.clone(), v.clone());
                continue;
            };
            let c = coerce(kind, v).map_err(|e| ArgError {
                arg: Some(k.clone()),
                msg: format!("{}: argument '{k}' expects {e}, found {v}", self.doc.name),
                help: None,
            })?;
            converted.insert(k.clone(), c);
        }
        Ok(converted)
    }

    fn request(&self, ctx: &Context, args: &Value) -> Result<Value, ArgError> {
        let mut given = match args {
            Value::Object(m) => self.convert(m, false)?,
            _ => Map::new(),
        };
        given.retain(|_, v| !v.is_null());
        for name in &self.no_log {
            if let Some(v) = given.get(name) {
                crate::secret::register_value(v);
            }
        }
        for (k, v) in &self.defaults {
            given.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Ok(json!({
            "protocol": PROTOCOL,
            "request": "run",
            "module": self.doc.name,
            "args": given,
            "check": ctx.check,
            "diff": ctx.diff,
            "host": ctx.host,
        }))
    }
}

/// The plugin's answer to a run as an outcome; a broken answer is a failure
/// naming the module and showing its stderr.
fn answer(label: &str, out: &ExecOutput) -> Outcome {
    let note = stderr_note(&out.stderr);
    let how = || match out.rc {
        0 => String::new(),
        rc if (129..=192).contains(&rc) => {
            format!(
                " (it exited with status {rc}: killed by signal {})",
                rc - 128
            )
        }
        rc => format!(" (it exited with status {rc})"),
    };
    let fail = |what: String| {
        Outcome::failed(format!("{label}: {what}{note}"))
            .with("rc", out.rc)
            .with("stdout", out.stdout_str())
            .with("stderr", out.stderr_str())
    };
    let obj = match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(Value::Object(m)) => m,
        _ => {
            return fail(format!(
                "its answer is not one JSON object{}: got {}",
                how(),
                excerpt(&out.stdout)
            ))
        }
    };
    let flag = |k: &str| match obj.get(k) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(format!(
            "its answer's '{k}' must be true or false, found {v}"
        )),
        None => Err(format!("its answer lacks '{k}' (true or false)")),
    };
    let (changed, failed) = match (flag("changed"), flag("failed")) {
        (Ok(c), Ok(f)) => (c, f),
        (Err(e), _) | (_, Err(e)) => return fail(format!("{e}{}", how())),
    };
    let skipped = match obj.get("skipped") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return fail(format!(
                "its answer's 'skipped' must be true or false, found {v}"
            ))
        }
    };
    let msg = match obj.get("msg") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    };
    let diff = match obj.get("diff") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            let text = |k: &str| match d.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(format!("its answer's diff.{k} must be a string, found {v}")),
            };
            let path = match d.get("path").or_else(|| d.get("after_header")) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            match (text("before"), text("after")) {
                (Ok(before), Ok(after)) => Some(Diff {
                    path,
                    before,
                    after,
                }),
                (Err(e), _) | (_, Err(e)) => return fail(e),
            }
        }
        Some(v) => {
            return fail(format!(
                "its answer's 'diff' must be an object with before and after, found {v}"
            ))
        }
    };
    if out.rc != 0 && !failed {
        return fail(format!(
            "it exited with status {} but its answer says it did not fail",
            out.rc
        ));
    }
    let mut o = Outcome {
        changed,
        failed,
        skipped,
        msg,
        diff,
        data: Map::new(),
    };
    if failed {
        let text = o.msg.take().unwrap_or_else(|| "failed".into());
        o.msg = Some(format!("{label}: {text}{note}"));
    }
    for (k, v) in obj {
        if !matches!(
            k.as_str(),
            "changed" | "failed" | "skipped" | "msg" | "diff" | "protocol"
        ) {
            o.data.insert(k, v);
        }
    }
    if failed {
        // As for every failure: what the process gave (its own fields win).
        o.data.entry("rc").or_insert(out.rc.into());
        o.data.entry("stdout").or_insert(out.stdout_str().into());
        o.data.entry("stderr").or_insert(out.stderr_str().into());
    }
    o
}

#[async_trait]
impl Module for Plugin {
    fn doc(&self) -> ModuleDoc {
        self.doc.clone()
    }

    fn unusable(&self) -> Option<ArgError> {
        self.broken.as_ref().map(|why| ArgError {
            arg: None,
            msg: format!("{} ({}): {why}", self.label(), self.path.display()),
            help: None,
        })
    }

    fn check_args(&self, args: &Map<String, Value>) -> Result<(), ArgError> {
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        // Converted first (`users=a,b` is a list, `"3"` an int), then checked.
        let converted = self.convert(args, true)?;
        crate::modules::args::validate(&self.doc, &converted)
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        match args {
            Value::Object(m) => self.check_args(m),
            Value::Null => self.check_args(&Map::new()),
            other => Err(ArgError {
                arg: None,
                msg: format!(
                    "{}: arguments must be a mapping, found {other}",
                    self.doc.name
                ),
                help: None,
            }),
        }
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        if let Some(e) = self.unusable() {
            return Ok(Outcome::failed(e.msg));
        }
        let request = match self.request(ctx, &args) {
            Ok(r) => format!("{r}\n").into_bytes(),
            Err(e) => return Ok(Outcome::failed(e.msg)),
        };
        let file = self.remote_file();
        let timed_out = |d: Duration| {
            Outcome::failed(format!(
                "{}: no answer within the task's timeout of {} s (stopped)",
                self.label(),
                d.as_secs()
            ))
        };
        let mut uploads = 0;
        loop {
            let started = Instant::now();
            let script = run_script(&file, &self.sha256, ctx.timeout);
            let limit = ctx.timeout.map(|t| t + REPORT_GRACE);
            let out = match self.exec(ctx, script, request.clone(), limit).await {
                Ok(o) => o,
                Err(ConnError::Timeout(_)) => {
                    return Ok(timed_out(ctx.timeout.unwrap_or_default()))
                }
                Err(e) => return Err(e),
            };
            // The host's `timeout` stopped it (124, or 137 after KILL).
            if let Some(t) = ctx.timeout {
                if matches!(out.rc, 124 | 137) && started.elapsed() >= t {
                    let mut o = timed_out(t);
                    o.msg = o.msg.map(|m| format!("{m}{}", stderr_note(&out.stderr)));
                    return Ok(o
                        .with("rc", out.rc)
                        .with("stdout", out.stdout_str())
                        .with("stderr", out.stderr_str()));
                }
            }
            let missing = out.rc == MISSING_RC
                && String::from_utf8_lossy(&out.stderr)
                    .trim_end()
                    .ends_with(MISSING);
            if !missing {
                return Ok(answer(&self.label(), &out));
            }
            uploads += 1;
            if uploads > 2 {
                return Ok(Outcome::failed(format!(
                    "{}: uploaded, but the host cannot find or run it in its private directory",
                    self.label()
                )));
            }
            match self.upload(ctx, uploads == 2).await {
                Ok(Some(failed)) => return Ok(failed),
                Ok(None) => {}
                Err(ConnError::Timeout(d)) => return Ok(timed_out(d)),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe_answer() -> Value {
        json!({
            "protocol": 1,
            "name": "mbox",
            "description": "Reports mailboxes. More text.",
            "check_mode": true,
            "args": {
                "user": {"type": "str", "required": true, "description": "Who."},
                "limit": {"type": "int", "default": 10, "description": "How many."},
                "state": {"type": "str", "choices": ["present", "absent"], "default": "present", "description": "State."},
                "tags": {"type": "list", "description": "Tags."}
            },
            "example": "- mbox:\n    user: alice\n"
        })
    }

    #[test]
    fn describe_answer_becomes_the_doc() {
        let (doc, defaults) = parse_describe("mbox", &describe_answer()).expect("valid");
        assert_eq!(doc.args.len(), 4);
        assert_eq!(doc.args[0].name, "user");
        assert!(doc.args[0].required);
        assert_eq!(doc.args[1].kind, "int");
        assert_eq!(doc.args[1].default, Some("10"));
        assert_eq!(doc.args[2].kind, "present|absent");
        assert_eq!(defaults["limit"], json!(10));
        assert!(doc.check_mode);
    }

    #[test]
    fn bad_describe_answers_are_named() {
        let cases: &[(&str, Value, &str)] = &[
            ("protocol", json!(2), "speaks protocol 2"),
            ("name", json!("other"), "calls itself 'other'"),
            (
                "check_mode",
                json!("yes"),
                "'check_mode' must be true or false",
            ),
            ("args", json!([]), "'args' must be an object"),
            ("descripton", json!("x"), "did you mean 'description'"),
        ];
        for (k, v, want) in cases {
            let mut a = describe_answer();
            a[*k] = v.clone();
            let e = parse_describe("mbox", &a).expect_err(k);
            assert!(e.contains(want), "{k}: {e}");
        }
        let mut a = describe_answer();
        a["args"]["user"]["requird"] = json!(true);
        let e = parse_describe("mbox", &a).expect_err("typo");
        assert!(e.contains("did you mean 'required'"), "{e}");
        let mut a = describe_answer();
        a["args"]["limit"]["type"] = json!("integre");
        assert!(parse_describe("mbox", &a).is_err());
        let mut a = describe_answer();
        a["args"]["limit"]["default"] = json!("many");
        let e = parse_describe("mbox", &a).expect_err("bad default");
        assert!(e.contains("not an integer"), "{e}");
        let mut a = describe_answer();
        a.as_object_mut().map(|m| m.remove("example"));
        let e = parse_describe("mbox", &a).expect_err("no example");
        assert!(e.contains("missing field 'example'"), "{e}");
    }

    #[test]
    fn arguments_are_converted_to_their_kinds() {
        assert_eq!(coerce("bool", &json!("yes")), Ok(json!(true)));
        assert_eq!(coerce("int", &json!("42")), Ok(json!(42)));
        assert_eq!(coerce("string", &json!(5000)), Ok(json!("5000")));
        assert_eq!(coerce("list", &json!("a, b")), Ok(json!(["a", "b"])));
        assert_eq!(coerce("float", &json!("1.5")), Ok(json!(1.5)));
        assert_eq!(coerce("dict", &json!(r#"{"a": 1}"#)), Ok(json!({"a": 1})));
        assert_eq!(coerce("list", &json!("[1, 2]")), Ok(json!([1, 2])));
        assert!(coerce("int", &json!("x")).is_err());
        assert!(coerce("dict", &json!("x")).is_err());
        assert!(coerce("a|b", &json!("c")).is_err());
    }

    fn exec(rc: i32, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            rc,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_become_outcomes_or_named_failures() {
        let o = answer(
            "plugin module m",
            &exec(
                0,
                r#"{"changed": true, "failed": false, "msg": "done", "count": 3}"#,
                "",
            ),
        );
        assert!(o.changed && !o.failed);
        assert_eq!(o.data["count"], json!(3));
        let o = answer("plugin module m", &exec(0, "hello", "oops\n"));
        assert!(o.failed);
        let msg = o.msg.unwrap_or_default();
        assert!(
            msg.contains("plugin module m")
                && msg.contains("not one JSON object")
                && msg.contains("stderr: oops"),
            "{msg}"
        );
        let o = answer("plugin module m", &exec(0, r#"{"failed": false}"#, ""));
        assert!(o.failed && o.msg.unwrap_or_default().contains("lacks 'changed'"));
        let o = answer("plugin module m", &exec(139, "", "Segmentation fault"));
        let msg = o.msg.unwrap_or_default();
        assert!(o.failed && msg.contains("signal 11"), "{msg}");
        let o = answer(
            "plugin module m",
            &exec(
                1,
                r#"{"changed": false, "failed": true, "msg": "no such user"}"#,
                "trace",
            ),
        );
        assert_eq!(
            o.msg.as_deref(),
            Some("plugin module m: no such user; stderr: trace")
        );
        let o = answer(
            "plugin module m",
            &exec(3, r#"{"changed": false, "failed": false}"#, ""),
        );
        assert!(o.failed);
        let o = answer(
            "plugin module m",
            &exec(
                0,
                r#"{"changed": true, "failed": false, "diff": {"before": "a\n", "after": "b\n", "path": "/x"}}"#,
                "",
            ),
        );
        assert_eq!(o.diff.map(|d| d.path), Some("/x".to_string()));
    }
}
