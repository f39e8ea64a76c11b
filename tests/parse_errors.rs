//! Bad playbooks: exit 4, the right file:line:column, a hint, nothing run.

mod support;
use support::Project;

/// (playbook text, "line:col", message fragment, hint fragment or "").
const CASES: &[(&str, &str, &str, &str)] = &[
    ("- hosts: all\n  tasks: [\n", "3:1", "YAML syntax error", ""),
    ("- hosts: all\n\ttasks: []\n", "2:1", "tab", ""),
    ("- hosts: localhost\n  hosts: all\n", "2:3", "duplicate key 'hosts'", ""),
    ("- hosts: localhost\n  tasks:\n    - shel: touch {{ root }}/ran\n", "3:7", "unknown module or task key 'shel'", "did you mean 'shell'?"),
    (
        "- hosts: localhost\n  tasks:\n    - file_copy:\n        dst: /tmp/x\n        content: y\n",
        "4:9",
        "unknown argument 'dst'",
        "did you mean 'dest'?",
    ),
    (
        "- hosts: localhost\n  tasks:\n    - file_copy:\n        dest: /tmp/x\n        content: y\n        backup: maybe\n",
        "6:9",
        "backup",
        "",
    ),
    ("- hosts: localhost\n  tasks:\n    - name: x\n      command: \"true\"\n      whn: x\n", "5:7", "unknown module or task key 'whn'", "did you mean 'when'?"),
    ("- hosts: localhost\n  taks: []\n", "2:3", "unknown play key 'taks'", "did you mean 'tasks'?"),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      needs: [nope]\n", "4:15", "no task or play has the id 'nope'", ""),
    (
        "- hosts: localhost\n  strategy: graph\n  tasks:\n    - name: first\n      id: a\n      needs: b\n      command: \"true\"\n    - name: second\n      id: b\n      needs: a\n      command: \"true\"\n",
        "",
        "a cycle",
        "",
    ),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      when: x ==\n", "4:", "in expression", ""),
    ("- hosts: localhost\n  tasks:\n    - name: nothing to do\n", "3:7", "calls no module", ""),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      notify: restart dovecto\n  handlers:\n    - name: restart dovecot\n      command: \"true\"\n", "4:15", "no handler named 'restart dovecto'", "did you mean 'restart dovecot'?"),
    ("hosts: all\n", "1:1", "a playbook is a list of plays", ""),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      loop: 3\n", "4:13", "loop takes a list", ""),
    ("- hosts: localhost\n  tasks:\n    - shell: echo {{ unclosed\n", "3:19", "unclosed", ""),
    ("- tasks: []\n", "1:3", "needs `hosts:`", ""),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      shell: \"true\"\n", "4:7", "one module", ""),
    ("- hosts: localhost\n  tasks:\n    - command:\n        cmd: \"true\"\n        chdri: /tmp\n", "5:9", "unknown argument 'chdri'", "did you mean 'chdir'?"),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      when: \"\\\"a\\\" == \\\"a\\\" and x is defnied\"\n", "4:38", "unknown test 'defnied'", "did you mean 'defined'?"),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      when: >-\n        x is defined and\n        y is defnied\n", "6:14", "unknown test", ""),
    ("- hosts: localhost\n  tasks:\n    - debug:\n        msg: \"{{ inventory_hostname | upper }}\"\n", "4:37", "filters (`|`) are Jinja syntax", ""),
    ("- hosts: localhost\n  tasks:\n    - shell: |\n        echo one\n        echo {{ two\n", "5:14", "unclosed", ""),
    ("- hosts: localhost\n  tasks:\n    - shell:\n", "3:7", "missing required argument 'cmd'", ""),
    ("- hosts: localhost\n  tasks:\n    - shell: touch {{ root }}/ran\n    - shell: \"{% if x %}echo{% endif %}\"\n", "4:15", "Jinja", ""),
    ("- hosts: localhost\n  vars: {v: \"{{ inventory_hostname | upper }}\"}\n  tasks:\n    - shell: touch {{ root }}/ran\n", "2:36", "Jinja", ""),
    ("- hosts: localhost\n  tasks:\n    - shell: touch {{ root }}/ran\n    - assert:\n        that: [\"x ==\"]\n", "5:9", "expected an operand", ""),
    ("- hosts: localhost\n  tasks:\n    - shell: touch {{ root }}/ran\n    - template: src=nope.hbs dest=/tmp/x\n", "4:17", "src 'nope.hbs' not found", ""),
    ("- hosts: localhost\n  tasks:\n    - name: \"{{ x | upper }}\"\n      shell: touch {{ root }}/ran\n", "3:19", "Jinja", ""),
    ("- hosts: localhost\n  tasks:\n    - command:\n        cmd: \"true\"\n        argv: [\"true\"]\n", "", "command", ""),
    ("- hosts: localhost\n  tasks:\n    - command: \"true\"\n      register: my-var\n", "4:17", "not a valid variable name", "did you mean 'my_var'?"),
    ("- hosts:\n  tasks:\n    - command: \"true\"\n", "1:3", "hosts takes a string", ""),
    ("- hosts: localhost\n  tasks:\n    - shell: touch {{ root }}/ran\n    - debug: msg={{ item }}\n      loop:\n        - ok\n        - \"{{ x | trim }}\"\n", "7:17", "Jinja", ""),
    ("- hosts: localhost\n  tasks:\n    - set_fact: {\"1bad\": x}\n", "3:18", "not a valid variable name", ""),
    ("- hosts: localhost\n  tasks:\n    - debug: {var: \"r.(x\"}\n", "3:15", "debug: var", ""),
    ("- hosts: localhost\n  tasks:\n    - file_copy: dest=/tmp/x contnet=hi\n", "3:30", "unknown argument 'contnet'", "did you mean 'content'?"),
];

