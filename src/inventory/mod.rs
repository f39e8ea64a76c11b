//! Ansible inventories, read as ansible-core 2.19 reads them.
//!
//! # Layout
//! - [`address`]: `host:port`, IPv6, `[a:b:step]` ranges.
//! - [`ini`]: the INI format (with Python's `shlex` and `literal_eval`
//!   typing in [`literal`]).
//! - [`yaml_inv`]: the YAML format (through [`crate::yaml`]).
//! - [`data`]: the host/group graph (`all`, `ungrouped`, depth, priority).
//! - [`vars`]: `group_vars/` and `host_vars/` directories.
//! - [`pattern`]: host patterns and `--limit`.
//! - [`output`]: Python-identical JSON and `repr` for `--list/--host/--graph`.
//!
//! # Sources and errors
//! Each `-i` source is a file, a directory of files (sorted; names starting
//! with `.`, `group_vars`, `host_vars`, `vars_plugins` and the extensions
//! `.pyc .pyo .swp .bak ~ .rpm .md .txt .rst .orig .cfg .retry` skipped,
//! subdirectories read too) or a comma list `a,b:2222,`. A file whose
//! extension is none, `.yml`, `.yaml` or `.json` is tried as YAML first,
//! then as INI, like Ansible's plugin chain; other files are INI.
//!
//! Ansible only *warns* on a source it cannot use and goes on with what is
//! left (at worst with the implicit `localhost` alone). mailrun is stricter
//! where a silent partial inventory could deploy to the wrong hosts:
//! - a source that does not exist is a warning ([`Inventory::warnings`]),
//!   as in Ansible, but when *none* of the given sources could be loaded,
//!   loading fails with [`Error::Parse`] (exit 4);
//! - a file that exists but is malformed (bad INI line, bad range, a YAML
//!   inventory with a bad section) is an [`Error::Source`] with file, line
//!   and column (exit 4), where Ansible would warn and skip the file;
//! - a range that yields no host (`mx[3:1]`) is an error (Ansible: no hosts).
//!
//! Executable inventory scripts and inventory plugins are not supported: an
//! executable file is read as a static file.

mod address;
mod data;
#[doc(hidden)]
pub use data::set_max_hosts_for_fuzzing;
mod ini;
mod literal;
mod output;
mod pattern;
mod vars;
mod yaml_inv;

use crate::error::{Error, Result};
use data::Data;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use vars::DirVars;

/// Variables ansible-inventory leaves out of `--list`/`--host`
/// (`C.INTERNAL_STATIC_VARS`).
const INTERNAL_VARS: &[&str] = &[
    "ansible_async_path",
    "ansible_collection_name",
    "ansible_config_file",
    "ansible_dependent_role_names",
    "ansible_diff_mode",
    "ansible_facts",
    "ansible_forks",
    "ansible_inventory_sources",
    "ansible_limit",
    "ansible_play_batch",
    "ansible_play_hosts",
    "ansible_play_hosts_all",
    "ansible_play_role_names",
    "ansible_playbook_python",
    "ansible_role_name",
    "ansible_role_names",
    "ansible_run_tags",
    "ansible_skip_tags",
    "ansible_verbosity",
    "ansible_version",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
    "playbook_dir",
    "play_hosts",
    "role_name",
    "role_names",
    "role_path",
    "role_uuid",
];

/// Extensions skipped in an inventory directory (`INVENTORY_IGNORE_EXTS`).
const IGNORED_EXTS: &[&str] = &[
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    data: Data,
    /// Each source's base directory (its own path for a directory, its
    /// parent for a file) with the group_vars/host_vars found there.
    inventory_vars: Vec<(PathBuf, DirVars)>,
    /// group_vars/host_vars beside playbooks, loaded by
    /// [`Inventory::load_playbook_vars`].
    playbook_vars: Vec<(PathBuf, DirVars)>,
    warnings: Vec<String>,
}

