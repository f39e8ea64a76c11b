//! Hostile values never become shell code or options: file names, variables
//! and user names with quotes, `;`, `$()`, backticks, newlines, a leading
//! `-`, spaces, globs and `~` go through the modules against a lab host,
//! once as root (files over SFTP) and once as an admin with become (files
//! through shell commands under sudo). Afterwards the target directory must
//! hold exactly the intended files with the intended contents (a file with
//! a non-UTF-8 name beside them untouched), and the canary `pwned` (the
//! hostile values would `touch pwned` wherever a shell ran them) must exist
//! nowhere.

mod support;

use support::lab::{play, Lab};
use support::Project;

/// The hostile values: each is used as a file name and as a value.
const HOSTILE: &[&str] = &[
    "it's",
    "say \"hi\"",
    "a;touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "x'; touch pwned; '",
    "\"; touch pwned; \"",
    "new\nline",
    "-rf",
    "--help",
    "two  words",
    "*",
    "[ab]?",
    "$HOME",
    "a|b&c>d<e",
    "back\\slash",
    "tab\there",
    "~root",
    " lead space",
    "trail space ",
    "-",
    "%s",
];

/// The file prefixes the playbook writes, one file per prefix and value.
const PREFIXES: &[&str] = &["C", "L", "T", "S", "A"];

fn project(lab: &Lab) -> Project {
    let p = Project::new();
    let addr = lab.addr("inj");
    p.file(
        "lab.ini",
        &format!(
            "[lab]\niroot ansible_host={addr} ansible_user=root\niadm ansible_host={addr} ansible_user=injadm\n[lab:vars]\nansible_ssh_private_key_file={}\n",
            lab.control_key().display()
        ),
    );
    p.file(
        "names.yml",
        &format!("names: {}\n", serde_json::to_string(HOSTILE).unwrap()),
    );
    p.file("t.j2", "T:{{ item }}\n");
    // Local source files with the hostile names.
    for n in HOSTILE {
        p.file(&format!("files/S{n}"), &format!("S:{n}\n"));
    }
    p
}

/// The play for one host: root without become (files over SFTP), the
/// admin with become (files through shell commands under sudo).
fn book() -> String {
    ["- hosts: iroot\n", "- hosts: iadm\n  become: true\n"]
        .iter()
        .map(|head| format!("{head}{PLAY}"))
        .collect()
}

const PLAY: &str = r#"  vars_files: [names.yml]
  vars:
    dir: "/tmp/inj-{{ inventory_hostname }}"
  tasks:
    - name: content to hostile names
      file_copy:
        content: "C:{{ item }}\n"
        dest: "{{ dir }}/C{{ item }}"
      loop: "{{ names }}"
    - name: lineinfile on hostile names
      lineinfile:
        path: "{{ dir }}/L{{ item }}"
        line: "L:path"
        create: true
      loop: "{{ names }}"
    - name: template to hostile names
      template:
        src: t.j2
        dest: "{{ dir }}/T{{ item }}"
      loop: "{{ names }}"
    - name: local sources with hostile names
      file_copy:
        src: "files/S{{ item }}"
        dest: "{{ dir }}/S{{ item }}"
      loop: "{{ names }}"
    - name: argv with hostile values
      command:
        argv: [cp, "--", "{{ dir }}/C{{ item }}", "{{ dir }}/A{{ item }}"]
      loop: "{{ names }}"
    - name: creates names an existing hostile file
      shell: "echo ran >> {{ dir }}/../inj-ran-{{ inventory_hostname }}"
      args:
        creates: "{{ dir }}/C{{ item }}"
      loop: "{{ names }}"
    - name: removes names a missing hostile file
      shell: "echo ran >> {{ dir }}/../inj-ran-{{ inventory_hostname }}"
      args:
        removes: "{{ dir }}/missing{{ item }}"
      loop: "{{ names }}"
    - name: a relative dest starting with a dash
      file_copy:
        content: "dash\n"
        dest: "-dash-{{ inventory_hostname }}"
    - name: a relative dest in a directory starting with a dash, validated
      file_copy:
        content: "dash dir\n"
        dest: "-dir-{{ inventory_hostname }}/f"
        validate: "grep -q dash %s"
    - name: lineinfile with a relative dash path
      lineinfile:
        path: "-dir-{{ inventory_hostname }}/-l"
        line: "-x"
        create: true
"#;

/// NAME\0CONTENT\0 for every entry of DIR (names as bytes, hex-escaped
/// where not UTF-8).
const LIST: &str = r#"cd "$1" && for f in * .[!.]* ..?*; do [ -e "$f" ] || continue; printf '%s\0' "$f"; cat -- "$f"; printf '\0'; done"#;

