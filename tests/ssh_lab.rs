//! mailrun over its russh pool against real OpenSSH servers: lab hosts in
//! network namespaces (tests/lab/lab.sh), as root. Every module runs twice:
//! the second run changes nothing.

mod support;

use support::lab::{play, project, run, sum_changed, Lab};
use support::Project;

const EVERY_MODULE: &str = r#"
- hosts: lab
  tasks:
    - name: command
      command: touch /root/cmd-ran
      args:
        creates: /root/cmd-ran
    - name: shell
      shell: echo "{{ inventory_hostname }}" > /root/shell-ran
      args:
        creates: /root/shell-ran
    - name: command output
      command: cat /root/shell-ran
      register: out
      changed_when: false
      check_mode: false
    - name: assert
      assert:
        that:
          - out.stdout == inventory_hostname
    - name: file_copy content
      file_copy:
        content: "hello {{ inventory_hostname }}\n"
        dest: /etc/mailrun-test.conf
        mode: "0640"
    - name: file_copy src
      file_copy:
        src: "{{ root }}/local.txt"
        dest: /root/local.txt
        mode: "0600"
        owner: nobody
    - name: template
      template:
        src: "{{ root }}/t.hbs"
        dest: /root/templated.txt
    - name: copy (Ansible's name for file_copy)
      ansible.builtin.copy:
        content: "[main]\n#Port 1\nend\n"
        dest: /root/lines.conf
        force: false
    - name: lineinfile regexp
      lineinfile:
        path: /root/lines.conf
        regexp: "^#?Port "
        line: "Port 2000"
    - name: lineinfile insertafter
      lineinfile:
        path: /root/lines.conf
        line: "host={{ inventory_hostname }}"
        insertafter: '^\[main\]'
    - name: debug
      debug:
        msg: "on {{ inventory_hostname }}"
    - name: set_fact
      set_fact:
        seen: "{{ out.stdout }}"
    - name: pause
      pause:
        seconds: 0
    - name: ping
      ping:
      register: pong
    - assert:
        that: pong.ping == 'pong'
    - name: fail (skipped)
      fail:
        msg: never
      when: seen != inventory_hostname
"#;

#[test]
fn every_module_runs_remotely_and_twice_changes_nothing() {
    let lab = Lab::up(&["mod1", "mod2"]);
    let p = project(&lab, "");
    p.file("local.txt", "from the control machine\n");
    p.file(
        "t.hbs",
        "host={{inventory_hostname}} addr={{ansible_host}}\n",
    );
    p.file("site.yml", EVERY_MODULE);
    let first = play(&p, &lab, "site.yml", &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(sum_changed(&first) >= 10, "{}", first.all());
    for (name, addr) in lab.hosts() {
        assert_eq!(lab.sh(&name, "cat /root/shell-ran").trim(), name);
        assert_eq!(
            lab.sh(&name, "cat /etc/mailrun-test.conf"),
            format!("hello {name}\n")
        );
        assert_eq!(
            lab.sh(&name, "stat -c %a /etc/mailrun-test.conf").trim(),
            "640"
        );
        assert_eq!(
            lab.sh(&name, "stat -c '%a %U' /root/local.txt").trim(),
            "600 nobody"
        );
        assert_eq!(
            lab.sh(&name, "cat /root/templated.txt"),
            format!("host={name} addr={addr}\n")
        );
        assert_eq!(
            lab.sh(&name, "cat /root/lines.conf"),
            format!("[main]\nhost={name}\nPort 2000\nend\n")
        );
        // No temp file left beside the destinations.
        assert_eq!(
            lab.sh(&name, "ls -a /root /etc | grep -c mailrun- || true")
                .trim(),
            "1"
        );
    }
    let second = play(&p, &lab, "site.yml", &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(sum_changed(&second), 0, "{}", second.all());

    // fail fails on the host, with its message; exit 2.
    p.file(
        "fail.yml",
        "- hosts: lab\n  tasks:\n    - fail:\n        msg: stop here\n",
    );
    let r = play(&p, &lab, "fail.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains("stop here"), "{}", r.all());

    // Check mode and diff over SSH: nothing written.
    lab.sh("mod1", "echo changed > /etc/mailrun-test.conf");
    let r = play(&p, &lab, "site.yml", &["--check", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("+hello mod1"), "{}", r.all());
    assert_eq!(lab.sh("mod1", "cat /etc/mailrun-test.conf"), "changed\n");
}

#[test]
fn adhoc_runs_one_module_with_kv_or_json_args() {
    let lab = Lab::up(&["adh1", "adh2"]);
    let p = project(&lab, "");
    let r = run(
        &p,
        &lab,
        &[
            "adhoc", "lab", "-m", "command", "-a", "uname -n", "-i", "lab.ini",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    for (name, _) in lab.hosts() {
        assert!(
            r.stdout.contains(&format!("changed: [{name}]")),
            "{}",
            r.all()
        );
        let real = lab.name(&name);
        assert!(r.stdout.contains(&format!("stdout: {real}")), "{}", r.all());
    }
    let args = r#"{"content": "x\n", "dest": "/root/adhoc.txt", "mode": "0600"}"#;
    let adhoc = |extra: &[&str]| {
        let mut a = vec![
            "adhoc",
            "adh1",
            "-m",
            "file_copy",
            "-a",
            args,
            "-i",
            "lab.ini",
        ];
        a.extend(extra);
        run(&p, &lab, &a)
    };
    let r = adhoc(&["--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("adh1"), 1, "{}", r.all());
    let r = adhoc(&["--output", "json"]);
    assert_eq!(r.changed("adh1"), 0, "{}", r.all());
    assert_eq!(lab.sh("adh1", "cat /root/adhoc.txt"), "x\n");
    // A bad argument is refused before any host is touched.
    let r = run(
        &p,
        &lab,
        &[
            "adhoc",
            "lab",
            "-m",
            "file_copy",
            "-a",
            "dst=/x",
            "-i",
            "lab.ini",
        ],
    );
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("did you mean 'dest'"), "{}", r.all());
}

#[test]
fn twenty_hosts_in_one_run() {
    let names: Vec<String> = (1..=20).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let lab = Lab::up(&refs);
    let p = project(&lab, "");
    p.file(
        "many.yml",
        "- hosts: lab\n  tasks:\n    - command: uname -n\n      register: n\n    - file_copy:\n        content: \"{{ n.stdout }}\\n\"\n        dest: /root/name\n",
    );
    let r = play(&p, &lab, "many.yml", &["-f", "20"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for n in &names {
        assert_eq!(r.recap()["hosts"][n]["failed"], 0, "{}", r.all());
        assert_eq!(r.recap()["hosts"][n]["unreachable"], 0, "{}", r.all());
    }
    assert_eq!(lab.sh("m07", "cat /root/name").trim(), lab.name("m07"));
}

#[test]
fn unreachable_hosts_are_reported_and_the_others_go_on() {
    let lab = Lab::up(&["ok1", "down1", "rekey1", "new1"]);
    lab.sshd_stop("down1");
    lab.rekey("rekey1");
    lab.forget("new1");
    let p = project(&lab, "");
    p.file(
        "u.yml",
        "- hosts: lab\n  tasks:\n    - command: \"true\"\n    - command: \"true\"\n",
    );
    let r = play(&p, &lab, "u.yml", &[]);
    assert_eq!(r.code, 3, "{}", r.all());
    let recap = r.recap();
    assert_eq!(recap["hosts"]["ok1"]["ok"], 2, "{}", r.all());
    for h in ["down1", "rekey1", "new1"] {
        assert_eq!(recap["hosts"][h]["unreachable"], 1, "{}", r.all());
    }
    let msg = |h: &str| {
        r.results("command")
            .iter()
            .find(|e| e["host"] == h)
            .map(|e| e["msg"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert!(msg("down1").contains("connection refused"), "{}", r.all());
    let changed = msg("rekey1");
    assert!(changed.contains("HOST KEY CHANGED"), "{changed}");
    assert_eq!(
        changed.matches("SHA256:").count(),
        2,
        "old and new fingerprints: {changed}"
    );
    assert!(msg("new1").contains("is not in"), "{}", r.all());
    // The human recap names each unreachable host and why.
    let h = run(&p, &lab, &["u.yml", "-i", "lab.ini"]);
    assert!(h.stdout.contains("UNREACHABLE down1: "), "{}", h.all());

    // accept-new learns the unknown host, still refuses the changed key.
    let r = play(&p, &lab, "u.yml", &["--host-key-checking", "accept-new"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert_eq!(r.recap()["hosts"]["new1"]["ok"], 2, "{}", r.all());
    assert_eq!(
        r.recap()["hosts"]["rekey1"]["unreachable"],
        1,
        "{}",
        r.all()
    );
    let kh = std::fs::read_to_string(lab.home().join(".ssh/known_hosts")).unwrap();
    assert!(kh.contains(lab.addr("new1")), "{kh}");
    // Learnt: strict checking now accepts it.
    let r = play(&p, &lab, "u.yml", &["-l", "new1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // off: only when asked.
    let r = play(
        &p,
        &lab,
        "u.yml",
        &["-l", "rekey1", "--host-key-checking", "off"],
    );
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn a_wrong_key_names_host_user_and_methods() {
    let lab = Lab::up(&["wk1"]);
    let p = project(&lab, "");
    // A home with known_hosts but no default key, and a key sshd does not know.
    let home = keyless_home(&p, &lab);
    let key = p.path().join("wrong_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    p.file("w.yml", "- hosts: lab\n  tasks:\n    - command: \"true\"\n");
    let root = format!("root={}", p.path().display());
    let r = p.run_env(
        &[
            "w.yml",
            "-i",
            "lab.ini",
            "--private-key",
            key.to_str().unwrap(),
            "--output",
            "json",
            "-e",
            &root,
        ],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(r.code, 3, "{}", r.all());
    let msg = r.results("command")[0]["msg"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("authentication failed for root@wk1"), "{msg}");
    assert!(msg.contains("wrong_key"), "{msg}");
    assert!(msg.contains("the server accepts: publickey"), "{msg}");
    // An RSA key signs with SHA-2 (OpenSSH refuses SHA-1 ssh-rsa).
    let rsa = p.path().join("rsa_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f"])
        .arg(&rsa)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(p.path().join("rsa_key.pub")).unwrap();
    lab.sh(
        "wk1",
        &format!("echo '{}' >> /root/.ssh/authorized_keys", pubkey.trim()),
    );
    let r = p.run_env(
        &[
            "w.yml",
            "-i",
            "lab.ini",
            "--private-key",
            rsa.to_str().unwrap(),
            "-e",
            &root,
        ],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    // The right key given explicitly works.
    let r = p.run_env(
        &[
            "w.yml",
            "-i",
            "lab.ini",
            "--private-key",
            lab.control_key().to_str().unwrap(),
            "-e",
            &root,
        ],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn password_login() {
    let lab = Lab::up_with(&["--password", "s3cret-pw"], &["pw1"]);
    let p = project(&lab, "ansible_password=s3cret-pw");
    // No key at all: only the password can work.
    let home = keyless_home(&p, &lab);
    p.file("pw.yml", "- hosts: lab\n  tasks:\n    - command: id -un\n      register: u\n    - assert:\n        that: u.stdout == 'root'\n");
    let root = format!("root={}", p.path().display());
    let r = p.run_env(
        &["pw.yml", "-i", "lab.ini", "-e", &root, "-vvv"],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        !r.all().contains("s3cret-pw"),
        "the password is never printed: {}",
        r.all()
    );
}

#[test]
fn sshd_restarted_mid_play_later_tasks_still_run() {
    let lab = Lab::up(&["rs1"]);
    let p = project(&lab, "");
    let script = format!(
        "LAB_DIR={} bash {} sshd-restart {}",
        lab.dir().display(),
        Lab::script().display(),
        lab.name("rs1")
    );
    p.file(
        "r.yml",
        &format!(
            "- hosts: lab\n  tasks:\n    - command: echo before\n    - name: restart sshd (dropping every session)\n      shell: {script:?}\n      delegate_to: localhost\n    - name: after\n      command: echo after\n      register: a\n    - assert:\n        that: a.stdout == 'after'\n"
        ),
    );
    let r = play(&p, &lab, "r.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.status("after", "rs1"), "changed", "{}", r.all());
}

#[test]
fn thirty_concurrent_tasks_on_one_host() {
    let lab = Lab::up(&["cc1"]);
    let p = project(&lab, "");
    let mut book = String::from("- hosts: lab\n  strategy: graph\n  tasks:\n");
    for i in 0..30 {
        book.push_str(&format!(
            "    - name: t{i}\n      shell: sleep 0.5; echo {i} > /tmp/t{i}\n"
        ));
    }
    // And 12 file copies at once over the one SFTP session.
    for i in 0..12 {
        book.push_str(&format!(
            "    - name: f{i}\n      file_copy:\n        content: \"file {i}\\n\"\n        dest: /tmp/f{i}\n"
        ));
    }
    p.file("c.yml", &book);
    let r = play(&p, &lab, "c.yml", &["-f", "40"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.recap()["hosts"]["cc1"]["changed"], 42, "{}", r.all());
    assert_eq!(lab.sh("cc1", "ls /tmp | grep -c '^t[0-9]'").trim(), "30");
    assert_eq!(lab.sh("cc1", "cat /tmp/f11"), "file 11\n");
}

/// Files go over SFTP alone (no process on the host): a replaced file keeps
/// its owner and mode, a new one gets the umask's mode, content of the same
/// size is still compared (small by reading back, large too), an owner only
/// NSS would know (a bare uid) is compared by number, `creates` is looked
/// up without a shell, and no temp file is left behind.
#[test]
fn files_over_sftp_keep_owner_and_mode_and_compare_content() {
    let lab = Lab::up(&["sftp1"]);
    let p = project(&lab, "");
    lab.sh(
        "sftp1",
        "mkdir -p /srv/f && printf 'old one\\n' > /srv/f/kept && chown nobody:nogroup /srv/f/kept && chmod 0604 /srv/f/kept \\
         && printf 'abc\\n' > /srv/f/same-size && head -c 300000 /dev/zero > /srv/f/big && touch /srv/f/uid && chown 4242:4343 /srv/f/uid",
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(p.path().join("big.bin"), &big).unwrap();
    // Exactly two SFTP read requests long: the end is found by asking once more.
    std::fs::write(p.path().join("even.bin"), vec![7u8; 65536]).unwrap();
    p.file(
        "f.yml",
        r#"- hosts: lab
  tasks:
    - copy: { content: "new one\n", dest: /srv/f/kept }
    - copy: { content: "fresh\n", dest: /srv/f/fresh }
    - copy: { content: "xyz\n", dest: /srv/f/same-size }
    - copy: { src: "{{ root }}/big.bin", dest: /srv/f/big }
    - copy: { src: "{{ root }}/even.bin", dest: /srv/f/even }
    - copy: { content: "", dest: /srv/f/empty }
    - copy: { content: "u\n", dest: /srv/f/uid, owner: "4242", group: "4343", mode: "0600" }
    - command: touch /srv/f/made
      args: { creates: /srv/f/made }
    - command: touch /srv/f/never
      args: { removes: /srv/f/missing }
"#,
    );
    let r = play(&p, &lab, "f.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("sftp1"), 8, "{}", r.all());
    assert_eq!(
        lab.sh(
            "sftp1",
            "cd /srv/f && stat -c '%n %U:%G %a' kept fresh && stat -c '%n %u:%g %a' uid && cat kept same-size && ls -A && sha256sum < big"
        ),
        format!(
            "kept nobody:nogroup 604\nfresh root:root 644\nuid 4242:4343 600\nnew one\nxyz\nbig\nempty\neven\nfresh\nkept\nmade\nsame-size\nuid\n{}  -\n",
            sha256_hex(&big)
        )
    );
    let r = play(&p, &lab, "f.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("sftp1"), 0, "{}", r.all());
    // Same size, other bytes: still seen as a change, both ways of comparing.
    lab.sh("sftp1", "printf 'abd\\n' > /srv/f/same-size && printf '\\001' | dd of=/srv/f/big bs=1 seek=299999 conv=notrunc 2>/dev/null");
    let r = play(&p, &lab, "f.yml", &[]);
    assert_eq!(r.changed("sftp1"), 2, "{}", r.all());
    assert_eq!(lab.sh("sftp1", "cat /srv/f/same-size"), "xyz\n");
    // A missing directory is named (no temp file could be made there).
    let r = run(
        &p,
        &lab,
        &[
            "adhoc",
            "lab",
            "-m",
            "copy",
            "-a",
            "content=x dest=/nonexist/x",
            "-i",
            "lab.ini",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stdout
            .contains("cannot write /nonexist/x: the directory /nonexist does not exist"),
        "{}",
        r.all()
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()[..64].to_string()
}

#[test]
fn a_50_mb_file_copy_arrives_intact() {
    let lab = Lab::up(&["big1"]);
    let p = project(&lab, "");
    let data: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(p.path().join("big.bin"), &data).unwrap();
    let want = {
        use std::io::Write;
        let mut c = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&data).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()[..64].to_string()
    };
    p.file(
        "b.yml",
        "- hosts: lab\n  tasks:\n    - file_copy:\n        src: \"{{ root }}/big.bin\"\n        dest: /root/big.bin\n        mode: \"0644\"\n",
    );
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.changed("big1"), 1);
    assert_eq!(&lab.sh("big1", "sha256sum /root/big.bin")[..64], want);
    let r = play(&p, &lab, "b.yml", &[]);
    assert_eq!(r.changed("big1"), 0, "{}", r.all());
}

#[test]
fn sudo_become_for_a_non_root_user() {
    let lab = Lab::up_with(&["--user", "alice:alice-pw"], &["sudo1"]);
    let p = Project::new();
    p.file(
        "lab.ini",
        &format!(
            "[lab]\nsudo1 ansible_host={} ansible_user=alice ansible_become_password=alice-pw\n",
            lab.addr("sudo1")
        ),
    );
    p.file(
        "s.yml",
        "- hosts: lab\n  tasks:\n    - command: id -un\n      register: me\n    - command: id -un\n      become: true\n      register: boss\n    - assert:\n        that:\n          - me.stdout == 'alice'\n          - boss.stdout == 'root'\n    - file_copy:\n        content: \"root only\\n\"\n        dest: /root/secret.txt\n        mode: \"0600\"\n      become: true\n    - shell: cat > /root/from-stdin\n      args:\n        stdin: \"piped in\"\n        creates: /root/from-stdin\n      become: true\n",
    );
    let r = play(&p, &lab, "s.yml", &["-vvv"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        lab.sh("sudo1", "stat -c '%U %a' /root/secret.txt").trim(),
        "root 600"
    );
    assert_eq!(lab.sh("sudo1", "cat /root/from-stdin"), "piped in\n");
    assert!(!r.all().contains("alice-pw"), "{}", r.all());
    // The password went over stdin: never on a command line on the host.
    assert_eq!(
        lab.sh("sudo1", "grep -c alice-pw /var/log/sshd.log || true")
            .trim(),
        "0"
    );
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.changed("sudo1"),
        2,
        "only the two id commands: {}",
        r.all()
    );
    // A become command that times out is killed whole, as root.
    p.file(
        "t.yml",
        "- hosts: lab\n  tasks:\n    - shell: sleep 300; sleep 301\n      become: true\n      timeout: 1\n",
    );
    let r = play(&p, &lab, "t.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ps = lab.sh("sudo1", "ps -eo args");
    assert!(!ps.contains("sleep 30"), "{ps}");
    // No password at all: sudo -n fails at once, with a hint.
    p.file(
        "lab.ini",
        &format!(
            "[lab]\nsudo1 ansible_host={} ansible_user=alice\n",
            lab.addr("sudo1")
        ),
    );
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stdout.contains("-K or ansible_become_password"),
        "{}",
        r.all()
    );
    // A wrong password fails the task with a clear message, no hang.
    p.file(
        "lab.ini",
        &format!(
            "[lab]\nsudo1 ansible_host={} ansible_user=alice ansible_become_password=wrong\n",
            lab.addr("sudo1")
        ),
    );
    let r = play(&p, &lab, "s.yml", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stdout.contains("did not accept the become password"),
        "{}",
        r.all()
    );
}

/// A home with the lab's known_hosts and no key of its own.
fn keyless_home(p: &Project, lab: &Lab) -> std::path::PathBuf {
    let home = p.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(
        lab.home().join(".ssh/known_hosts"),
        home.join(".ssh/known_hosts"),
    )
    .unwrap();
    home
}

#[test]
fn ssh_agent_and_a_passphrase_protected_key() {
    let lab = Lab::up(&["ag1"]);
    let p = project(&lab, "");
    let home = keyless_home(&p, &lab);
    p.file("a.yml", "- hosts: lab\n  tasks:\n    - command: id -un\n");
    let root = format!("root={}", p.path().display());
    // The control key, encrypted with a passphrase.
    let key = p.path().join("locked_key");
    std::fs::copy(lab.control_key(), &key).unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "open sesame", "-P", "", "-f"])
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());

    // ssh-agent holding the key: no key file needed.
    let agent = std::process::Command::new("ssh-agent")
        .arg("-s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&agent.stdout).into_owned();
    let field = |name: &str| {
        text.split(&format!("{name}="))
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap()
            .to_string()
    };
    let (sock, pid) = (field("SSH_AUTH_SOCK"), field("SSH_AGENT_PID"));
    let kill_agent = || {
        let _ = std::process::Command::new("kill").arg(&pid).status();
    };
    let add = std::process::Command::new("ssh-add")
        .arg(lab.control_key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let r = p.run_env(
        &["a.yml", "-i", "lab.ini", "-e", &root],
        &[("HOME", home.to_str().unwrap()), ("SSH_AUTH_SOCK", &sock)],
    );
    kill_agent();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert_eq!(r.code, 0, "{}", r.all());

    // Without a terminal the encrypted key cannot be opened: a clear reason.
    let r = p.run_env(
        &[
            "a.yml",
            "-i",
            "lab.ini",
            "--private-key",
            key.to_str().unwrap(),
            "--output",
            "json",
            "-e",
            &root,
        ],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stdout.contains("encrypted"), "{}", r.all());

    // On a terminal it asks for the passphrase once.
    let args = format!("a.yml -i lab.ini --private-key {}", key.display());
    let text = on_terminal(&p, &home, &args, "Enter passphrase", "open sesame");
    assert!(text.contains("Enter passphrase for key"), "{text}");
    assert!(text.contains("ok=1"), "{text}");
    assert!(
        !text.contains("open sesame"),
        "the passphrase is not echoed: {text}"
    );
}

#[test]
fn task_timeout_kills_the_remote_command_and_a_cut_link_times_out() {
    let lab = Lab::up(&["to1", "cut1"]);
    let p = project(&lab, "");
    p.file(
        "t.yml",
        "- hosts: lab\n  tasks:\n    - shell: sleep 300; sleep 301\n      timeout: 1\n      ignore_errors: true\n    - command: echo still here\n      register: after\n    - assert:\n        that: after.stdout == 'still here'\n",
    );
    let r = play(&p, &lab, "t.yml", &["-l", "to1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.recap()["hosts"]["to1"]["ignored"], 1, "{}", r.all());
    assert!(r.stdout.contains("timed out after 1"), "{}", r.all());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // cut1's link goes down: nothing answers its address any more.
    lab.sh("cut1", "ip link set eth0 down");
    p.file(
        "cut.ini",
        &format!(
            "cut1 ansible_host={} ansible_user=root ansible_ssh_timeout=3\n",
            lab.addr("cut1")
        ),
    );
    p.file(
        "cut.yml",
        "- hosts: cut1\n  tasks:\n    - command: \"true\"\n",
    );
    let started = std::time::Instant::now();
    let r = run(&p, &lab, &["cut.yml", "-i", "cut.ini", "--output", "json"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        started.elapsed().as_secs() < 30,
        "no hang: {:?}",
        started.elapsed()
    );
    let msg = r.results("command")[0]["msg"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("timed out") || msg.contains("no route to host"),
        "{msg}"
    );
    // The timed-out command does not live on on the host.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = lab.sh("to1", "ps -eo args");
    assert!(
        !ps.contains("sleep 30"),
        "the shell and its children are gone: {ps}"
    );
}

#[test]
fn ssh_config_names_the_address_user_and_key() {
    let lab = Lab::up(&["cfg1"]);
    let p = Project::new();
    // The inventory knows only an alias; ~/.ssh/config says the rest.
    p.file("lab.ini", "[lab]\nmailhost\n");
    let home = keyless_home(&p, &lab);
    let key = home.join(".ssh/lab_key");
    std::fs::copy(lab.control_key(), &key).unwrap();
    std::fs::write(
        home.join(".ssh/config"),
        format!(
            "ServerAliveInterval 30\n\nHost mailhost\n    HostName {}\n    User root\n    Port 22\n    IdentityFile ~/.ssh/lab_key\n",
            lab.addr("cfg1")
        ),
    )
    .unwrap();
    p.file("c.yml", "- hosts: lab\n  tasks:\n    - command: uname -n\n      register: n\n    - assert:\n        that: n.stdout != ''\n");
    let root = format!("root={}", p.path().display());
    let r = p.run_env(
        &["c.yml", "-i", "lab.ini", "-e", &root],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn thirty_aliases_of_one_host_do_not_trip_max_startups() {
    // 30 inventory names for one sshd: 30 sessions, handshakes capped per
    // address below sshd's MaxStartups (10), so none is dropped.
    let lab = Lab::up(&["ms1"]);
    let p = Project::new();
    let mut ini = String::from("[lab]\n");
    for i in 0..30 {
        ini.push_str(&format!(
            "alias{i:02} ansible_host={} ansible_user=root\n",
            lab.addr("ms1")
        ));
    }
    p.file("lab.ini", &ini);
    p.file("m.yml", "- hosts: lab\n  tasks:\n    - command: \"true\"\n");
    let r = play(&p, &lab, "m.yml", &["-f", "30"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for i in 0..30 {
        assert_eq!(
            r.recap()["hosts"][format!("alias{i:02}")]["ok"],
            1,
            "{}",
            r.all()
        );
    }
}

#[test]
fn dovecot_hosts_keep_their_own_mail_and_sync_over_the_mesh() {
    let lab = Lab::up_with(&["--dovecot"], &["dv-old", "dv-new"]);
    let user = "alice@example.org:{PLAIN}pw:5000:5000::/var/vmail/example.org/alice::";
    for h in ["dv-old", "dv-new"] {
        lab.sh(h, &format!("echo '{user}' >> /etc/dovecot/users"));
    }
    lab.sh(
        "dv-old",
        "doveadm mailbox create -u alice@example.org Archive",
    );
    assert!(lab
        .sh("dv-old", "doveadm mailbox list -u alice@example.org")
        .contains("Archive"));
    assert!(!lab
        .sh("dv-new", "doveadm mailbox list -u alice@example.org")
        .contains("Archive"));
    // old reaches new as root by its name (the mesh): dsync over ssh works.
    let new = lab.name("dv-new");
    lab.sh(
        "dv-old",
        &format!("doveadm -o 'dsync_remote_cmd=ssh -o BatchMode=yes -l%{{login}} %{{host}} doveadm dsync-server -u%u -U' backup -u alice@example.org remote:root@{new}"),
    );
    assert!(lab
        .sh("dv-new", "doveadm mailbox list -u alice@example.org")
        .contains("Archive"));
    assert!(
        !std::path::Path::new("/var/vmail/example.org").exists(),
        "mail stays in the hosts"
    );
}

/// Runs mailrun on a terminal (`script`) and types `answer` once `prompt`
/// has appeared (typed earlier, the terminal would echo it).
fn on_terminal(
    p: &Project,
    home: &std::path::Path,
    args: &str,
    prompt: &str,
    answer: &str,
) -> String {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let cmd = format!(
        "{} {args} -e root={}",
        env!("CARGO_BIN_EXE_mailrun"),
        p.path().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(p.path())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let started = std::time::Instant::now();
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains(prompt) {
        assert!(
            started.elapsed().as_secs() < 60,
            "no prompt {prompt:?}: {}",
            String::from_utf8_lossy(&seen.lock().unwrap())
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The prompt is printed just before echo is turned off.
    std::thread::sleep(std::time::Duration::from_millis(200));
    stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    text
}

#[test]
fn ask_pass_and_ask_become_pass_prompt_once_at_start() {
    let lab = Lab::up_with(
        &["--password", "root-pw", "--user", "bob:bob-pw"],
        &["ask1"],
    );
    let p = project(&lab, "");
    let home = keyless_home(&p, &lab);
    p.file("k.yml", "- hosts: lab\n  tasks:\n    - command: id -un\n");
    // -k: the SSH password, asked before any host is contacted.
    let text = on_terminal(&p, &home, "k.yml -i lab.ini -k", "SSH password:", "root-pw");
    assert!(text.contains("SSH password:"), "{text}");
    assert!(text.contains("ok=1") && !text.contains("root-pw"), "{text}");
    // -K: the become password for sudo.
    p.file(
        "bob.ini",
        &format!(
            "[lab]\nask1 ansible_host={} ansible_user=bob\n",
            lab.addr("ask1")
        ),
    );
    p.file("b.yml", "- hosts: lab\n  tasks:\n    - command: id -un\n      become: true\n      register: r\n    - assert:\n        that: r.stdout == 'root'\n");
    let text = on_terminal(
        &p,
        &lab.home(),
        "b.yml -i bob.ini -K",
        "BECOME password:",
        "bob-pw",
    );
    assert!(text.contains("BECOME password:"), "{text}");
    assert!(text.contains("ok=2") && !text.contains("bob-pw"), "{text}");
}

#[test]
fn sshd_killed_and_link_cut_mid_command_are_unreachable_without_a_hang() {
    let lab = Lab::up(&["mk1", "mc1", "mo1"]);
    let p = project(&lab, "");
    p.file(
        "k.yml",
        "- hosts: lab\n  tasks:\n    - command: sleep 8\n    - command: echo after\n",
    );
    let (dir, script) = (lab.dir().to_path_buf(), Lab::script());
    let (killed, cut) = (lab.name("mk1"), lab.name("mc1"));
    let faults = std::thread::spawn(move || {
        let in_host = |host: &str, cmd: &str| {
            std::process::Command::new("bash")
                .arg(&script)
                .args(["exec", host, "sh", "-c", cmd])
                .env("LAB_DIR", &dir)
                .status()
                .unwrap()
                .success()
        };
        // Strike while the command runs (however slow the machine is).
        for host in [&killed, &cut] {
            let started = std::time::Instant::now();
            while !in_host(host, "ps -eo args | grep -qx 'sleep 8'") {
                assert!(
                    started.elapsed().as_secs() < 60,
                    "sleep 8 never ran on {host}"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        assert!(in_host(&killed, "pkill -KILL -x sshd"));
        assert!(in_host(&cut, "ip link set eth0 down"));
    });
    let started = std::time::Instant::now();
    let r = play(&p, &lab, "k.yml", &[]);
    faults.join().unwrap();
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    let recap = r.recap();
    assert_eq!(recap["hosts"]["mk1"]["unreachable"], 1, "{}", r.all());
    assert_eq!(recap["hosts"]["mc1"]["unreachable"], 1, "{}", r.all());
    assert_eq!(recap["hosts"]["mo1"]["changed"], 2, "{}", r.all());
    for h in ["mk1", "mc1"] {
        let e = r
            .results("command")
            .into_iter()
            .find(|e| e["host"] == h)
            .unwrap();
        assert!(e["msg"].as_str().unwrap().contains("dropped"), "{e}");
    }
}

#[test]
fn templated_connection_variables_are_rendered() {
    let lab = Lab::up(&["tpl1"]);
    let p = Project::new();
    p.file(
        "lab.ini",
        &format!(
            "[lab]\nweb ansible_host=\"{{{{ lab_ip }}}}\" lab_ip={}\n[lab:vars]\nlogin=root\n",
            lab.addr("tpl1")
        ),
    );
    p.file(
        "t.yml",
        "- hosts: lab\n  vars:\n    ansible_user: \"{{ login }}\"\n  tasks:\n    - command: id -un\n      register: u\n    - assert:\n        that: u.stdout == 'root'\n",
    );
    let r = play(&p, &lab, "t.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn a_non_default_port_is_known_as_host_colon_port() {
    let lab = Lab::up(&["port1"]);
    // A second sshd on port 2222, with the same host key.
    lab.sh(
        "port1",
        "/usr/sbin/sshd -p 2222 -o PidFile=/run/sshd-2222.pid </dev/null >/dev/null 2>&1",
    );
    let p = Project::new();
    p.file(
        "lab.ini",
        &format!(
            "[lab]\nport1 ansible_host={} ansible_port=2222 ansible_user=root\n",
            lab.addr("port1")
        ),
    );
    p.file("p.yml", "- hosts: lab\n  tasks:\n    - command: \"true\"\n");
    // Known only as port 22: port 2222 is a different entry, unknown.
    let r = play(&p, &lab, "p.yml", &[]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout.contains(&format!("[{}]:2222", lab.addr("port1"))),
        "{}",
        r.all()
    );
    let r = play(&p, &lab, "p.yml", &["--host-key-checking", "accept-new"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let kh = std::fs::read_to_string(lab.home().join(".ssh/known_hosts")).unwrap();
    assert!(
        kh.contains(&format!("[{}]:2222 ssh-ed25519 ", lab.addr("port1"))),
        "{kh}"
    );
    let r = play(&p, &lab, "p.yml", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
}