impl Inventory {
    /// Loads `-i` sources in order: a file (INI or YAML), a directory of
    /// them, or a comma list `a,b,`. Several sources merge. See the module
    /// documentation for what is an error and what a warning.
    pub fn load(sources: &[String]) -> Result<Inventory> {
        let mut inv = Inventory::default();
        let mut parsed_any = false;
        let mut tried = 0;
        for source in sources {
            // Ansible's default source may be absent without a word.
            if source.is_empty() || (source == "/etc/ansible/hosts" && !Path::new(source).exists())
            {
                continue;
            }
            tried += 1;
            let path = Path::new(source);
            if source.contains(',') && !path.exists() {
                inv.host_list(source);
                parsed_any = true;
                continue;
            }
            if !path.exists() {
                inv.warnings.push(format!(
                    "Unable to parse {source} as an inventory source: no such file or directory"
                ));
                continue;
            }
            let parsed = inv.parse_path(path)?;
            if parsed {
                parsed_any = true;
            } else {
                inv.warnings
                    .push(format!("Unable to parse {source} as an inventory source"));
            }
            let base = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().map_or_else(
                    || PathBuf::from("."),
                    |p| {
                        if p.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            p.to_path_buf()
                        }
                    },
                )
            };
            inv.inventory_vars.push((base, DirVars::default()));
        }
        if tried > 0 && !parsed_any {
            return Err(Error::Parse(format!(
                "no inventory could be loaded from {}",
                sources
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        inv.data.reconcile();
        let hosts = inv.vars_host_names();
        let mut loaded = Vec::new();
        for (base, _) in &inv.inventory_vars {
            let dv = DirVars::load(base, inv.data.groups.keys(), hosts.iter())?;
            loaded.push((base.clone(), dv));
        }
        inv.inventory_vars = loaded;
        Ok(inv)
    }

    /// Warnings from loading (missing sources, skipped YAML keys), for the
    /// caller to print.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Reads `group_vars/` and `host_vars/` beside a playbook (once per
    /// directory), so that [`Inventory::host_vars`] with this `playbook_dir`
    /// uses them and errors in them surface here.
    pub fn load_playbook_vars(&mut self, playbook_dir: &Path) -> Result<()> {
        if self.playbook_vars.iter().any(|(p, _)| p == playbook_dir) {
            return Ok(());
        }
        let hosts = self.vars_host_names();
        let dv = DirVars::load(playbook_dir, self.data.groups.keys(), hosts.iter())?;
        self.playbook_vars.push((playbook_dir.to_path_buf(), dv));
        Ok(())
    }

    fn vars_host_names(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.data.hosts.keys().cloned().collect();
        for l in pattern::LOCALHOST {
            if !self.data.hosts.contains_key(l) {
                hosts.push(l.to_string());
            }
        }
        hosts
    }

    fn host_list(&mut self, list: &str) {
        for h in list.split(',') {
            let h = h.trim();
            if h.is_empty() {
                continue;
            }
            let (host, port) =
                address::parse_address(h, false).unwrap_or_else(|| (h.to_string(), None));
            if !self.data.hosts.contains_key(&host) {
                self.data.add_host(&host, Some("ungrouped"), port);
            }
        }
    }

    /// Ok(false): nothing in it could be used (an empty directory).
    fn parse_path(&mut self, path: &Path) -> Result<bool> {
        if path.is_dir() {
            let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(path)
                .map_err(|e| {
                    Error::Parse(format!("{}: cannot read directory: {e}", path.display()))
                })?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            names.sort();
            let mut parsed = false;
            for n in names {
                let s = n.to_string_lossy();
                if s.starts_with('.')
                    || matches!(s.as_ref(), "host_vars" | "group_vars" | "vars_plugins")
                    || IGNORED_EXTS.iter().any(|e| s.ends_with(e))
                {
                    continue;
                }
                if self.parse_path(&path.join(&n))? {
                    parsed = true;
                }
            }
            return Ok(parsed);
        }
        self.parse_file(path)?;
        Ok(true)
    }

    fn parse_file(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Parse(format!("{}: cannot read: {e}", path.display())))?;
        let src = String::from_utf8_lossy(&bytes).into_owned();
        self.parse_text(&src, path)
    }

    /// One inventory file's text, read as from `path` (its extension
    /// chooses INI, or YAML then INI, as in [`Inventory::load`]), without
    /// group_vars/host_vars and without touching the file system. For tests
    /// and the fuzz targets (`fuzz/`).
    #[doc(hidden)]
    pub fn parse_str(src: &str, path: &Path) -> Result<Inventory> {
        let mut inv = Inventory::default();
        inv.parse_text(src, path)?;
        inv.data.reconcile();
        Ok(inv)
    }

    fn parse_text(&mut self, src: &str, path: &Path) -> Result<()> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        if ext.as_deref() == Some("toml") {
            return Err(Error::Parse(format!(
                "{}: TOML inventories are not supported",
                path.display()
            )));
        }
        let yaml_first = matches!(ext.as_deref(), None | Some("yml" | "yaml" | "json"));
        if !yaml_first {
            ini::parse(&mut self.data, src, path)?;
            return Ok(());
        }
        // Parse into a copy so that a failed YAML attempt leaves nothing.
        let mut attempt = self.data.clone();
        let mut warnings = Vec::new();
        match yaml_inv::parse(&mut attempt, src, path, &mut warnings) {
            Ok(()) => {
                self.data = attempt;
                self.warnings.extend(warnings);
                Ok(())
            }
            Err(yaml_inv::YamlFail::Invalid(e)) => Err(e.into()),
            Err(yaml_inv::YamlFail::NotInventory(yaml_err)) => {
                let mut attempt = self.data.clone();
                match ini::parse(&mut attempt, src, path) {
                    Ok(()) => {
                        self.data = attempt;
                        Ok(())
                    }
                    // A .yml file is meant as YAML: its YAML error is the
                    // useful one.
                    Err(ini_err) => Err(if ext.is_some() { yaml_err } else { ini_err }.into()),
                }
            }
        }
    }

    /// Every host, in inventory order (`all`'s order for patterns).
    pub fn hosts(&self) -> Vec<String> {
        self.data.group_hosts("all")
    }

    /// Group names, in inventory order (`all` and `ungrouped` first).
    pub fn groups(&self) -> Vec<String> {
        self.data.groups.keys().cloned().collect()
    }

    /// The `group_names` magic variable: the host's groups but `all`, sorted.
    pub fn group_names(&self, host: &str) -> Vec<String> {
        let mut g: Vec<String> = self
            .data
            .host_groups(host)
            .into_iter()
            .filter(|g| g != "all")
            .collect();
        g.sort();
        g
    }

    /// Whether `host` is the implicit localhost (named but not in inventory).
    pub fn is_implicit_localhost(&self, host: &str) -> bool {
        !self.data.hosts.contains_key(host) && pattern::LOCALHOST.contains(&host)
    }

    /// Hosts matching an Ansible pattern, in Ansible's order. A pattern
    /// matching nothing is Ok(empty) (the caller warns). `localhost`,
    /// `127.0.0.1` and `::1` select the implicit localhost when the
    /// inventory has no such host. A bad `~regex` or an out-of-range
    /// subscript is an error.
    pub fn select(&self, pattern: &str) -> Result<Vec<String>> {
        let parts = pattern::split_host_pattern(pattern);
        let hosts = pattern::evaluate(&self.data, &parts, true)?;
        let mut seen = std::collections::HashSet::new();
        Ok(hosts
            .into_iter()
            .map(|h| self.resolve_localhost(h))
            .filter(|h| seen.insert(h.clone()))
            .collect())
    }

    /// A localhost alias not in inventory stands for the first
    /// localhost-like host that is (as Ansible's `get_host`).
    fn resolve_localhost(&self, h: String) -> String {
        if self.data.hosts.contains_key(&h) {
            return h;
        }
        self.data
            .hosts
            .keys()
            .find(|k| pattern::LOCALHOST.contains(&k.as_str()))
            .cloned()
            .unwrap_or(h)
    }

    /// `--limit`: keeps the `hosts` (order unchanged) that also match
    /// `limit`, a pattern whose parts may be `@file` (one pattern a line).
    pub fn limit(&self, hosts: Vec<String>, limit: &str) -> Result<Vec<String>> {
        let mut subset = Vec::new();
        for part in pattern::split_host_pattern(limit) {
            if let Some(file) = part.strip_prefix('@') {
                let p = Path::new(file);
                if !p.exists() {
                    return Err(Error::Options(format!("unable to find limit file {file}")));
                }
                if !p.is_file() {
                    return Err(Error::Options(format!(
                        "a limit starting with '@' must be a file, not a directory: {file}"
                    )));
                }
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Error::Options(format!("cannot read limit file {file}: {e}")))?;
                subset.extend(text.split('\n').map(|l| l.trim().to_string()));
            } else {
                subset.push(part);
            }
        }
        let allowed: std::collections::HashSet<String> =
            pattern::evaluate(&self.data, &subset, true)?
                .into_iter()
                .map(|h| self.resolve_localhost(h))
                .collect();
        Ok(hosts.into_iter().filter(|h| allowed.contains(h)).collect())
    }

    fn playbook_dir_vars(&self, playbook_dir: Option<&Path>) -> Option<DirVars> {
        let dir = playbook_dir?;
        if let Some((_, dv)) = self.playbook_vars.iter().find(|(p, _)| p == dir) {
            return Some(dv.clone());
        }
        // Not loaded beforehand: read now; errors were the caller's to
        // catch with load_playbook_vars.
        DirVars::load(dir, self.data.groups.keys(), self.vars_host_names().iter()).ok()
    }

    /// The host's variables from inventory sources, group_vars/ and
    /// host_vars/ (beside the inventory and beside `playbook_dir`), merged
    /// with Ansible's precedence (lowest first): `all` inline vars; other
    /// groups' inline vars by (depth, ansible_group_priority, name);
    /// inventory group_vars/all; playbook group_vars/all; inventory
    /// group_vars/<group> and then playbook group_vars/<group>, in the same
    /// group order; the host's inline vars; inventory host_vars/<host>;
    /// playbook host_vars/<host>. No magic variables. The implicit
    /// localhost gets `ansible_connection: local`.
    pub fn host_vars(&self, host: &str, playbook_dir: Option<&Path>) -> Map<String, Value> {
        let pb = self.playbook_dir_vars(playbook_dir);
        self.merged_vars(host, pb.as_ref())
    }

    fn merged_vars(&self, host: &str, pb: Option<&DirVars>) -> Map<String, Value> {
        let mut out = Map::new();
        let implicit = self.is_implicit_localhost(host);
        if !implicit && !self.data.hosts.contains_key(host) {
            return out;
        }
        let merge = |out: &mut Map<String, Value>, m: Option<&Map<String, Value>>| {
            if let Some(m) = m {
                for (k, v) in m {
                    out.insert(k.clone(), v.clone());
                }
            }
        };
        let groups: Vec<String> = if implicit {
            vec![]
        } else {
            let g: Vec<String> = self
                .data
                .host_groups(host)
                .into_iter()
                .filter(|g| g != "all")
                .collect();
            self.data.sort_groups(&g)
        };
        merge(&mut out, self.data.groups.get("all").map(|g| &g.vars));
        for g in &groups {
            merge(&mut out, self.data.groups.get(g).map(|x| &x.vars));
        }
        for (_, dv) in &self.inventory_vars {
            merge(&mut out, dv.groups.get("all"));
        }
        if let Some(dv) = pb {
            merge(&mut out, dv.groups.get("all"));
        }
        for (_, dv) in &self.inventory_vars {
            for g in &groups {
                merge(&mut out, dv.groups.get(g));
            }
        }
        if let Some(dv) = pb {
            for g in &groups {
                merge(&mut out, dv.groups.get(g));
            }
        }
        if implicit {
            out.insert("ansible_connection".into(), Value::String("local".into()));
        } else {
            merge(&mut out, self.data.hosts.get(host).map(|h| &h.vars));
        }
        for (_, dv) in &self.inventory_vars {
            merge(&mut out, dv.hosts.get(host));
        }
        if let Some(dv) = pb {
            merge(&mut out, dv.hosts.get(host));
        }
        out
    }

    /// The `groups` magic variable: group name → host names (all, ungrouped too).
    pub fn groups_var(&self) -> Map<String, Value> {
        self.data
            .groups
            .keys()
            .map(|g| {
                let hosts = self
                    .data
                    .group_hosts(g)
                    .into_iter()
                    .map(Value::String)
                    .collect();
                (g.clone(), Value::Array(hosts))
            })
            .collect()
    }

    fn shown_vars(&self, host: &str, pb: Option<&DirVars>) -> Map<String, Value> {
        let mut v = self.merged_vars(host, pb);
        for k in INTERNAL_VARS {
            v.remove(*k);
        }
        v
    }

    /// `mailrun inventory --list`: exactly ansible-inventory's JSON.
    pub fn list_json(&self) -> String {
        self.list_json_for(None)
    }

    /// `--list` with `--playbook-dir`.
    pub fn list_json_for(&self, playbook_dir: Option<&Path>) -> String {
        let pb = self.playbook_dir_vars(playbook_dir);
        let mut top = Map::new();
        let mut seen = std::collections::HashSet::new();
        self.format_group("all", &mut seen, &mut top);
        let mut hostvars = Map::new();
        for h in self.hosts() {
            let v = self.shown_vars(&h, pb.as_ref());
            if !v.is_empty() {
                hostvars.insert(h, Value::Object(v));
            }
        }
        let mut meta = Map::new();
        meta.insert("hostvars".into(), Value::Object(hostvars));
        meta.insert("profile".into(), Value::String("inventory_legacy".into()));
        top.insert("_meta".into(), Value::Object(meta));
        output::py_json(&Value::Object(top)) + "\n"
    }

    fn format_group(
        &self,
        name: &str,
        seen: &mut std::collections::HashSet<String>,
        out: &mut Map<String, Value>,
    ) {
        let Some(g) = self.data.groups.get(name) else {
            return;
        };
        let mut entry = Map::new();
        if name != "all" && !g.hosts.is_empty() {
            entry.insert(
                "hosts".into(),
                Value::Array(g.hosts.iter().cloned().map(Value::String).collect()),
            );
        }
        if !g.children.is_empty() {
            entry.insert(
                "children".into(),
                Value::Array(g.children.iter().cloned().map(Value::String).collect()),
            );
        }
        for c in &g.children {
            if seen.insert(c.clone()) {
                self.format_group(c, seen, out);
            }
        }
        if !entry.is_empty() {
            out.insert(name.to_string(), Value::Object(entry));
        }
    }

    /// `--host H`: H is a pattern that must match exactly one host.
    pub fn host_json(&self, host: &str) -> Result<String> {
        self.host_json_for(host, None)
    }

    /// `--host H` with `--playbook-dir`.
    pub fn host_json_for(&self, host: &str, playbook_dir: Option<&Path>) -> Result<String> {
        let hosts = self.select(host)?;
        let [h] = hosts.as_slice() else {
            let help = crate::suggest::did_you_mean(host, self.data.hosts.keys());
            let mut msg = "You must pass a single valid host to --host parameter".to_string();
            if let Some(h) = help {
                msg = format!("{msg} ({h})");
            }
            return Err(Error::Options(msg));
        };
        let pb = self.playbook_dir_vars(playbook_dir);
        Ok(output::py_json(&Value::Object(self.shown_vars(h, pb.as_ref()))) + "\n")
    }

    /// `--graph [GROUP]`.
    pub fn graph_text(&self, group: Option<&str>) -> Result<String> {
        self.graph(group, None)
    }

    /// `--graph --vars [GROUP]` (with `--playbook-dir` when given).
    pub fn graph_text_vars(
        &self,
        group: Option<&str>,
        playbook_dir: Option<&Path>,
    ) -> Result<String> {
        let pb = self.playbook_dir_vars(playbook_dir);
        self.graph(group, Some(pb.as_ref()))
    }

    /// `vars`: None for a plain graph, Some(playbook vars) with `--vars`.
    fn graph(&self, group: Option<&str>, vars: Option<Option<&DirVars>>) -> Result<String> {
        let name = group.unwrap_or("all");
        if !self.data.groups.contains_key(name) {
            let help = crate::suggest::did_you_mean(name, self.data.groups.keys());
            let mut msg = "Pattern must be valid group name when using --graph".to_string();
            if let Some(h) = help {
                msg = format!("{msg} ({h})");
            }
            return Err(Error::Options(msg));
        }
        let mut lines = Vec::new();
        self.graph_group(name, 0, vars, &mut lines);
        Ok(lines.join("\n") + "\n")
    }

    fn graph_group(
        &self,
        name: &str,
        depth: usize,
        vars: Option<Option<&DirVars>>,
        lines: &mut Vec<String>,
    ) {
        // Groups cannot form cycles (add_child refuses), but stay safe.
        if depth > 1000 {
            return;
        }
        let Some(g) = self.data.groups.get(name) else {
            return;
        };
        lines.push(graph_name(&format!("@{name}:"), depth));
        for c in &g.children {
            self.graph_group(c, depth + 1, vars, lines);
        }
        if name != "all" {
            for h in &g.hosts {
                lines.push(graph_name(h, depth + 1));
                if let Some(pb) = vars {
                    show_vars(&self.shown_vars(h, pb), depth + 2, lines);
                }
            }
        }
        if let Some(pb) = vars {
            show_vars(&self.group_shown_vars(name, pb), depth + 1, lines);
        }
    }

    /// A group's own variables as `--graph --vars` shows them.
    fn group_shown_vars(&self, name: &str, pb: Option<&DirVars>) -> Map<String, Value> {
        let mut out = Map::new();
        let Some(g) = self.data.groups.get(name) else {
            return out;
        };
        out.extend(g.vars.clone());
        for (_, dv) in &self.inventory_vars {
            if let Some(m) = dv.groups.get(name) {
                out.extend(m.clone());
            }
        }
        if let Some(m) = pb.and_then(|dv| dv.groups.get(name)) {
            out.extend(m.clone());
        }
        if g.priority != 1 {
            out.insert("ansible_group_priority".into(), Value::from(g.priority));
        }
        for k in INTERNAL_VARS {
            out.remove(*k);
        }
        out
    }
}