fn listing(lab: &Lab, dir: &str) -> Vec<(Vec<u8>, String)> {
    let out = lab.exec("inj", &format!("set -- {dir}; {LIST}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parts: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_vec(), String::from_utf8_lossy(c[1]).into_owned()))
        .collect()
}

/// The failed results of a run (its whole output is long).
fn failures(r: &support::Run) -> String {
    let failed: Vec<String> = r
        .events()
        .into_iter()
        .filter(|e| e["status"] == "failed" && e["summary"].is_null())
        .map(|e| e.to_string())
        .collect();
    format!("exit {}\n{}\n{}", r.code, failed.join("\n"), r.stderr)
}

#[test]
fn hostile_names_and_values_reach_only_their_own_files() {
    let lab = Lab::up_with(&["--admin", "injadm"], &["inj"]);
    let p = project(&lab);
    p.file("inj.yml", &book());
    // A bystander with a non-UTF-8 name in each target directory.
    lab.sh(
        "inj",
        "for h in iroot iadm; do mkdir -p /tmp/inj-$h; printf keep > \"/tmp/inj-$h/$(printf 'bin\\377\\376')\"; done; mkdir -p /root/-dir-iroot /home/injadm/-dir-iadm; chown injadm /tmp/inj-iadm",
    );
    let r = play(&p, &lab, "inj.yml", &[]);
    assert_eq!(r.code, 0, "{}", failures(&r));
    // Twice: the second run finds everything as wanted.
    let again = play(&p, &lab, "inj.yml", &[]);
    assert_eq!(again.code, 0, "{}", failures(&again));
    assert_eq!(
        support::lab::sum_changed(&again),
        2,
        "only the argv copies (one task per host) change again: {}",
        failures(&again)
    );
    for h in ["iroot", "iadm"] {
        let got = listing(&lab, &format!("/tmp/inj-{h}"));
        let mut want: Vec<(Vec<u8>, String)> = vec![(b"bin\xff\xfe".to_vec(), "keep".into())];
        for n in HOSTILE {
            for pre in PREFIXES {
                let content = match *pre {
                    "A" => format!("C:{n}\n"),
                    // A line holds no newline: the name is the value here.
                    "L" => "L:path\n".to_string(),
                    other => format!("{other}:{n}\n"),
                };
                want.push((format!("{pre}{n}").into_bytes(), content));
            }
        }
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(
            got_sorted
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            want.iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            "{h}: exactly the intended files"
        );
        assert_eq!(got_sorted, want, "{h}: the intended contents");
        // creates/removes skipped every time: the command never ran.
        assert!(
            !lab.exec("inj", &format!("test -e /tmp/inj-ran-{h}"))
                .status
                .success(),
            "{h}: a creates/removes check was wrong"
        );
        // Relative paths start in the login directory (sudo keeps it).
        let home = if h == "iroot" {
            "/root"
        } else {
            "/home/injadm"
        };
        assert_eq!(lab.sh("inj", &format!("cat {home}/-dash-{h}")), "dash\n");
        assert_eq!(
            lab.sh("inj", &format!("cat {home}/-dir-{h}/f")),
            "dash dir\n"
        );
        assert_eq!(lab.sh("inj", &format!("cat {home}/-dir-{h}/-l")), "-x\n");
    }
    assert_eq!(canaries(&lab), "", "the canary exists on the host");
    assert!(
        !p.path().join("pwned").exists(),
        "the canary exists on the control machine"
    );
    // Nothing else was written where a word of a name could point.
    let stray = lab.sh(
        "inj",
        "ls -A /tmp | grep -v -e '^inj-' -e '^\\.mailrun' || true",
    );
    assert!(
        !stray
            .lines()
            .any(|l| ["a", "d", "e", "words", "line", "new", "lead", "space"].contains(&l)),
        "{stray}"
    );
}

#[test]
fn hostile_user_and_service_names_are_refused_without_running_anything() {
    let lab = Lab::up(&["inj"]);
    let p = project(&lab);
    let keys_before = lab.sh("inj", "cat /root/.ssh/authorized_keys");
    let key = std::fs::read_to_string(lab.control_key().with_extension("pub")).unwrap();
    p.file(
        "users.yml",
        &format!(
            "- hosts: iroot\n  vars_files: [names.yml]\n  tasks:\n    - name: authorized_key for hostile users\n      authorized_key:\n        user: \"{{{{ item }}}}\"\n        key: {key:?}\n      loop: \"{{{{ names }}}}\"\n      ignore_errors: true\n    - name: hostile owners\n      file_copy:\n        content: x\n        dest: /tmp/owned\n        owner: \"{{{{ item }}}}\"\n      loop: \"{{{{ names }}}}\"\n      ignore_errors: true\n    - name: hostile known_hosts names\n      known_hosts:\n        name: \"{{{{ item }}}}\"\n        key: \"{{{{ item }}}} {key}\"\n        path: /tmp/kh\n      loop: \"{{{{ names }}}}\"\n      ignore_errors: true\n",
            key = key.trim()
        ),
    );
    let r = play(&p, &lab, "users.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let failed = |task: &str| {
        r.results(task)
            .iter()
            .filter(|e| e["item"].is_string() && e["status"] == "failed")
            .count()
    };
    // No such users: every one fails, none is read as an option or code.
    assert_eq!(
        failed("authorized_key for hostile users"),
        HOSTILE.len(),
        "{}",
        r.all()
    );
    assert_eq!(failed("hostile owners"), HOSTILE.len(), "{}", r.all());
    assert_eq!(lab.sh("inj", "cat /root/.ssh/authorized_keys"), keys_before);
    assert_eq!(canaries(&lab), "", "{}", r.all());
    // A service name is checked before anything runs.
    p.file(
        "svc.yml",
        "- hosts: iroot\n  tasks:\n    - service:\n        name: \"x;touch pwned\"\n        state: started\n",
    );
    let r = play(&p, &lab, "svc.yml", &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("is not a service name"), "{}", r.all());
    assert_eq!(canaries(&lab), "");
}

/// Every file named like the canary on the host.
fn canaries(lab: &Lab) -> String {
    lab.sh(
        "inj",
        "find / -xdev -maxdepth 3 -name 'pwned*' 2>/dev/null; find /tmp /root /home -name 'pwned*' 2>/dev/null; true",
    )
}

/// Hostile mail user names in doveadm_backup: doveadm hands the user name
/// unquoted to the remote's shell (`ssh … doveadm dsync-server -uUSER`), so
/// mailrun refuses such a name before any doveadm runs; the other users are
/// copied.
#[test]
fn hostile_mail_user_names_never_reach_doveadm() {
    let lab = Lab::up_with(&["--dovecot"], &["injold", "injnew"]);
    for h in ["injold", "injnew"] {
        lab.sh(
            h,
            "printf 'ann@ex.org:{PLAIN}pw:5000:5000::/var/vmail/ex.org/ann::\\n' >> /etc/dovecot/users",
        );
    }
    lab.sh("injold", "doveadm mailbox create -u ann@ex.org Sent");
    let p = Project::new();
    p.file(
        "lab.ini",
        &format!(
            "injold ansible_host={} ansible_user=root\ninjnew ansible_host={} ansible_user=root\n",
            lab.addr("injold"),
            lab.addr("injnew")
        ),
    );
    let hostile = [
        "a;touch${IFS}/tmp/pwned@ex.org",
        "$(touch /tmp/pwned)@ex.org",
        "`touch /tmp/pwned`@ex.org",
        "-oProxyCommand=touch /tmp/pwned",
        "x'y@ex.org",
    ];
    let users: Vec<String> = hostile
        .iter()
        .chain(["ann@ex.org"].iter())
        .map(|u| serde_json::to_string(u).unwrap())
        .collect();
    p.file(
        "b.yml",
        &format!(
            "- hosts: injold\n  tasks:\n    - name: t\n      doveadm_backup:\n        remote: injnew\n        users: [{}]\n        ledger: ledger.json\n",
            users.join(", ")
        ),
    );
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let res = r
        .results("t")
        .into_iter()
        .rfind(|e| e["host"] == "injold")
        .map(|e| e["result"].clone())
        .unwrap();
    assert_eq!(
        res["done"],
        serde_json::json!(["ann@ex.org"]),
        "{}",
        r.all()
    );
    let failed: Vec<String> = res["failed_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed.len(), hostile.len(), "{}", r.all());
    assert!(r.all().contains("refused: the user name"), "{}", r.all());
    for h in ["injold", "injnew"] {
        assert!(
            !lab.exec(h, "ls /tmp/pwned* /root/pwned* 2>/dev/null")
                .status
                .success(),
            "a canary on {h}"
        );
    }
    // Only the named user got a copy on new.
    assert!(lab
        .sh("injnew", "doveadm mailbox list -u ann@ex.org")
        .contains("Sent"));
}
