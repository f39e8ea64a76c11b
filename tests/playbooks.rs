//! Integration tests: the binary on playbooks over the local connection.

mod support;
use support::Project;

#[test]
fn independent_branches_run_concurrently() {
    // `waiter` only succeeds if `maker` runs while it waits: proof by order,
    // not by timing thresholds.
    let p = Project::new();
    p.file(
        "b.yml",
        r#"
- hosts: localhost
  strategy: graph
  tasks:
    - name: waiter
      shell: for i in $(seq 300); do test -f {{ root }}/flag && exit 0; sleep 0.1; done; exit 1
    - name: maker
      shell: touch {{ root }}/flag
"#,
    );
    let r = p.play("b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    // Both started before either finished, and the waiter (which can only
    // succeed while the maker runs) succeeded.
    let ev = r.events();
    let first_result = ev.iter().position(|e| e["event"] == "host_result").unwrap();
    let started = |task: &str| {
        ev.iter()
            .position(|e| e["event"] == "task_start" && e["task"] == task)
            .unwrap()
    };
    assert!(
        started("waiter") < first_result && started("maker") < first_result,
        "{}",
        r.all()
    );
    assert_eq!(r.status("waiter", "localhost"), "changed");
}

#[test]
fn a_failure_skips_its_dependents_but_not_the_unrelated_branch() {
    let p = Project::new();
    p.file(
        "f.yml",
        r#"
- hosts: localhost
  strategy: graph
  tasks:
    - name: broken
      id: broken
      command: "false"
    - name: dependent
      needs: [broken]
      shell: touch {{ root }}/dependent
    - name: unrelated
      shell: touch {{ root }}/unrelated
"#,
    );
    let r = p.play("f.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.status("broken", "localhost"), "failed");
    assert_eq!(r.status("dependent", "localhost"), "skipped");
    let dep = &r.results("dependent")[0];
    assert!(
        dep["msg"].as_str().unwrap().contains("broken"),
        "{}",
        r.all()
    );
    assert_eq!(r.status("unrelated", "localhost"), "changed");
    assert!(p.exists("unrelated") && !p.exists("dependent"));
}

#[test]
fn cross_host_needs_wait_and_skip() {
    let p = Project::new();
    p.file(
        "x.yml",
        r#"
- hosts: alpha
  needs: []
  tasks:
    - name: produce
      id: produce
      shell: sleep 0.3; echo data > {{ root }}/produced
- hosts: beta
  needs: []
  tasks:
    - name: consume
      needs: [produce]
      shell: cat {{ root }}/produced
"#,
    );
    let r = p.play("x.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("consume", "beta"), "changed");

    p.file(
        "y.yml",
        r#"
- hosts: alpha
  tasks:
    - name: produce
      id: produce
      command: "false"
- hosts: beta
  needs: []
  tasks:
    - name: consume
      needs: [produce]
      command: "true"
    - name: other
      shell: echo fine
"#,
    );
    let r = p.play("y.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.status("consume", "beta"), "skipped");
    // The host's chain after the skipped node is skipped too (linear order).
    assert_eq!(r.status("other", "beta"), "skipped");
}

#[test]
fn handlers_fire_once_at_the_end_of_the_play() {
    let p = Project::new();
    p.file(
        "h.yml",
        r#"
- hosts: localhost
  tasks:
    - name: one
      shell: echo 1
      notify: bump
    - name: two
      shell: echo 2
      notify: [bump]
    - name: three
      shell: echo 3
      changed_when: false
      notify: other
  handlers:
    - name: bump
      shell: echo x >> {{ root }}/bumped
    - name: other
      shell: echo y >> {{ root }}/other
"#,
    );
    let r = p.play("h.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("bumped").unwrap(), "x\n");
    assert!(
        !p.exists("other"),
        "a handler notified by an unchanged task must not run"
    );
    let ev = r.events();
    let h = ev
        .iter()
        .position(|e| e["task"] == "bump" && e["event"] == "host_result")
        .unwrap();
    let three = ev
        .iter()
        .position(|e| e["task"] == "three" && e["event"] == "host_result")
        .unwrap();
    assert!(h > three, "handlers run after the play's tasks");
}

#[test]
fn loops_register_and_when() {
    let p = Project::new();
    p.file(
        "l.yml",
        r#"
- hosts: localhost
  vars:
    users: [alice, bob, carol]
  tasks:
    - name: each
      shell: echo {{ item }} >> {{ root }}/users
      loop: "{{ users }}"
      loop_control:
        label: "user {{ item }}"
    - name: greet
      command: echo hello
      register: greeting
    - name: when true
      command: "true"
      when: greeting.stdout == 'hello' and greeting.rc == 0
    - name: when false
      command: "true"
      when: greeting.stdout == 'bye'
    - name: looped when
      shell: echo {{ item }} >> {{ root }}/picked
      loop: [1, 2, 3, 4]
      when: item > 2
      register: picked
    - name: results counted
      command: "true"
      when: picked.results | length == 4
"#,
    );
    let r = p.play("l.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("users").unwrap(), "alice\nbob\ncarol\n");
    let labels: Vec<String> = r
        .results("each")
        .iter()
        .filter_map(|e| e["item"].as_str().map(String::from))
        .collect();
    assert_eq!(labels, ["user alice", "user bob", "user carol"]);
    assert_eq!(r.status("when true", "localhost"), "changed");
    assert_eq!(r.status("when false", "localhost"), "skipped");
    assert_eq!(p.read("picked").unwrap(), "3\n4\n");
    assert_eq!(r.status("results counted", "localhost"), "changed");
}

#[test]
fn check_mode_changes_nothing() {
    let p = Project::new();
    p.file(
        "c.yml",
        r#"
- hosts: localhost
  tasks:
    - name: write
      file_copy:
        content: "hello\n"
        dest: "{{ root }}/out.txt"
    - name: run
      shell: touch {{ root }}/ran
"#,
    );
    let r = p.play("c.yml", &["--check", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("write", "localhost"), "changed");
    assert!(!p.exists("out.txt") && !p.exists("ran"), "{}", r.all());
    let r = p.play("c.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("out.txt").unwrap(), "hello\n");
    let r = p.play("c.yml", &["--check"]);
    assert_eq!(r.status("write", "localhost"), "ok", "{}", r.all());
}

#[test]
fn undefined_variables_fail_the_task_naming_task_host_and_variable() {
    let p = Project::new();
    p.file(
        "u.yml",
        r#"
- hosts: localhost
  tasks:
    - name: uses a typo
      command: echo {{ users_fiel }}
    - name: never
      command: "true"
"#,
    );
    let r = p.play("u.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let msg = r.results("uses a typo")[0]["msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("uses a typo") && msg.contains("localhost") && msg.contains("users_fiel"),
        "{msg}"
    );
    assert_eq!(r.status("never", "localhost"), "none");
}

#[test]
fn retries_until_and_failed_when() {
    let p = Project::new();
    p.file(
        "r.yml",
        r#"
- hosts: localhost
  tasks:
    - name: count up
      shell: echo x >> {{ root }}/n; wc -l < {{ root }}/n
      register: n
      until: n.stdout | int >= 3
      retries: 5
      delay: 0
    - name: tolerated
      shell: echo "already there" >&2; exit 1
      register: t
      failed_when: t.rc != 0 and 'already' not in t.stderr
    - name: ignored
      command: "false"
      ignore_errors: true
    - name: still runs
      command: "true"
"#,
    );
    let r = p.play("r.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("n").unwrap().lines().count(), 3);
    assert_eq!(r.status("tolerated", "localhost"), "changed");
    assert_eq!(r.status("ignored", "localhost"), "failed");
    assert_eq!(r.status("still runs", "localhost"), "changed");
    assert_eq!(r.recap()["hosts"]["localhost"]["ignored"], 1);
}

#[test]
fn any_errors_fatal_stops_every_host() {
    let p = Project::new();
    p.file(
        "a.yml",
        r#"
- hosts: pair
  any_errors_fatal: true
  tasks:
    - name: fail on alpha
      command: "false"
      when: inventory_hostname == 'alpha'
    - name: slow on beta
      shell: sleep 0.5
      when: inventory_hostname == 'beta'
    - name: next
      shell: touch {{ root }}/next-{{ inventory_hostname }}
"#,
    );
    let r = p.play("a.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        !p.exists("next-beta") && !p.exists("next-alpha"),
        "{}",
        r.all()
    );
}

#[test]
fn no_log_hides_results_in_every_output() {
    let p = Project::new();
    p.file(
        "s.yml",
        r#"
- hosts: localhost
  vars:
    secret: hunter2-SECRET
  tasks:
    - name: secret
      command: echo {{ secret }}
      no_log: true
    - name: secret fails
      shell: echo {{ secret }} >&2; exit 3
      no_log: true
      ignore_errors: true
"#,
    );
    for out in ["json", "human"] {
        let r = p.run(&["s.yml", "-i", "hosts.ini", "--output", out, "-vvv"]);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(
            !r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"),
            "{}",
            r.all()
        );
    }
}

#[test]
fn run_once_delegate_to_tags_limit_and_start_at() {
    let p = Project::new();
    p.file(
        "t.yml",
        r#"
- hosts: pair
  tasks:
    - name: once
      shell: echo {{ inventory_hostname }} >> {{ root }}/once
      run_once: true
      register: o
    - name: everyone sees it
      command: echo {{ o.stdout }}
      when: o.rc == 0
    - name: delegated
      shell: echo {{ inventory_hostname }} >> {{ root }}/delegated
      delegate_to: localhost
    - name: tagged
      shell: touch {{ root }}/tagged-{{ inventory_hostname }}
      tags: [special]
"#,
    );
    let r = p.play("t.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("once").unwrap(), "alpha\n");
    assert_eq!(r.status("everyone sees it", "beta"), "changed");
    let mut d: Vec<String> = p
        .read("delegated")
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    d.sort();
    assert_eq!(d, ["alpha", "beta"]);

    let p = Project::new();
    p.file(
        "t.yml",
        r#"
- hosts: pair
  tasks:
    - name: first
      shell: touch {{ root }}/first-{{ inventory_hostname }}
    - name: tagged
      shell: touch {{ root }}/tagged-{{ inventory_hostname }}
      tags: special
    - name: last
      shell: touch {{ root }}/last-{{ inventory_hostname }}
"#,
    );
    let r = p.play("t.yml", &["-t", "special", "-l", "beta"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(p.exists("tagged-beta") && !p.exists("tagged-alpha") && !p.exists("first-beta"));
    let r = p.play(
        "t.yml",
        &["--skip-tags", "special", "--start-at-task", "tagged"],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(p.exists("last-alpha") && !p.exists("first-alpha"));
}

#[test]
fn pause_needs_yes_without_a_terminal() {
    let p = Project::new();
    p.file(
        "p.yml",
        r#"
- hosts: localhost
  tasks:
    - name: ask
      pause:
        prompt: Switch the MX now
"#,
    );
    let r = p.play("p.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.results("ask")[0]["msg"]
            .as_str()
            .unwrap()
            .contains("--yes"),
        "{}",
        r.all()
    );
    let r = p.play("p.yml", &["--yes"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn include_tasks_import_playbook_and_vars_files() {
    let p = Project::new();
    p.file("vars/main.yml", "greeting: hi\n");
    p.file(
        "tasks/more.yml",
        "- name: included\n  shell: echo {{ greeting }} {{ extra }} > {{ root }}/included\n",
    );
    p.file(
        "inner.yml",
        r#"
- hosts: localhost
  vars_files: [vars/main.yml]
  tasks:
    - include_tasks: tasks/more.yml
      vars:
        extra: there
"#,
    );
    p.file("outer.yml", "- import_playbook: inner.yml\n");
    let r = p.play("outer.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("included").unwrap(), "hi there\n");
}

#[test]
fn human_output_has_headers_lines_and_a_recap() {
    let p = Project::new();
    p.file(
        "o.yml",
        r#"
- name: Demo
  hosts: localhost
  tasks:
    - name: say
      command: echo hi
    - name: broken
      shell: echo boom >&2; exit 4
"#,
    );
    let r = p.run(&["o.yml", "-i", "hosts.ini"]);
    assert_eq!(r.code, 2, "{}", r.all());
    for want in [
        "PLAY [Demo]",
        "TASK [say]",
        "changed: [localhost]",
        "failed: [localhost]",
        "boom",
        "PLAY RECAP",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?}\n{}", r.all());
    }
    assert!(
        r.stdout.contains(
            "localhost                  : ok=1    changed=1    unreachable=0    failed=1"
        ),
        "{}",
        r.all()
    );
    assert!(!r.stdout.contains("\x1b["), "no colour without a terminal");
}

#[test]
fn exit_codes() {
    let p = Project::new();
    p.file(
        "ok.yml",
        "- hosts: localhost\n  tasks:\n    - command: \"true\"\n",
    );
    assert_eq!(p.run(&["ok.yml", "-i", "hosts.ini"]).code, 0);
    assert_eq!(
        p.run(&["ok.yml", "-i", "hosts.ini", "--no-such-option"])
            .code,
        5
    );
    assert_eq!(p.run(&["missing.yml", "-i", "hosts.ini"]).code, 1);
    assert_eq!(
        p.run(&["ok.yml", "-i", "hosts.ini", "-l", "nomatch"]).code,
        1
    );
    let r = p.run(&["ok.yml", "--syntax-check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("playbook: ok.yml"));
    // A key file that does not exist: bad options, before any host.
    let r = p.run(&[
        "ok.yml",
        "-i",
        "hosts.ini",
        "--private-key",
        "/nonexistent/key",
    ]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(
        r.stderr
            .contains("--private-key /nonexistent/key: no such file"),
        "{}",
        r.all()
    );
    // An SSH host that refuses connections: unreachable, exit 3.
    p.file("ssh.ini", "far ansible_host=127.0.0.1 ansible_port=1\n");
    p.file(
        "far.yml",
        "- hosts: far\n  tasks:\n    - command: \"true\"\n",
    );
    let r = p.run(&["far.yml", "-i", "ssh.ini", "--output", "json"]);
    assert_eq!(r.code, 3, "{}", r.all());
    // A pattern matching nothing warns and does nothing.
    p.file(
        "none.yml",
        "- hosts: nosuchgroup\n  tasks:\n    - command: \"true\"\n",
    );
    let r = p.run(&["none.yml", "-i", "hosts.ini"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("Could not match supplied host pattern"),
        "{}",
        r.all()
    );
}

#[test]
fn list_tasks_list_hosts_and_graph() {
    let p = Project::new();
    p.file(
        "g.yml",
        r#"
- name: First
  hosts: pair
  tasks:
    - name: a
      id: a
      command: "true"
    - name: b
      command: "true"
      tags: [x]
- name: Second
  hosts: localhost
  needs: [a]
  tasks:
    - name: c
      command: "true"
"#,
    );
    let r = p.run(&["g.yml", "-i", "hosts.ini", "--list-tasks"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("play #1 (pair): First") && r.stdout.contains("      b\tTAGS: [x]"),
        "{}",
        r.all()
    );
    let r = p.run(&["g.yml", "-i", "hosts.ini", "--list-hosts"]);
    assert!(
        r.stdout.contains("hosts (2):") && r.stdout.contains("      beta"),
        "{}",
        r.all()
    );
    let r = p.run(&["g.yml", "-i", "hosts.ini", "--graph"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.starts_with("digraph mailrun {"), "{}", r.all());
    assert!(
        r.stdout.contains("\"a @ alpha\"")
            && r.stdout.contains("\"c @ localhost\"")
            && r.stdout.contains("needs")
    );
}

#[test]
fn example_playbooks_report_no_change_on_a_second_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Project::new();
    let demo = format!("demo_root={}/demo", p.path().display());
    let book = root.join("playbooks/site.yml");
    let inv = root.join("inventory/local.ini");
    let args = [
        book.to_str().unwrap(),
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--output",
        "json",
        "-e",
        &demo,
    ];
    let first = p.run_raw(&args);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(first.changed("localhost") > 0);
    let second = p.run_raw(&args);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.changed("localhost"), 0, "{}", second.all());
    // Every example playbook at least parses.
    for entry in std::fs::read_dir(root.join("playbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let r = p.run_raw(&[path.to_str().unwrap(), "--syntax-check"]);
            assert_eq!(r.code, 0, "{}: {}", path.display(), r.all());
        }
    }
}

#[test]
fn ctrl_c_stops_new_tasks_prints_the_recap_and_exits_99() {
    let p = Project::new();
    p.file(
        "i.yml",
        r#"
- hosts: localhost
  tasks:
    - name: long
      shell: touch {{ root }}/started; sleep 2
    - name: after
      shell: touch {{ root }}/after
"#,
    );
    let root = format!("root={}", p.path().display());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mailrun"))
        .current_dir(p.path())
        .args(["i.yml", "-i", "hosts.ini", "--output", "json", "-e", &root])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    for _ in 0..600 {
        if p.exists("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(p.exists("started"));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{stdout}");
    assert!(!p.exists("after"), "no task starts after Ctrl-C");
    assert!(
        stdout.contains("\"event\":\"recap\"") && stdout.contains("\"interrupted\":true"),
        "{stdout}"
    );
}

#[test]
fn blocks_pass_when_tags_and_vars_to_their_tasks() {
    let p = Project::new();
    p.file(
        "b.yml",
        r#"
- hosts: localhost
  tasks:
    - name: group
      when: run_it == 'yes'
      vars:
        word: inside
      tags: [grp]
      block:
        - name: in block
          shell: echo {{ word }} > {{ root }}/block
        - name: nested
          block:
            - name: deep
              shell: touch {{ root }}/deep
    - name: skipped group
      when: run_it == 'no'
      block:
        - name: never
          shell: touch {{ root }}/never
"#,
    );
    let r = p.play("b.yml", &["-e", "run_it=yes", "-t", "grp"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("block").unwrap(), "inside\n");
    assert!(p.exists("deep") && !p.exists("never"));
}

#[test]
fn a_handler_can_notify_a_later_handler() {
    let p = Project::new();
    p.file(
        "hh.yml",
        r#"
- hosts: localhost
  tasks:
    - command: "true"
      notify: first
  handlers:
    - name: first
      shell: echo 1 >> {{ root }}/h
      notify: second
    - name: second
      listen: second
      shell: echo 2 >> {{ root }}/h
"#,
    );
    let r = p.play("hh.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("h").unwrap(), "1\n2\n");
}

#[test]
fn adhoc_runs_one_module() {
    let p = Project::new();
    let r = p.run_raw(&[
        "adhoc",
        "pair",
        "-m",
        "shell",
        "-a",
        "echo hi from {{ inventory_hostname }}",
        "-i",
        "hosts.ini",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let stdout: Vec<String> = r
        .results("shell")
        .iter()
        .map(|e| e["result"]["stdout"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        stdout.contains(&"hi from alpha".to_string())
            && stdout.contains(&"hi from beta".to_string()),
        "{}",
        r.all()
    );
    let r = p.run_raw(&[
        "adhoc",
        "localhost",
        "-m",
        "file_copy",
        "-a",
        r#"{"content": "x", "dst": "/tmp/nope"}"#,
        "-i",
        "hosts.ini",
    ]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("did you mean 'dest'"), "{}", r.all());
    let r = p.run_raw(&["adhoc", "localhost", "-m", "shel", "-i", "hosts.ini"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("did you mean 'shell'"), "{}", r.all());
}

#[test]
fn a_task_timeout_fails_the_task() {
    let p = Project::new();
    p.file(
        "to.yml",
        r#"
- hosts: localhost
  tasks:
    - name: slow
      shell: sleep 30; touch {{ root }}/late
      timeout: 1
"#,
    );
    let r = p.play("to.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.status("slow", "localhost"), "failed");
    let msg = r.results("slow")[0]["msg"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("timed out") || msg.contains("timeout"),
        "{}",
        r.all()
    );
    assert!(!p.exists("late"));
}

#[test]
fn ansible_builtin_names_work() {
    let p = Project::new();
    p.file(
        "inc.yml",
        "- ansible.builtin.shell: echo inc > {{ root }}/inc\n",
    );
    p.file(
        "fq.yml",
        r#"
- hosts: localhost
  tasks:
    - ansible.builtin.command: echo hi
      register: out
    - ansible.builtin.assert:
        that: out.stdout == 'hi'
    - ansible.builtin.include_tasks: inc.yml
"#,
    );
    let r = p.play("fq.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("inc").unwrap(), "inc\n");
}

#[test]
fn run_once_runs_on_the_first_host_that_has_not_failed() {
    let p = Project::new();
    p.file(
        "ro.yml",
        r#"
- hosts: pair
  tasks:
    - command: "false"
      when: inventory_hostname == 'alpha'
    - name: once
      shell: echo {{ inventory_hostname }} > {{ root }}/once
      run_once: true
    - name: after
      shell: touch {{ root }}/after-{{ inventory_hostname }}
"#,
    );
    let r = p.play("ro.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(p.read("once").unwrap(), "beta\n");
    assert!(
        p.exists("after-beta") && !p.exists("after-alpha"),
        "{}",
        r.all()
    );
}

#[test]
fn a_variable_whose_template_cannot_render_fails_the_task_that_uses_it() {
    let p = Project::new();
    p.file(
        "v.yml",
        r#"
- hosts: localhost
  vars:
    base: "{{ undefined_root }}/mail"
    users_file: "{{ base }}/users"
    fine: ok
  tasks:
    - name: unaffected
      shell: echo {{ fine }}
    - name: uses it
      shell: touch {{ users_file }}
"#,
    );
    let r = p.play("v.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.status("unaffected", "localhost"), "changed");
    let msg = r.results("uses it")[0]["msg"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("users_file") && msg.contains("undefined_root"),
        "{msg}"
    );
}

#[test]
fn second_qa_pass_semantics() {
    let p = Project::new();
    // ignore_errors holds for a loop whatever item fails.
    p.file(
        "lp.yml",
        r#"
- hosts: localhost
  tasks:
    - shell: "test {{ item }} = b"
      loop: [a, b]
      ignore_errors: true
    - name: next
      shell: touch {{ root }}/next
"#,
    );
    let r = p.play("lp.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(p.exists("next"));
    assert_eq!(r.recap()["hosts"]["localhost"]["ignored"], 1);

    // any_errors_fatal: no host runs ahead of a slower one that fails.
    p.file(
        "aef.yml",
        r#"
- hosts: pair
  any_errors_fatal: true
  tasks:
    - name: precheck
      shell: "if [ {{ inventory_hostname }} = beta ]; then sleep 0.5; exit 1; fi"
    - name: destructive
      shell: touch {{ root }}/destroyed-{{ inventory_hostname }}
"#,
    );
    let r = p.play("aef.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        !p.exists("destroyed-alpha") && !p.exists("destroyed-beta"),
        "{}",
        r.all()
    );

    // A play without needs waits for every earlier play, even past one with needs: [].
    p.file(
        "order.yml",
        r#"
- hosts: alpha
  tasks:
    - shell: sleep 0.5; touch {{ root }}/flag
- hosts: beta
  needs: []
  tasks:
    - command: "true"
- hosts: alpha
  tasks:
    - shell: test -f {{ root }}/flag
"#,
    );
    let r = p.play("order.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());

    // pause asks once per play; commands are not run in check mode.
    p.file(
        "pz.yml",
        r#"
- hosts: pair
  tasks:
    - name: ask
      pause:
        prompt: Switch the MX
    - name: cmd
      shell: touch {{ root }}/ran
"#,
    );
    let r = p.play("pz.yml", &["--yes", "--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.results("ask").len(), 1, "{}", r.all());
    assert_eq!(r.status("cmd", "alpha"), "skipped");
    assert!(!p.exists("ran"));

    // Variables whose templates refer to each other are an error, not text.
    p.file(
        "cyc.yml",
        r#"
- hosts: localhost
  vars:
    a: "{{ b }}"
    b: "{{ a }}"
  tasks:
    - name: show
      debug:
        msg: "{{ a }}"
"#,
    );
    let r = p.play("cyc.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.results("show")[0]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("refers back to itself"),
        "{}",
        r.all()
    );
}

#[test]
fn review_fixes() {
    let p = Project::new();
    // Registered output is data: never rendered again as a template.
    p.file(
        "reg.yml",
        r#"
- hosts: localhost
  tasks:
    - name: produce
      shell: printf '%s' '{''{ nope }''}'
      register: out
    - name: consume
      shell: test '{{ out.stdout }}' = '{''{ nope }''}' && echo same
"#,
    );
    let r = p.play("reg.yml", &[]);
    assert_eq!(r.status("consume", "localhost"), "changed", "{}", r.all());

    // A broken variable does not fail a task that only contains its letters.
    p.file(
        "sub.yml",
        r#"
- hosts: localhost
  vars:
    e: "{{ undefined }}"
  tasks:
    - name: hello
      shell: echo hello
"#,
    );
    let r = p.play("sub.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());

    // A looped task's vars may use the item; groups in play vars work.
    p.file(
        "item.yml",
        r#"
- hosts: pair
  vars:
    first: "{{ groups.pair[0] }}"
  tasks:
    - name: each
      shell: echo {{ path }} >> {{ root }}/items-{{ first }}
      loop: [a, b]
      vars:
        path: /srv/{{ item }}
      when: inventory_hostname == 'alpha'
"#,
    );
    let r = p.play("item.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("items-alpha").unwrap(), "/srv/a\n/srv/b\n");

    // groups and the play's hosts reach a task through a block's vars (they
    // are only given to tasks that may read them).
    p.file(
        "world.yml",
        r#"
- hosts: pair
  tasks:
    - block:
        - name: from a block's vars
          shell: echo {{ second }} {{ first }} > {{ root }}/world-{{ inventory_hostname }}
      vars:
        second: "{{ groups.pair[1] }}"
        first: "{{ ansible_play_hosts[0] }}"
"#,
    );
    let r = p.play("world.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("world-alpha").unwrap(), "beta alpha\n");
    assert_eq!(p.read("world-beta").unwrap(), "beta alpha\n");

    // include_tasks with when: false includes nothing; a skipped task registers.
    p.file("inc.yml", "- shell: touch {{ root }}/included\n");
    p.file(
        "incf.yml",
        r#"
- hosts: localhost
  tasks:
    - include_tasks: inc.yml
      when: false
    - name: maybe
      command: "true"
      when: false
      register: r
    - name: saw the skip
      shell: touch {{ root }}/saw
      when: r is skipped
"#,
    );
    let r = p.play("incf.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!p.exists("included") && p.exists("saw"), "{}", r.all());

    // A task that needs itself, and a handler with an id, are refused.
    p.file(
        "self.yml",
        "- hosts: pair\n  tasks:\n    - id: a\n      needs: [a]\n      command: \"true\"\n",
    );
    assert_eq!(p.play("self.yml", &[]).code, 4);
    p.file("delay.yml", "- hosts: localhost\n  tasks:\n    - command: \"true\"\n      register: r\n      until: r.rc == 0\n      delay: .inf\n");
    assert_eq!(p.play("delay.yml", &[]).code, 4);

    // import_playbook passes vars and tags to the imported plays.
    p.file(
        "inner.yml",
        "- hosts: localhost\n  tasks:\n    - shell: echo {{ v }} > {{ root }}/imported\n",
    );
    p.file(
        "outer.yml",
        "- import_playbook: inner.yml\n  vars:\n    v: given\n  tags: [db]\n",
    );
    let r = p.play("outer.yml", &["-t", "db"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("imported").unwrap(), "given\n");
}

#[test]
fn an_alias_bomb_is_a_parse_error() {
    let p = Project::new();
    let mut s = String::from("a0: &a0 [x, x]\n");
    for i in 1..40 {
        s.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
    }
    s.push_str("- hosts: all\n");
    p.file("bomb.yml", &s);
    let r = p.run(&["bomb.yml", "--syntax-check"]);
    assert_eq!(r.code, 4, "{}", r.all());
}

#[test]
fn a_common_ansible_playbook_runs_unchanged() {
    let p = Project::new();
    p.file("plain.ini", "[web]\nweb1\nweb2\n");
    p.file(
        "site.yml",
        r#"
---
- name: Configure web servers
  hosts: web
  connection: local
  gather_facts: no
  become: no
  remote_user: deploy
  vars:
    greeting: hello
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: "{{ greeting }} from {{ inventory_hostname }}"

    - name: Write a marker
      ansible.builtin.shell: echo {{ greeting }} > {{ root }}/{{ inventory_hostname }}.txt
      args:
        creates: "{{ root }}/{{ inventory_hostname }}.txt"

    - name: Check it
      ansible.builtin.command: cat {{ root }}/{{ inventory_hostname }}.txt
      register: marker
      changed_when: false

    - name: Verify
      ansible.builtin.assert:
        that:
          - marker.stdout == greeting
          - "'web' in group_names"
"#,
    );
    let args = ["site.yml", "-i", "plain.ini", "--output", "json"];
    let r = p.run(&args);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("web1.txt").unwrap(), "hello\n");
    let r = p.run(&args);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("web1"), 0, "{}", r.all());
}

#[test]
fn a_closed_output_pipe_is_not_a_crash() {
    let p = Project::new();
    p.file(
        "big.ini",
        "[web]\nweb[0001:3000].example.org some_var=a_fairly_long_value_to_fill_the_pipe\n",
    );
    let script = format!(
        "'{}' inventory -i big.ini --list | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_mailrun")
    );
    let status = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(p.path())
        .status()
        .expect("bash");
    assert_eq!(status.code(), Some(0));
}