fn graph_name(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_string()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn show_vars(vars: &Map<String, Value>, depth: usize, lines: &mut Vec<String>) {
    let mut keys: Vec<&String> = vars.keys().collect();
    keys.sort();
    for k in keys {
        if let Some(v) = vars.get(k) {
            lines.push(graph_name(
                &format!("{{{k} = {}}}", output::py_str(v)),
                depth,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_on_the_largest_inventory_take_no_quadratic_time() {
        // Fuzzing: `all` on 100000 hosts compared every host with every
        // other (minutes); with sets it is a fraction of a second.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let src = "[web]\nw[0:49999]\n[db]\nd[0:49999]\n";
            let inv = Inventory::parse_str(src, Path::new("hosts.ini")).expect("parses");
            let all = inv.select("all").map(|h| h.len());
            let some = inv.select("all:!db:&web").map(|h| h.len());
            let limited = inv.limit(inv.hosts(), "db").map(|h| h.len());
            let _ = tx.send((all.ok(), some.ok(), limited.ok()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("selecting from 100000 hosts took over a minute");
        assert_eq!(got, (Some(100_000), Some(50_000), Some(50_000)));
    }

    /// (group, parent, value of `v`, priority).
    type G<'a> = (&'a str, Option<&'a str>, &'a str, i64);

    /// Inline vars only.
    fn inventory(groups: &[G]) -> Inventory {
        let mut inv = Inventory::default();
        for (g, _, _, _) in groups {
            inv.data.add_group(g);
        }
        for (g, parent, v, prio) in groups {
            if let Some(p) = parent {
                inv.data.add_child(p, g).expect("child");
            }
            inv.data.set_group_var(g, "v", json!(v)).expect("var");
            if *prio != 1 {
                inv.data
                    .set_group_var(g, "ansible_group_priority", json!(prio))
                    .expect("prio");
            }
            inv.data.add_host("h", Some(g), None);
        }
        inv.data.reconcile();
        inv
    }

    #[test]
    fn group_precedence() {
        // (groups, winning value)
        let cases: &[(&[G], &str)] = &[
            // Deeper wins, whatever the order of definition.
            (
                &[
                    ("child", Some("parent"), "child", 1),
                    ("parent", None, "parent", 1),
                ],
                "child",
            ),
            (
                &[
                    ("parent", None, "parent", 1),
                    ("child", Some("parent"), "child", 1),
                ],
                "child",
            ),
            // Same depth: sorted by name, the last wins.
            (&[("b", None, "b", 1), ("a", None, "a", 1)], "b"),
            // Priority beats name at the same depth.
            (&[("a", None, "a", 10), ("b", None, "b", 1)], "a"),
            // Depth beats priority.
            (
                &[("deep", Some("top"), "deep", 1), ("top", None, "top", 99)],
                "deep",
            ),
            // `all` is the lowest.
            (&[("all", None, "all", 1), ("g", None, "g", 1)], "g"),
        ];
        for (groups, want) in cases {
            let inv = inventory(groups);
            assert_eq!(inv.host_vars("h", None)["v"], json!(want), "{groups:?}");
        }
    }

    #[test]
    fn host_vars_beat_group_vars() {
        let mut inv = inventory(&[("g", None, "g", 1)]);
        inv.data.set_host_var("h", "v", json!("host"));
        assert_eq!(inv.host_vars("h", None)["v"], "host");
    }
}
