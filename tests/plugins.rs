//! Plugin modules over the local connection: the README's own examples,
//! misbehaving plugins, describe failures, validation, the search order,
//! the host-side cache. (tests/plugins_lab.rs runs them over SSH.)

mod support;
use std::os::unix::fs::PermissionsExt;
use support::{Project, Run};

/// The code blocks of modules/README.md that are whole plugins (`#!` first).
fn readme_plugins() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/modules/README.md"))
        .expect("modules/README.md");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            None if line.starts_with("```") && line.len() > 3 => block = Some(String::new()),
            Some(b) if line == "```" => {
                if b.starts_with("#!") {
                    out.push(std::mem::take(b));
                }
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

fn plugin(p: &Project, rel: &str, text: &str) {
    let path = p.file(rel, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// HOME inside the project: the local "host" caches plugins there.
fn play(p: &Project, book: &str, extra: &[&str]) -> Run {
    let home = p.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let root = format!("root={}", p.path().display());
    let mut args = vec![book, "-i", "hosts.ini", "--output", "json", "-e", &root];
    args.extend(extra);
    p.run_env(&args, &[("HOME", home.to_str().expect("utf-8"))])
}

fn msg(r: &Run, task: &str, host: &str) -> String {
    r.results(task)
        .iter()
        .rfind(|e| e["host"] == host)
        .and_then(|e| e["msg"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn the_readme_examples_run_twice_with_check_diff_and_register() {
    let p = Project::new();
    let examples = readme_plugins();
    assert_eq!(examples.len(), 2, "one shell and one Python example");
    plugin(&p, "modules/greet.sh", &examples[0]);
    plugin(&p, "modules/note_line.py", &examples[1]);
    p.file(
        "site.yml",
        r#"
- hosts: localhost
  tasks:
    - name: greet
      greet:
        path: "{{ root }}/greeting"
        who: mail admins
    - name: note
      note_line:
        path: "{{ root }}/notes"
        line: Mail moved to new.example.org
      register: noted
    - name: show
      debug:
        msg: "lines={{ noted.lines }} changed={{ noted.changed }}"
      when: noted.changed
"#,
    );
    let check = play(&p, "site.yml", &["--check", "--diff"]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert_eq!(
        check.status("greet", "localhost"),
        "changed",
        "{}",
        check.all()
    );
    assert!(
        !p.exists("greeting") && !p.exists("notes"),
        "check mode wrote"
    );
    let diff = check
        .events()
        .into_iter()
        .find(|e| e["task"] == "note" && !e["diff"].is_null())
        .expect("a diff event");
    assert!(diff.to_string().contains("Mail moved"), "{diff}");

    let first = play(&p, "site.yml", &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(first.changed("localhost"), 2, "{}", first.all());
    assert_eq!(msg(&first, "show", "localhost"), "lines=1 changed=true");
    assert_eq!(p.read("greeting").as_deref(), Some("hello, mail admins\n"));
    assert_eq!(
        p.read("notes").as_deref(),
        Some("Mail moved to new.example.org\n")
    );

    let second = play(&p, "site.yml", &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.changed("localhost"), 0, "{}", second.all());
    assert_eq!(second.status("show", "localhost"), "skipped");

    // Cached on the "host" once, by checksum, in a private directory.
    let cache = p.path().join("home/.cache/mailrun/plugins");
    let mode = std::fs::metadata(&cache)
        .expect("cache dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let mut files: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].starts_with("greet-") && files[0].len() == "greet-".len() + 64);

    // A changed plugin is a new file; the old version goes.
    plugin(&p, "modules/greet.sh", &format!("{}# v2\n", examples[0]));
    let third = play(&p, "site.yml", &[]);
    assert_eq!(third.code, 0, "{}", third.all());
    let greets: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("greet-"))
        .collect();
    assert_eq!(greets.len(), 1, "{greets:?}");
    assert_ne!(greets[0], files[0]);
}

const DESCRIBE_OK: &str = r#"case "$req" in *'"request":"describe"'*) printf '{"protocol":1,"name":"%s","description":"Misbehaves.","check_mode":true,"args":{"x":{"type":"str","description":"Anything."}},"example":""}\n' "$(basename "$0" | sed 's/[.-].*//')"; exit 0;; esac"#;

/// A plugin that describes itself properly, then runs `body`.
fn misbehaving(p: &Project, name: &str, body: &str) {
    plugin(
        p,
        &format!("modules/{name}.sh"),
        &format!("#!/bin/sh\nreq=$(cat)\n{DESCRIBE_OK}\n{body}\n"),
    );
}

#[test]
fn misbehaving_plugins_fail_naming_the_module_and_showing_stderr() {
    let p = Project::new();
    misbehaving(
        &p,
        "chatty",
        "echo 'chatty says hello'; echo 'debug line' >&2",
    );
    misbehaving(&p, "silent", "echo 'nothing to say' >&2");
    misbehaving(&p, "nochanged", r#"echo '{"failed": false}'"#);
    misbehaving(
        &p,
        "badtype",
        r#"echo '{"changed": "yes", "failed": false}'"#,
    );
    misbehaving(
        &p,
        "twice",
        r#"echo '{"changed": false, "failed": false}{"changed": true, "failed": false}'"#,
    );
    misbehaving(&p, "crash", "echo 'about to crash' >&2; kill -SEGV $$");
    misbehaving(
        &p,
        "liar",
        r#"echo '{"changed": false, "failed": false}'; exit 3"#,
    );
    misbehaving(
        &p,
        "sleepy",
        "echo 'going to sleep' >&2; sleep 60; echo '{}'",
    );
    misbehaving(
        &p,
        "honest",
        r#"echo 'Traceback: quota' >&2; echo '{"changed": false, "failed": true, "msg": "over quota", "rc": 7}'; exit 1"#,
    );
    misbehaving(
        &p,
        "fine",
        r#"echo '{"changed": true, "failed": false, "msg": "did it"}'"#,
    );
    let tasks: String = [
        "chatty",
        "silent",
        "nochanged",
        "badtype",
        "twice",
        "crash",
        "liar",
        "sleepy",
        "honest",
        "fine",
    ]
    .iter()
    .map(|m| format!("    - name: {m}\n      {m}:\n      ignore_errors: true\n      timeout: 3\n"))
    .collect();
    p.file("bad.yml", &format!("- hosts: localhost\n  tasks:\n{tasks}"));
    let r = play(&p, "bad.yml", &[]);
    assert_eq!(r.code, 0, "every failure was ignored: {}", r.all());
    let expect: &[(&str, &[&str])] = &[
        (
            "chatty",
            &[
                "plugin module chatty",
                "not one JSON object",
                "chatty says hello",
                "stderr: debug line",
            ],
        ),
        (
            "silent",
            &[
                "plugin module silent",
                "got nothing",
                "stderr: nothing to say",
            ],
        ),
        ("nochanged", &["plugin module nochanged", "lacks 'changed'"]),
        (
            "badtype",
            &["plugin module badtype", "'changed' must be true or false"],
        ),
        ("twice", &["plugin module twice", "not one JSON object"]),
        (
            "crash",
            &["plugin module crash", "signal 11", "stderr: about to crash"],
        ),
        ("liar", &["plugin module liar", "status 3"]),
        (
            "sleepy",
            &[
                "plugin module sleepy",
                "timeout of 3 s",
                "stderr: going to sleep",
            ],
        ),
        (
            "honest",
            &[
                "plugin module honest: over quota",
                "stderr: Traceback: quota",
            ],
        ),
    ];
    for (task, words) in expect {
        assert_eq!(r.status(task, "localhost"), "failed", "{task}: {}", r.all());
        let m = msg(&r, task, "localhost");
        for w in *words {
            assert!(m.contains(w), "{task}: {w:?} not in {m:?}");
        }
    }
    assert_eq!(r.status("fine", "localhost"), "changed", "{}", r.all());
    // register keeps the plugin's own data, also on failure.
    let honest = r.results("honest");
    assert_eq!(honest[0]["result"]["rc"], 7, "{}", r.all());
    assert_eq!(
        honest[0]["result"]["stderr"],
        "Traceback: quota\n",
        "{}",
        r.all()
    );
    let sleepy = r.results("sleepy");
    assert_eq!(
        sleepy[0]["result"]["stderr"],
        "going to sleep\n",
        "{}",
        r.all()
    );
    // The sleeper was stopped, not left behind.
    let left = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("{}/home/.cache/mailrun/plugins/sleepy-", p.path().display()),
        ])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "sleepy still runs: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_plugin_that_cannot_describe_itself_stops_the_run_before_any_host() {
    let p = Project::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "garbage",
            "echo 'usage: garbage [options]'; exit 2",
            "not one JSON object",
        ),
        (
            "typo",
            r#"echo '{"protocol":1,"name":"typo","description":"d","check_mode":true,"args":{"a":{"type":"str","requried":true,"description":"a"}},"example":""}'"#,
            "did you mean 'required'",
        ),
        (
            "future",
            r#"echo '{"protocol":2,"name":"future","description":"d","check_mode":true,"args":{},"example":""}'"#,
            "speaks protocol 2",
        ),
        (
            "dies",
            "echo 'ImportError: no module named yaml' >&2; exit 1",
            "ImportError",
        ),
        // A child holding the pipes must not stretch the 10 s limit.
        ("hangs", "sleep 60 & sleep 60", "did not answer within 10 s"),
    ];
    for (name, body, want) in cases {
        plugin(
            &p,
            &format!("modules/{name}"),
            &format!("#!/bin/sh\ncat >/dev/null\n{body}\n"),
        );
        p.file(
            "b.yml",
            &format!(
                "- hosts: localhost\n  tasks:\n    - name: first\n      shell: touch {{{{ root }}}}/ran\n    - name: it\n      {name}: {{}}\n"
            ),
        );
        let r = play(&p, "b.yml", &[]);
        assert_eq!(r.code, 4, "{name}: {}", r.all());
        assert!(
            r.stderr.contains(&format!("plugin module {name}")) && r.stderr.contains(want),
            "{name}: {}",
            r.all()
        );
        assert!(
            r.stderr.contains("b.yml:6:7"),
            "{name}: position: {}",
            r.all()
        );
        assert!(!p.exists("ran"), "{name}: a task ran");
        let doc = p.run_raw(&["doc", name]);
        assert_eq!(doc.code, 1, "{name}: {}", doc.all());
        assert!(doc.stderr.contains(want), "{name}: {}", doc.all());
    }
}

#[test]
fn plugin_arguments_are_checked_before_anything_runs() {
    let p = Project::new();
    let examples = readme_plugins();
    plugin(&p, "modules/greet.sh", &examples[0]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "greet: path=/x whom=me",
            "unknown argument 'whom'",
            "did you mean 'who'",
        ),
        ("greet: who=me", "missing required argument 'path'", ""),
        (
            "greet:\n        path: [1, 2]",
            "argument 'path' expects a string",
            "",
        ),
    ];
    for (task, want, help) in cases {
        p.file(
            "b.yml",
            &format!("- hosts: localhost\n  tasks:\n    - shell: touch {{{{ root }}}}/ran\n    - {task}\n"),
        );
        let r = play(&p, "b.yml", &[]);
        assert_eq!(r.code, 4, "{task}: {}", r.all());
        assert!(
            r.stderr.contains(want) && r.stderr.contains(help),
            "{task}: {}",
            r.all()
        );
        assert!(r.stderr.contains("error: b.yml:"), "{task}: {}", r.all());
        assert!(!p.exists("ran"));
    }
    // Ad hoc: the same checks, the same exit code.
    let r = p.run_raw(&[
        "adhoc",
        "localhost",
        "-i",
        "hosts.ini",
        "-m",
        "greet",
        "-a",
        "path=/x whom=me",
    ]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("did you mean 'who'"), "{}", r.all());
    // A typo in the module name suggests the plugin.
    let r = p.run_raw(&["adhoc", "localhost", "-i", "hosts.ini", "-m", "gret"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("did you mean 'greet'"), "{}", r.all());
}

#[test]
fn adhoc_and_no_log_work_for_plugins() {
    let p = Project::new();
    misbehaving(
        &p,
        "secretive",
        r#"printf '{"changed": false, "failed": false, "msg": "token s3cr3t-t0ken", "token": "s3cr3t-t0ken", "uid": %s}\n' "$(id -u)""#,
    );
    let home = p.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let env = [("HOME", home.to_str().expect("utf-8"))];
    let r = p.run_env(
        &[
            "adhoc",
            "localhost",
            "-i",
            "hosts.ini",
            "-m",
            "secretive",
            "-a",
            "x=1",
            "--output",
            "json",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("s3cr3t-t0ken"));
    // Ansible's -c local and --task-timeout, for a plugin that hangs.
    misbehaving(&p, "hangs", "sleep 60");
    let r = p.run_env(
        &[
            "adhoc",
            "anyhost",
            "-i",
            "anyhost,",
            "-c",
            "local",
            "-m",
            "hangs",
            "--task-timeout",
            "2",
            "--output",
            "json",
        ],
        &env,
    );
    assert_eq!(r.code, 2, "{}", r.all());
    let m = msg(&r, "hangs", "anyhost");
    assert!(
        m.contains("plugin module hangs") && m.contains("timeout of 2 s"),
        "{}",
        r.all()
    );
    p.file(
        "b.yml",
        "- hosts: localhost\n  tasks:\n    - name: quiet\n      secretive:\n        x: \"1\"\n      no_log: true\n      register: s\n    - name: uid\n      debug:\n        msg: \"{{ s.uid }}\"\n",
    );
    for out in ["json", "human"] {
        let r = p.run_env(&["b.yml", "-i", "hosts.ini", "--output", out, "-vvv"], &env);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(!r.all().contains("s3cr3t"), "no_log leaked: {}", r.all());
    }
}

#[test]
fn search_order_shadowing_listing_and_doc() {
    let p = Project::new();
    let examples = readme_plugins();
    // Beside the playbook (the project dir here) and on --module-path: the
    // --module-path one wins, and the other is named in a warning.
    plugin(&p, "modules/greet.sh", &examples[0]);
    plugin(
        &p,
        "elsewhere/greet",
        &examples[0].replace(
            "Writes a greeting to a file.",
            "Writes a greeting (elsewhere).",
        ),
    );
    plugin(&p, "modules/ping.sh", "#!/bin/sh\necho '{}'\n");
    p.file("modules/notes.sh", "#!/bin/sh\n");
    p.file("modules/README.md", "# mine\n");
    let r = p.run_raw(&["modules", "--module-path", "elsewhere"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("greet").contains("(elsewhere)") && line("greet").contains("plugin"),
        "{}",
        r.all()
    );
    assert!(line("copy").contains("alias of file_copy"), "{}", r.all());
    assert!(line("file_copy").contains("Copies a file"), "{}", r.all());
    assert!(!line("ping").contains("plugin"), "{}", r.all());
    assert!(r.stderr.contains("already found at"), "{}", r.all());
    assert!(
        r.stderr.contains("'ping' is a built-in module name"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("notes.sh: not executable"), "{}", r.all());
    assert!(!r.all().contains("README.md:"), "{}", r.all());

    // MAILRUN_MODULE_PATH comes after --module-path, before the playbook's.
    let r = p.run_env(&["modules"], &[("MAILRUN_MODULE_PATH", "elsewhere")]);
    assert!(r.stdout.contains("(elsewhere)"), "{}", r.all());
    let r = p.run_env(
        &["modules", "--module-path", "modules"],
        &[("MAILRUN_MODULE_PATH", "elsewhere")],
    );
    assert!(!r.stdout.contains("(elsewhere)"), "{}", r.all());

    // doc shows what describe said: the same source as validation.
    let d = p.run_raw(&["doc", "greet"]);
    assert_eq!(d.code, 0, "{}", d.all());
    for want in [
        "greet — Writes a greeting to a file.",
        "check mode: supported",
        "path",
        "(path, required)",
        "who",
        "default world",
        "example:",
        "who: mail admins",
    ] {
        assert!(d.stdout.contains(want), "{want}: {}", d.all());
    }
    let d = p.run_raw(&["doc", "copy"]);
    assert!(
        d.stdout.contains("Ansible's name for file_copy") && d.stdout.contains("dest"),
        "{}",
        d.all()
    );

    // A playbook in a subfolder finds modules/ beside it, and the project's.
    plugin(
        &p,
        "plays/modules/only_here.sh",
        &examples[0].replace("\"greet\"", "\"only_here\""),
    );
    p.file(
        "plays/site.yml",
        "- hosts: localhost\n  tasks:\n    - only_here:\n        path: \"{{ root }}/a\"\n    - greet:\n        path: \"{{ root }}/b\"\n",
    );
    let r = play(&p, "plays/site.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(p.exists("a") && p.exists("b"));
}

#[test]
fn arguments_arrive_converted_to_their_declared_types_with_defaults() {
    let p = Project::new();
    plugin(
        &p,
        "modules/echo_args.py",
        r#"#!/usr/bin/env python3
import json, sys
req = json.load(sys.stdin)
if req["request"] == "describe":
    print(json.dumps({"protocol": 1, "name": "echo_args", "description": "Echoes.", "check_mode": True,
        "args": {"n": {"type": "int", "description": "n"},
                 "flag": {"type": "bool", "description": "f"},
                 "names": {"type": "list", "description": "l"},
                 "opts": {"type": "dict", "description": "d"},
                 "ratio": {"type": "float", "description": "r"},
                 "who": {"type": "str", "description": "w"},
                 "mode": {"type": "str", "choices": ["a", "b"], "default": "b", "description": "m"},
                 "absent": {"type": "str", "description": "never given"}},
        "example": "", "free_form": "who"}))
else:
    print(json.dumps({"changed": False, "failed": False, "args": req["args"], "check": req["check"]}))
"#,
    );
    let home = p.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let env = [("HOME", home.to_str().expect("utf-8"))];
    let r = p.run_env(
        &[
            "adhoc",
            "localhost",
            "-i",
            "hosts.ini",
            "-m",
            "echo_args",
            "--output",
            "json",
            "-a",
            r#"n=3 flag=yes names=a,b opts='{"k": 1}' ratio=1.5 who=5000"#,
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let args = &r.results("echo_args")[0]["result"]["args"];
    assert_eq!(
        args,
        &serde_json::json!({"n": 3, "flag": true, "names": ["a", "b"], "opts": {"k": 1}, "ratio": 1.5, "who": "5000", "mode": "b"}),
        "{}",
        r.all()
    );
    // Templated values are converted after rendering; a bad choice is refused first.
    p.file(
        "b.yml",
        "- hosts: localhost\n  vars:\n    many: x,y\n    forty: \"40\"\n  tasks:\n    - echo_args:\n        names: \"{{ many }}\"\n        n: \"{{ forty }}\"\n",
    );
    let r = p.run_env(&["b.yml", "-i", "hosts.ini", "--output", "json"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.results("echo_args")[0]["result"]["args"]["names"],
        serde_json::json!(["x", "y"])
    );
    let r = p.run_env(
        &[
            "adhoc",
            "localhost",
            "-i",
            "hosts.ini",
            "-m",
            "echo_args",
            "-a",
            "mode=c",
        ],
        &env,
    );
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(
        r.stderr.contains("'mode'") && r.stderr.contains("'a', 'b'")
            || r.stderr.contains("one of the choices"),
        "{}",
        r.all()
    );
    // Free text with k=v words of its own arguments; YAML lines ad hoc.
    let adhoc = |a: &str| {
        let r = p.run_env(
            &[
                "adhoc",
                "localhost",
                "-i",
                "hosts.ini",
                "-m",
                "echo_args",
                "--output",
                "json",
                "-a",
                a,
            ],
            &env,
        );
        assert_eq!(r.code, 0, "{a}: {}", r.all());
        r.results("echo_args")[0]["result"]["args"].clone()
    };
    let args = adhoc("hello there n=3");
    assert_eq!(
        (args["who"].clone(), args["n"].clone()),
        ("hello there".into(), 3.into())
    );
    let args = adhoc("n: 4\nflag: no");
    assert_eq!(
        (args["n"].clone(), args["flag"].clone()),
        (4.into(), false.into())
    );
    // A value that cannot be converted at run time still registers a result.
    p.file(
        "reg.yml",
        "- hosts: localhost\n  vars:\n    bad: abc\n  tasks:\n    - echo_args:\n        n: \"{{ bad }}\"\n      register: r\n      ignore_errors: true\n    - debug:\n        msg: \"{{ r.msg }}\"\n",
    );
    let r = p.run_env(&["reg.yml", "-i", "hosts.ini", "--output", "json"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        msg(&r, "debug", "localhost").contains("expects an integer"),
        "{}",
        r.all()
    );
}

#[test]
fn a_damaged_cache_is_put_right_and_a_file_not_taken_is_explained() {
    let p = Project::new();
    misbehaving(
        &p,
        "fine",
        r#"echo '{"changed": false, "failed": false, "msg": "genuine"}'"#,
    );
    p.file(
        "b.yml",
        "- hosts: localhost\n  tasks:\n    - name: fine\n      fine:\n",
    );
    let r = play(&p, "b.yml", &[]);
    assert_eq!(msg(&r, "fine", "localhost"), "genuine", "{}", r.all());
    let cache = p.path().join("home/.cache/mailrun/plugins");
    let file = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .find(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fine-"))
        })
        .expect("cached");
    // Tampered, then truncated: each run puts the genuine file back.
    for bad in [
        "#!/bin/sh\necho '{\"changed\": true, \"failed\": false, \"msg\": \"TAMPERED\"}'\n",
        "",
    ] {
        std::fs::write(&file, bad).expect("tamper");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let r = play(&p, "b.yml", &[]);
        assert_eq!(msg(&r, "fine", "localhost"), "genuine", "{}", r.all());
        let mode =
            |f: &std::path::Path| std::fs::metadata(f).expect("stat").permissions().mode() & 0o777;
        assert_eq!((mode(&cache), mode(&file)), (0o700, 0o700));
    }
    // A plugin file that is not executable: the unknown module says why.
    p.file("modules/notexec.sh", "#!/bin/sh\n");
    let r = p.run_raw(&["adhoc", "localhost", "-i", "hosts.ini", "-m", "notexec"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(
        r.stderr.contains("unknown module 'notexec'") && r.stderr.contains("chmod +x"),
        "{}",
        r.all()
    );
}

#[test]
fn the_shipped_plugins_describe_themselves_and_their_examples_check() {
    let p = Project::new();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/modules");
    let list = p.run_raw(&["modules", "--module-path", shipped]);
    assert_eq!(list.code, 0, "{}", list.all());
    assert!(list.stderr.is_empty(), "{}", list.all());
    for name in ["mailbox_report", "dovecot_user"] {
        assert!(
            list.stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("[plugin: ")),
            "{}",
            list.all()
        );
        let doc = p.run_raw(&["doc", name, "--module-path", shipped]);
        assert_eq!(doc.code, 0, "{}", doc.all());
        let example = doc.stdout.split("\nexample:\n").nth(1).expect("an example");
        let tasks: String = example.lines().map(|l| format!("    {l}\n")).collect();
        p.file(
            "ex.yml",
            &format!("- hosts: localhost\n  vars:\n    alice_password: x\n  tasks:\n{tasks}"),
        );
        let r = p.run_raw(&["ex.yml", "--syntax-check", "--module-path", shipped]);
        assert_eq!(r.code, 0, "{name}: {}\n{tasks}", r.all());
    }
}
