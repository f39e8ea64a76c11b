//! The built-in modules and their registry.
//!
//! Adding a module: write `src/modules/<name>.rs` with a unit struct
//! implementing [`Module`] (typed params with `deny_unknown_fields`, a check
//! step that returns a plan, an apply step that takes it), then add one line
//! `file => Type,` to the `modules!` list below. The tests here check every
//! module's doc against its params struct and run its example.

use crate::module::Module;
use std::sync::OnceLock;

pub mod args;
mod dovecot;
mod dsync;

/// Emits `mod file;` for each module and the list of their instances.
macro_rules! modules {
    ($($file:ident => $ty:ident),* $(,)?) => {
        $(mod $file;)*
        static LIST: &[&dyn Module] = &[$(&$file::$ty),*];
    };
}

modules! {
    assert => Assert,
    authkey => AuthorizedKey,
    command => Command,
    debug => Debug,
    doveadm_backup => DoveadmBackup,
    doveadm_sync => DoveadmSync,
    fail => Fail,
    file_copy => FileCopy,
    hostkey => KnownHostsModule,
    lineinfile => LineInFile,
    mail_verify => MailVerify,
    pause => Pause,
    ping => Ping,
    set_fact => SetFact,
    shell => Shell,
    sshd => SshdConfig,
    svc => Service,
    template => Template,
}

/// (name, module), sorted by name; built once.
fn table() -> &'static [(&'static str, &'static dyn Module)] {
    static TABLE: OnceLock<Vec<(&'static str, &'static dyn Module)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Vec<_> = LIST.iter().map(|m| (m.doc().name, *m)).collect();
        t.sort_by_key(|(name, _)| *name);
        t
    })
}

/// Ansible's module names where the arguments are the same: (alias, module).
pub const ALIASES: &[(&str, &str)] = &[
    ("copy", "file_copy"),
    ("systemd", "service"),
    ("systemd_service", "service"),
];

/// The built-in module called `name`, or whose Ansible alias it is.
pub fn builtin(name: &str) -> Option<&'static dyn Module> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, target)| *target);
    table()
        .binary_search_by_key(&name, |(n, _)| *n)
        .ok()
        .and_then(|i| table().get(i))
        .map(|(_, m)| *m)
}

/// The module called `name`: a built-in, an alias, or a plugin module
/// (see [`crate::plugin`]).
pub fn get(name: &str) -> Option<&'static dyn Module> {
    builtin(name).or_else(|| crate::plugin::get(name).map(|p| p as &dyn Module))
}

/// Every built-in module, sorted by name.
pub fn all() -> &'static [&'static dyn Module] {
    static ALL: OnceLock<Vec<&'static dyn Module>> = OnceLock::new();
    ALL.get_or_init(|| table().iter().map(|(_, m)| *m).collect())
}

/// Every name a task may use: built-ins, aliases and plugins, sorted.
pub fn names() -> Vec<&'static str> {
    let mut n: Vec<&'static str> = table().iter().map(|(n, _)| *n).collect();
    n.extend(ALIASES.iter().map(|(a, _)| *a));
    n.extend(crate::plugin::names());
    n.sort_unstable();
    n.dedup();
    n
}

/// Runs a shell script on the task's host as the task's become user.
async fn sh(
    ctx: &crate::module::Context,
    script: &str,
) -> Result<crate::connection::ExecOutput, crate::connection::ConnError> {
    ctx.conn
        .exec(&crate::connection::Command {
            cmd: script.to_string(),
            stdin: None,
            timeout: ctx.timeout,
            become_user: ctx.become_user.clone(),
        })
        .await
}

/// What modules share: the outcome of a wrong argument found at run time.
fn arg_failure(e: crate::module::ArgError) -> crate::module::Outcome {
    let mut msg = e.msg;
    if let Some(help) = e.help {
        msg = format!("{msg} ({help})");
    }
    crate::module::Outcome::failed(msg)
}

