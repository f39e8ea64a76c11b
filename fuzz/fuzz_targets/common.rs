//! What the fuzz targets share: walking a parsed inventory, the fixed
//! variables templates and expressions are rendered against.

use mailrun::inventory::Inventory;
use serde_json::{json, Value};

/// The inventory host limit while fuzzing (mailrun's is 100000): an input
/// that builds a huge inventory then costs what a small one does, and the
/// limit's own code and error are still reached.
#[allow(dead_code)]
pub const MAX_HOSTS: usize = 1000;

/// Walks an inventory the way `mailrun inventory --list/--graph/--host` and
/// host patterns do.
#[allow(dead_code)]
pub fn exercise_inventory(inv: &Inventory) {
    let hosts = inv.hosts();
    // Never more than MAX_HOSTS here; the guard keeps the walk cheap if a
    // target forgets to lower the limit.
    if hosts.len() > MAX_HOSTS {
        return;
    }
    let _ = inv.groups();
    let _ = inv.list_json();
    let _ = inv.graph_text(None);
    let _ = inv.groups_var();
    for h in hosts.iter().take(2) {
        let _ = inv.host_json(h);
        let _ = inv.group_names(h);
    }
    // Few patterns: each compiles a regex, the slowest part of a run.
    for p in ["all", "m*:&web:!db", "~^[a-z]+[0-9]"] {
        let _ = inv.select(p);
    }
}

/// Host variables of the kinds a play sees: nested maps, lists, numbers,
/// strings, booleans, null, registered results.
#[allow(dead_code)]
pub fn vars() -> Value {
    json!({
        "inventory_hostname": "mx1.example.jp",
        "ansible_host": "192.0.2.10",
        "ansible_port": 22,
        "users_file": "/etc/dovecot/users",
        "n": 3,
        "neg": -7,
        "pi": 3.25,
        "big": 9007199254740993u64,
        "zero": 0,
        "empty": "",
        "yes": true,
        "no": false,
        "nothing": null,
        "word": "dovecot",
        "text": "line one\nline two\n",
        "list": [1, 2, 3, "four", [5, 6], {"seven": 7}],
        "names": ["alice", "bob", "carol"],
        "empty_list": [],
        "empty_map": {},
        "user": {"name": "alice", "uid": 1000, "groups": ["mail", "wheel"], "home": "/home/alice"},
        "hostvars": {
            "new": {"ansible_host": "192.0.2.11", "users": {"count": 40}},
            "old": {"ansible_host": "192.0.2.10", "users": {"count": 40}}
        },
        "groups": {"all": ["old", "new"], "mail": ["old", "new"], "ungrouped": []},
        "result": {"rc": 0, "stdout": "ok", "stdout_lines": ["ok"], "changed": true, "failed": false},
        "deep": {"a": {"b": {"c": {"d": {"e": [[[["x"]]]]}}}}},
        "item": {"key": "k", "value": [1, {"v": "w"}]}
    })
}
