//! Every case under tests/fixtures/inventory/ must print exactly what
//! ansible-inventory printed (see the README there), plus error cases.

use mailrun::inventory::Inventory;
use std::fs;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
}

fn load_case(case: &Path) -> (Inventory, Option<PathBuf>) {
    let sources: Vec<String> = fs::read_to_string(case.join("sources"))
        .expect("sources")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            if l.contains(',') {
                l.to_string()
            } else {
                case.join(l).to_string_lossy().into_owned()
            }
        })
        .collect();
    let pb = fs::read_to_string(case.join("playbook_dir"))
        .ok()
        .map(|p| case.join(p.trim()));
    let mut inv = Inventory::load(&sources).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    if let Some(p) = &pb {
        inv.load_playbook_vars(p).expect("playbook vars");
    }
    (inv, pb)
}

/// Compares every expected file of one case; returns the mismatches.
fn check_case(case: &Path) -> Vec<String> {
    let (inv, pb) = load_case(case);
    let pb = pb.as_deref();
    let mut bad = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(case.join("expected"))
        .expect("expected/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        let want = fs::read_to_string(&f).expect("read");
        let got = if name == "list.json" {
            Ok(inv.list_json_for(pb))
        } else if let Some(h) = name
            .strip_prefix("host_")
            .and_then(|n| n.strip_suffix(".json"))
        {
            inv.host_json_for(h, pb)
        } else if let Some(g) = name
            .strip_prefix("graph_vars_")
            .and_then(|n| n.strip_suffix(".txt"))
        {
            inv.graph_text_vars(Some(g), pb)
        } else if let Some(g) = name
            .strip_prefix("graph_")
            .and_then(|n| n.strip_suffix(".txt"))
        {
            inv.graph_text(Some(g))
        } else {
            continue;
        };
        match got {
            Ok(got) if got == want => {}
            Ok(got) => bad.push(format!(
                "{}/{name}:\n--- want\n{want}\n--- got\n{got}",
                case.file_name().expect("case").to_string_lossy()
            )),
            Err(e) => bad.push(format!("{}/{name}: error {e}", case.display())),
        }
    }
    bad
}