/// Helpers for module tests: a [`Context`](crate::module::Context) over the
/// local connection in a temp dir, with canned prompt answers.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::local::LocalConnection;
    use crate::module::{Context, Outcome, Progress, Prompter};
    use serde_json::Value;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    /// Answers every prompt the same way and remembers the questions.
    pub(crate) struct CannedPrompter {
        pub(crate) answer: Result<String, String>,
        pub(crate) asked: Mutex<Vec<String>>,
    }

    impl Prompter for CannedPrompter {
        fn ask(&self, prompt: &str) -> Result<String, String> {
            if let Ok(mut asked) = self.asked.lock() {
                asked.push(prompt.to_string());
            }
            self.answer.clone()
        }
    }

    /// Keeps progress lines.
    #[derive(Default)]
    pub(crate) struct Lines(pub(crate) Mutex<Vec<String>>);

    impl Progress for Lines {
        fn update(&self, text: &str) {
            if let Ok(mut l) = self.0.lock() {
                l.push(text.to_string());
            }
        }
    }

    /// An inventory with no other hosts.
    pub(crate) struct NoHosts;

    impl crate::module::Hosts for NoHosts {
        fn connection(
            &self,
            _name: &str,
        ) -> Result<Option<Arc<dyn crate::connection::Connection>>, crate::connection::ConnError>
        {
            Ok(None)
        }
    }

    pub(crate) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    /// A context on the local machine with `base` as the playbook directory.
    pub(crate) fn ctx(base: &Path) -> Context {
        ctx_with(
            base,
            Arc::new(CannedPrompter {
                answer: Ok("yes".into()),
                asked: Mutex::new(Vec::new()),
            }),
        )
    }

    pub(crate) fn ctx_with(base: &Path, prompter: Arc<dyn Prompter>) -> Context {
        Context {
            host: "localhost".into(),
            conn: Arc::new(LocalConnection),
            local: Arc::new(LocalConnection),
            check: false,
            diff: false,
            become_user: None,
            vars: Value::Object(Default::default()),
            base_dir: base.to_path_buf(),
            prompter,
            progress: Arc::new(Lines::default()),
            timeout: None,
            hosts: Arc::new(NoHosts),
        }
    }

    /// Runs a module by name the way the engine does: typed parse, then run.
    pub(crate) async fn run(ctx: &Context, module: &str, args: Value) -> Outcome {
        let m = super::get(module).expect("module registered");
        if let Err(e) = m.parse(&args) {
            return super::arg_failure(e);
        }
        m.run(ctx, args).await.expect("no connection error")
    }

    /// A path inside the temp dir as a string.
    pub(crate) fn p(dir: &Path, name: &str) -> String {
        dir.join(name).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The module name and arguments of a doc example.
    fn example_args(m: &dyn Module) -> (String, Map<String, Value>) {
        let doc = m.doc();
        let node = crate::yaml::parse(doc.example, Path::new("example"))
            .unwrap_or_else(|e| panic!("{}: example is not YAML: {e}", doc.name));
        let task = match node.to_json() {
            Value::Array(mut items) if items.len() == 1 => items.remove(0),
            other => panic!("{}: example must be a list of one task: {other}", doc.name),
        };
        let Value::Object(task) = task else {
            panic!("{}: example task is not a mapping", doc.name)
        };
        assert!(
            task.contains_key("name"),
            "{}: example task has no name",
            doc.name
        );
        let mut args = match task.get(doc.name) {
            Some(Value::Object(a)) => a.clone(),
            Some(Value::String(s)) => args::parse_kv_for(&doc, s)
                .unwrap_or_else(|e| panic!("{}: example args: {e}", doc.name)),
            other => panic!("{}: example does not call the module: {other:?}", doc.name),
        };
        if let Some(Value::Object(extra)) = task.get("args") {
            for (k, v) in extra {
                args.entry(k.clone()).or_insert(v.clone());
            }
        }
        (doc.name.to_string(), args)
    }

    #[test]
    fn registry_is_sorted_and_complete() {
        let builtins: Vec<&str> = all().iter().map(|m| m.doc().name).collect();
        let mut sorted = builtins.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(builtins, sorted);
        for name in &builtins {
            assert!(get(name).is_some_and(|g| g.doc().name == *name));
            assert!(names().contains(name));
        }
        for (alias, target) in ALIASES {
            assert!(!builtins.contains(alias), "alias {alias} is a module name");
            assert!(
                get(alias).is_some_and(|g| g.doc().name == *target),
                "{alias}"
            );
            assert!(names().contains(alias));
        }
        assert!(get("nope").is_none());
        for want in ["command", "file_copy", "pause", "shell", "template"] {
            assert!(get(want).is_some(), "{want}");
        }
    }

    #[test]
    fn docs_are_complete() {
        for m in all() {
            let doc = m.doc();
            assert!(
                !doc.description.is_empty() && !doc.description.contains('\n'),
                "{}",
                doc.name
            );
            let mut seen = BTreeSet::new();
            for a in &doc.args {
                assert!(seen.insert(a.name), "{}: '{}' twice", doc.name, a.name);
                assert!(
                    !a.description.is_empty(),
                    "{}: '{}' undocumented",
                    doc.name,
                    a.name
                );
                assert!(
                    !(a.required && a.default.is_some()),
                    "{}: '{}'",
                    doc.name,
                    a.name
                );
            }
            if let Some(ff) = doc.free_form {
                assert!(
                    seen.contains(ff),
                    "{}: free form '{ff}' is no argument",
                    doc.name
                );
            }
        }
    }

    #[test]
    fn examples_validate_and_parse() {
        for m in all() {
            let (name, args) = example_args(*m);
            let doc = m.doc();
            args::validate(&doc, &args).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            m.parse(&Value::Object(args))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }

    fn sample(kind: &str) -> Value {
        match kind {
            "bool" => json!(true),
            "int" => json!(1),
            "list" => json!(["x"]),
            "map" => json!({}),
            "mode" => json!("0644"),
            "path" => json!("/tmp/x"),
            k if k.contains('|') => json!(k.split('|').next().unwrap_or_default()),
            _ => json!("x"),
        }
    }

    /// Every documented argument is a field of the params struct, and the
    /// struct has no field the doc does not list.
    #[test]
    fn docs_match_params() {
        for m in all() {
            let (name, base) = example_args(*m);
            let doc = m.doc();
            for spec in &doc.args {
                let mut args = base.clone();
                args.insert(spec.name.to_string(), sample(spec.kind));
                if let Err(e) = m.parse(&Value::Object(args)) {
                    assert!(
                        !e.msg.contains("unknown argument"),
                        "{name}: documented '{}' refused: {}",
                        spec.name,
                        e.msg
                    );
                }
            }
            if doc.args.iter().any(|a| a.name == "*") {
                // Takes any name (set_fact): nothing more to match.
                continue;
            }
            let mut args = base.clone();
            args.insert("zz_not_an_arg".into(), json!("x"));
            let e = m
                .parse(&Value::Object(args))
                .expect_err("unknown key refused");
            assert_eq!(e.msg, format!("{name}: unknown argument 'zz_not_an_arg'"));
            assert_eq!(e.arg.as_deref(), Some("zz_not_an_arg"));
            let fields: BTreeSet<&str> = e
                .help
                .as_deref()
                .and_then(|h| h.strip_prefix("expected one of: "))
                .map(|l| l.split(", ").collect())
                .unwrap_or_default();
            let documented: BTreeSet<&str> = doc.args.iter().map(|a| a.name).collect();
            assert_eq!(fields, documented, "{name}: params struct and doc differ");
        }
    }

    #[test]
    fn unknown_argument_suggests() {
        let m = get("file_copy").expect("file_copy");
        let e = m
            .parse(&json!({"src": "a", "dst": "/tmp/x"}))
            .expect_err("refused");
        assert_eq!(e.msg, "file_copy: unknown argument 'dst'");
        assert_eq!(e.help.as_deref(), Some("did you mean 'dest'?"));
        assert_eq!(e.arg.as_deref(), Some("dst"));
        let doc = m.doc();
        let args = json!({"src": "a", "dst": "/tmp/x"});
        let e = args::validate(&doc, args.as_object().expect("map")).expect_err("refused");
        assert_eq!(e.msg, "file_copy: unknown argument 'dst'");
        assert_eq!(e.help.as_deref(), Some("did you mean 'dest'?"));
    }
}