#[test]
fn malformed_playbooks_exit_4_with_a_position_and_run_nothing() {
    for (i, (text, at, msg, hint)) in CASES.iter().enumerate() {
        let p = Project::new();
        // Any task that did run would leave this file behind.
        p.file("f.yml", text);
        let r = p.run(&["f.yml", "-i", "hosts.ini"]);
        let ctx = format!("case {i}: {text}\n{}", r.all());
        assert_eq!(r.code, 4, "{ctx}");
        assert!(
            r.stderr.contains(&format!("f.yml:{at}")),
            "want f.yml:{at}\n{ctx}"
        );
        assert!(r.stderr.contains(msg), "want {msg:?}\n{ctx}");
        assert!(r.stderr.contains(hint), "want {hint:?}\n{ctx}");
        assert!(!r.stdout.contains("TASK ["), "{ctx}");
        assert!(!p.exists("ran"), "{ctx}");
        // --syntax-check finds the same error.
        let s = p.run(&["f.yml", "--syntax-check"]);
        assert_eq!(s.code, 4, "syntax-check: {ctx}");
    }
}

#[test]
fn bad_inventory_and_extra_vars() {
    let p = Project::new();
    p.file(
        "ok.yml",
        "- hosts: localhost\n  tasks:\n    - command: \"true\"\n",
    );
    p.file("bad.yml", "all:\n  hosts:\n    a: [1\n");
    let r = p.run(&["ok.yml", "-i", "bad.yml"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("bad.yml:"), "{}", r.all());
    let r = p.run(&["ok.yml", "-i", "hosts.ini", "-e", "{broken"]);
    assert_eq!(r.code, 5, "{}", r.all());
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "- name: p\n  hosts: all\n  vars:\n    a: 1\n  tasks:\n    - name: t\n      shell: echo {{ a }}\n      when: a == 1 and b is not defined\n      loop: [1, 2]\n      register: r\n      notify: h\n  handlers:\n    - name: h\n      command: \"true\"\n",
    "- hosts: x\n  strategy: graph\n  tasks:\n    - id: a\n      command: echo\n    - needs: [a]\n      file_copy: {content: \"x\", dest: /tmp/x, mode: 0644}\n    - block:\n        - debug: msg=hi\n      when: \"'a' in groups\"\n",
    "[web]\nmx[01:03].example.jp a=1 b='x y'\n[web:vars]\nc=[1,2]\n[all:children]\nweb\n",
];
const NOISE: &[&str] = &[
    "{{", "}}", ":", "- ", "\n", "  ", "\t", "'", "\"", "[", "]", "{", "}", "&a", "*a", "<<", "!!",
    "#", "é", "\u{0}", "=", ",", "needs:", "when:", "(", ")",
];

#[test]
fn mutated_inputs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yml");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..1500 {
        let mut text: Vec<char> = SEEDS[round % SEEDS.len()].chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 if !text.is_empty() => {
                    let end = (at + rng.below(8)).min(text.len());
                    text.drain(at.min(end)..end);
                }
                _ => {
                    let noise: Vec<char> = NOISE[rng.below(NOISE.len())].chars().collect();
                    let at = at.min(text.len());
                    text.splice(at..at, noise);
                }
            }
        }
        let src: String = text.into_iter().collect();
        std::fs::write(&path, &src).unwrap();
        let p = path.clone();
        let s = src.clone();
        let outcome = std::panic::catch_unwind(move || {
            let _ = mailrun::playbook::load(std::slice::from_ref(&p), &Default::default());
            let _ = mailrun::inventory::Inventory::load(&[p.display().to_string()]);
            let _ = mailrun::yaml::parse(&s, &p);
        });
        assert!(outcome.is_ok(), "panic on input:\n{src:?}");
    }
}

#[test]
fn a_template_file_with_bad_syntax_is_refused_before_anything_runs() {
    let p = Project::new();
    p.file(
        "t.hbs",
        "line one\nhello {{ inventory_hostname | upper }}\n",
    );
    p.file("f.yml", "- hosts: localhost\n  tasks:\n    - shell: touch {{ root }}/ran\n    - template: src=t.hbs dest={{ root }}/out\n");
    let r = p.run(&["f.yml", "-i", "hosts.ini"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("t.hbs:2:29"), "{}", r.all());
    assert!(!p.exists("ran"));
}

#[test]
fn a_byte_order_mark_is_not_content() {
    let p = Project::new();
    p.file(
        "f.yml",
        "\u{feff}- hosts: localhost\n  tasks:\n    - shell: touch {{ root }}/ran\n",
    );
    let r = p.run(&["f.yml", "-i", "hosts.ini"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(p.exists("ran"));
}