#[test]
fn fixtures_match_ansible() {
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("sources").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "expected at least 12 cases");
    let mut bad = Vec::new();
    for c in &cases {
        bad.extend(check_case(c));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn default_outputs_are_the_all_group() {
    let case = fixtures().join("ini_basic");
    let (inv, _) = load_case(&case);
    let want = fs::read_to_string(case.join("expected/graph_all.txt")).expect("graph");
    assert_eq!(inv.graph_text(None).expect("graph"), want);
    assert_eq!(
        inv.list_json(),
        fs::read_to_string(case.join("expected/list.json")).expect("list")
    );
}

fn sel(inv: &Inventory, p: &str) -> Vec<String> {
    inv.select(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn patterns_on_a_fixture() {
    let (inv, _) = load_case(&fixtures().join("ini_basic"));
    let cases: &[(&str, &[&str])] = &[
        // Checked against `ansible -i ini_basic/hosts PATTERN --list-hosts`.
        (
            "all",
            &[
                "beta",
                "far1",
                "db1",
                "web1.example.com",
                "web2.example.com",
                "alpha",
            ],
        ),
        (
            "*",
            &[
                "beta",
                "far1",
                "db1",
                "web1.example.com",
                "web2.example.com",
                "alpha",
            ],
        ),
        ("web", &["web1.example.com", "web2.example.com", "alpha"]),
        (
            "web:db",
            &["web1.example.com", "web2.example.com", "alpha", "db1"],
        ),
        (
            "web,db",
            &["web1.example.com", "web2.example.com", "alpha", "db1"],
        ),
        ("web:&db", &["web1.example.com"]),
        ("web:!db", &["web2.example.com", "alpha"]),
        ("!web", &["beta", "far1", "db1"]),
        (
            "web*.example.com",
            &["web1.example.com", "web2.example.com"],
        ),
        ("~web[0-9]", &["web1.example.com", "web2.example.com"]),
        ("~^(alpha|beta)$", &["alpha", "beta"]),
        ("web[0]", &["web1.example.com"]),
        ("web[1:2]", &["web2.example.com", "alpha"]),
        ("web[-1]", &["alpha"]),
        ("ungrouped", &["beta"]),
        ("db1", &["db1"]),
        ("nosuch", &[]),
        ("localhost", &["localhost"]),
        (
            "dc1",
            &["web1.example.com", "web2.example.com", "alpha", "db1"],
        ),
        ("global:!dc1", &["far1"]),
    ];
    for (p, want) in cases {
        assert_eq!(sel(&inv, p), *want, "pattern {p}");
    }
    assert!(inv.select("~(").is_err());
    assert!(inv.select("web[9]").is_err());
    // The implicit localhost is not part of the inventory.
    assert!(!inv.hosts().contains(&"localhost".to_string()));
    assert_eq!(
        inv.host_vars("localhost", None)["ansible_connection"],
        "local"
    );
    assert!(inv.host_vars("nosuch", None).is_empty());
}

#[test]
fn limits() {
    let (inv, _) = load_case(&fixtures().join("ini_basic"));
    let all = inv.hosts();
    assert_eq!(
        inv.limit(all.clone(), "db").expect("limit"),
        ["db1", "web1.example.com"]
    );
    assert_eq!(
        inv.limit(all.clone(), "!web").expect("limit"),
        ["beta", "far1", "db1"]
    );
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("retry");
    fs::write(&f, "far1\nalpha\n\n").expect("write");
    let l = format!("@{}", f.display());
    assert_eq!(
        inv.limit(all.clone(), &l).expect("limit"),
        ["far1", "alpha"]
    );
    assert!(inv.limit(all, "@/nonexistent/file").is_err());
}

#[test]
fn groups_var_and_vars() {
    let (inv, _) = load_case(&fixtures().join("group_vars_precedence"));
    let g = inv.groups_var();
    assert_eq!(g["parent"], serde_json::json!(["h1"]));
    assert_eq!(g["ungrouped"], serde_json::json!([]));
    assert_eq!(g["all"], serde_json::json!(["h1", "h2"]));
    let v = inv.host_vars("h1", None);
    assert_eq!(v["v_depth"], "child");
    assert_eq!(v["v_same"], "b");
    assert_eq!(v["v_inline_vs_file"], "parent_file");
    assert_eq!(v["v_hostfile"], "host_file");
    assert_eq!(
        inv.group_names("h1"),
        ["a_same", "b_same", "child", "parent", "web"]
    );
}

#[test]
fn playbook_dir_precedence() {
    let case = fixtures().join("playbook_dir");
    let (inv, pb) = load_case(&case);
    let v = inv.host_vars("mx2", pb.as_deref());
    assert_eq!(v["v_all"], "play_all");
    assert_eq!(v["v_order"], "inv_mail");
    let v = inv.host_vars("mx1", pb.as_deref());
    assert_eq!(v["v_order"], "inv_host");
    assert_eq!(v["v_host"], "play_hostfile");
    let v = inv.host_vars("mx1", None);
    assert_eq!(v["v_host"], "inv_hostfile");
}

fn load_text(name: &str, text: &str) -> (tempfile::TempDir, mailrun::error::Result<Inventory>) {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join(name);
    fs::write(&p, text).expect("write");
    let r = Inventory::load(&[p.to_string_lossy().into_owned()]);
    (dir, r)
}

#[test]
fn errors_have_positions() {
    // (file name, content, line, column)
    let cases: &[(&str, &str, usize, usize)] = &[
        ("hosts", "[g]\nh1\n[g:vars]\nnovalue\n", 4, 1),
        ("hosts", "[g\nh1\n", 1, 1),
        ("hosts", "[g]\nmx[3:1]\n", 2, 1),
        ("hosts.ini", "[g]\n  h1 x=\"open\n", 2, 8),
        ("hosts.yml", "all:\n  hosts: [a, b]\n", 2, 10),
        (
            "hosts.yml",
            "all:\n  children:\n    g:\n      hosts:\n        1:\n",
            5,
            9,
        ),
        ("hosts.yml", "all:\n  hosts:\n    a: [1]\n", 3, 8),
        ("hosts.yml", "all: {\n", 2, 1),
    ];
    for (name, text, line, col) in cases {
        let (_d, r) = load_text(name, text);
        let e = r.expect_err(text);
        assert_eq!(e.exit_code(), 4, "{text}");
        let mailrun::error::Error::Source(se) = &e else {
            panic!("{text}: not a source error: {e}");
        };
        assert_eq!((se.pos.line, se.pos.col), (*line, *col), "{text}: {e}");
    }
}

#[test]
fn missing_sources() {
    let e = Inventory::load(&["/nonexistent/inventory".to_string()]).expect_err("missing");
    assert_eq!(e.exit_code(), 4);
    let inv = Inventory::load(&["/nonexistent/inventory".to_string(), "h1,h2".to_string()])
        .expect("one source is enough");
    assert_eq!(inv.hosts(), ["h1", "h2"]);
    assert_eq!(inv.warnings().len(), 1);
    let inv = Inventory::load(&[]).expect("no sources");
    assert!(inv.hosts().is_empty());
    assert_eq!(inv.select("localhost").expect("select"), ["localhost"]);
}

#[test]
fn no_panic_on_odd_input() {
    let inputs = [
        "[",
        "]",
        "[]",
        "[:]",
        "[a:]",
        "h[",
        "h]",
        "h[:]",
        "h[1:2:3:4]",
        "h[ä:ö]",
        "ä[1:2]",
        "\u{0}",
        "h x=\u{0}",
        "h x='\\x'",
        "h x=\"\\U0011ffff\"",
        "h x=0x",
        "h x=1e",
        "h x=[[[[",
        "h x={1:",
        "h x={[1]: 2}",
        "h:99999999999999999999999",
        "[g:vars]\n=1",
        "[g:children]\n[x]",
        "a:b:c",
        "h[0:999999999999999999999]",
        "---",
        "h x=--1",
        "h x=1_",
        "h x=.",
        "h x=...",
        "h x=b'\\u00e9'",
        "h x=''''''",
        "h x='''a",
        "h x=1j",
        "h x=-0x10",
        "h x=9223372036854775808",
        "h x=-9223372036854775808",
    ];
    for (i, text) in inputs.iter().enumerate() {
        for name in ["hosts", "hosts.ini", "hosts.yml"] {
            let (_d, r) = load_text(name, text);
            if let Ok(inv) = r {
                let _ = inv.list_json();
                let _ = inv.graph_text_vars(None, None);
                for h in inv.hosts() {
                    let _ = inv.host_json(&h);
                }
                for p in ["*", "~.", "a[0]", "!x", "&", "!", "[", ":", "a[-1]", "~"] {
                    let _ = inv.select(p);
                }
            }
            let _ = i;
        }
    }
}

#[test]
fn many_hosts_stay_fast() {
    let text = "[a]\nh[0:4999]\n[b]\nh[0:4999]\n[c:children]\na\nb\n[c:vars]\nx=1\n";
    let (_d, r) = load_text("hosts", text);
    let inv = r.expect("loads");
    let t = std::time::Instant::now();
    assert_eq!(inv.hosts().len(), 5000);
    assert_eq!(inv.select("c:&a:!h1").expect("select").len(), 4999);
    assert!(inv.list_json().len() > 5000);
    assert!(t.elapsed().as_secs() < 20, "too slow: {:?}", t.elapsed());
}

#[test]
fn error_rendering() {
    let (_d, r) = load_text(
        "hosts",
        "[mail]\nmx1\n[mial:children]\nmail\n[mail:vars]\nrelay smtp.example.com\n",
    );
    let e = r.expect_err("bad").to_string();
    assert!(e.contains(":6:1: expected key=value in [mail:vars]"), "{e}");
    assert!(e.contains("6 | relay smtp.example.com"), "{e}");
    let (_d, r) = load_text("hosts", "[p:children]\nmial\n[mail]\nmx1\n");
    let e = r.expect_err("bad").to_string();
    assert!(
        e.contains(":2:1: section [p:children] includes undefined group 'mial'"),
        "{e}"
    );
    assert!(e.contains("did you mean 'mail'?"), "{e}");
}
