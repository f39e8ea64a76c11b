//! What the fuzz targets share: walking a parsed inventory, the fixed
//! variables templates and expressions are rendered against.

use mailrun::inventory::Inventory;
use serde_json::{json, Value};

/// Walks an inventory the way `mailrun inventory --list/--graph/--host` and
/// host patterns do.
#[allow(dead_code)]
pub fn exercise_inventory(inv: &Inventory) {
    let hosts = inv.hosts();
    // A large inventory (ranges up to the 100000-host limit) was already
    // parsed; walking it would only make every such input slow, not find
    // more (the walk is linear and covered on small ones).
    if hosts.len() > 1000 {
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
