//! The host and group graph, built the way ansible-core's `InventoryData`
//! builds it (insertion order, implicit `all`/`ungrouped`, depth).

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// The most hosts one inventory may hold, all its sources together, so that
/// many lines of ranges (`a[0:99999]`, `b[0:99999]`, …) cannot eat the
/// machine: one range alone is capped at this too.
pub(crate) const MAX_HOSTS: usize = 100_000;

static HOST_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(MAX_HOSTS);

/// The host limit in force: [`MAX_HOSTS`], unless a fuzz target lowered it.
pub(crate) fn max_hosts() -> usize {
    HOST_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// For fuzz targets only: a lower host limit, so that an input that builds
/// a huge inventory costs what a small one does (the code paths, the limit
/// and its error included, are the same). Never above [`MAX_HOSTS`].
#[doc(hidden)]
pub fn set_max_hosts_for_fuzzing(n: usize) {
    HOST_LIMIT.store(n.min(MAX_HOSTS), std::sync::atomic::Ordering::Relaxed);
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub(crate) vars: Map<String, Value>,
    /// Direct hosts, in the order they were added.
    pub(crate) hosts: Vec<String>,
    pub(crate) children: Vec<String>,
    pub(crate) parents: Vec<String>,
    pub(crate) priority: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Host {
    pub(crate) vars: Map<String, Value>,
    /// Groups that list the host directly (an index of `Group::hosts`).
    pub(crate) direct: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Data {
    pub(crate) groups: IndexMap<String, Group>,
    pub(crate) hosts: IndexMap<String, Host>,
}

impl Default for Data {
    fn default() -> Self {
        let mut d = Data {
            groups: IndexMap::new(),
            hosts: IndexMap::new(),
        };
        d.add_group("all");
        d.add_group("ungrouped");
        // Both exist: cannot fail.
        let _ = d.add_child("all", "ungrouped");
        d
    }
}

impl Data {
    pub(crate) fn add_group(&mut self, name: &str) {
        if !self.groups.contains_key(name) {
            self.groups.insert(
                name.to_string(),
                Group {
                    priority: 1,
                    ..Group::default()
                },
            );
        }
    }

    /// Err when adding `names` would take the inventory past [`MAX_HOSTS`].
    pub(crate) fn check_room(&self, names: &[String]) -> Result<(), String> {
        let new = names
            .iter()
            .filter(|h| !self.hosts.contains_key(h.as_str()))
            .count();
        let max = max_hosts();
        if self.hosts.len().saturating_add(new) > max {
            return Err(format!(
                "too many hosts: this would make {} hosts, and an inventory holds at most {max}",
                self.hosts.len() + new
            ));
        }
        Ok(())
    }

    /// Adds the host (a port only counts when the host is new, as in
    /// Ansible) and puts it in `group`.
    pub(crate) fn add_host(&mut self, name: &str, group: Option<&str>, port: Option<u64>) {
        if !self.hosts.contains_key(name) {
            let mut h = Host::default();
            if let Some(p) = port.filter(|p| *p != 0) {
                h.vars.insert("ansible_port".into(), Value::from(p));
            }
            self.hosts.insert(name.to_string(), h);
        }
        let Some(group) = group.filter(|g| self.groups.contains_key(*g)) else {
            return;
        };
        let Some(h) = self.hosts.get_mut(name) else {
            return;
        };
        if h.direct.iter().any(|g| g == group) {
            return;
        }
        h.direct.push(group.to_string());
        if let Some(g) = self.groups.get_mut(group) {
            g.hosts.push(name.to_string());
        }
    }

    pub(crate) fn ancestors(&self, group: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut todo: Vec<String> = self
            .groups
            .get(group)
            .map(|g| g.parents.clone())
            .unwrap_or_default();
        while let Some(g) = todo.pop() {
            if seen.contains(&g) {
                continue;
            }
            if let Some(gr) = self.groups.get(&g) {
                todo.extend(gr.parents.iter().cloned());
            }
            seen.push(g);
        }
        seen
    }

    /// Makes `child` (a group, else a host) a member of `group`.
    pub(crate) fn add_child(&mut self, group: &str, child: &str) -> Result<(), String> {
        if !self.groups.contains_key(group) {
            return Err(format!("{group} is not a known group"));
        }
        if self.groups.contains_key(child) {
            if group == child {
                return Err(format!("can't add group '{group}' to itself"));
            }
            if self.groups[group].children.iter().any(|c| c == child) {
                return Ok(());
            }
            if self.ancestors(group).iter().any(|a| a == child) {
                return Err(format!(
                    "Adding group '{child}' as child to '{group}' creates a recursive dependency loop."
                ));
            }
            if let Some(g) = self.groups.get_mut(group) {
                g.children.push(child.to_string());
            }
            if let Some(c) = self.groups.get_mut(child) {
                if !c.parents.iter().any(|p| p == group) {
                    c.parents.push(group.to_string());
                }
            }
            Ok(())
        } else if self.hosts.contains_key(child) {
            self.add_host(child, Some(group), None);
            Ok(())
        } else {
            Err(format!("{child} is not a known host nor group"))
        }
    }

    /// `ansible_group_priority` sets the priority instead of a variable.
    pub(crate) fn set_group_var(
        &mut self,
        group: &str,
        key: &str,
        value: Value,
    ) -> Result<(), String> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        if key == "ansible_group_priority" {
            g.priority = match &value {
                Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                Value::String(s) => s.trim().parse().ok(),
                Value::Bool(b) => Some(i64::from(*b)),
                _ => None,
            }
            .ok_or_else(|| format!("ansible_group_priority must be an integer, got {value}"))?;
        } else {
            g.vars.insert(key.to_string(), value);
        }
        Ok(())
    }

    /// Ansible's `InventoryData.set_variable`: a name that is also a group
    /// sets the *group's* variable, even from a host line (`[web]` holding
    /// a host `web x=1` gives every host of `web` x=1).
    pub(crate) fn set_host_var(&mut self, host: &str, key: &str, value: Value) {
        if self.groups.contains_key(host) {
            // A priority that is not a number is ignored here, as Ansible
            // would fail in the middle of the host line.
            let _ = self.set_group_var(host, key, value);
            return;
        }
        if let Some(h) = self.hosts.get_mut(host) {
            h.vars.insert(key.to_string(), value);
        }
    }

    /// `reconcile_inventory`: top-level groups join `all`, hosts without a
    /// group join `ungrouped`, grouped hosts leave it.
    pub(crate) fn reconcile(&mut self) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for g in &names {
            if g != "all" && self.groups[g].parents.is_empty() {
                let _ = self.add_child("all", g);
            }
        }
        let hosts: Vec<String> = self.hosts.keys().cloned().collect();
        for h in &hosts {
            let groups = self.host_groups(h);
            let in_ungrouped = groups.iter().any(|g| g == "ungrouped");
            let others = groups.iter().any(|g| g != "all" && g != "ungrouped");
            if in_ungrouped {
                if others {
                    if let Some(u) = self.groups.get_mut("ungrouped") {
                        u.hosts.retain(|x| x != h);
                    }
                    if let Some(host) = self.hosts.get_mut(h) {
                        host.direct.retain(|g| g != "ungrouped");
                    }
                }
            } else if !others {
                self.add_host(h, Some("ungrouped"), None);
            }
        }
    }

    /// Every group the host is in, directly or through a child group
    /// (`all` included when reachable), in no particular order.
    pub(crate) fn host_groups(&self, host: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let direct = self
            .hosts
            .get(host)
            .map(|h| h.direct.as_slice())
            .unwrap_or(&[]);
        for name in direct {
            if !out.contains(name) {
                out.push(name.clone());
            }
            for a in self.ancestors(name) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Depth of every group: the longest path from a root (Ansible's
    /// `group.depth`), by relaxing edges in topological order (groups form
    /// no cycles: add_child refuses them).
    pub(crate) fn depths(&self) -> std::collections::HashMap<&str, usize> {
        let mut depth: std::collections::HashMap<&str, usize> =
            self.groups.keys().map(|g| (g.as_str(), 0)).collect();
        let mut indegree: std::collections::HashMap<&str, usize> = self
            .groups
            .iter()
            .map(|(n, g)| (n.as_str(), g.parents.len()))
            .collect();
        let mut ready: Vec<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        while let Some(g) = ready.pop() {
            let d = depth.get(g).copied().unwrap_or(0);
            for c in self
                .groups
                .get(g)
                .map(|x| x.children.as_slice())
                .unwrap_or(&[])
            {
                if let Some(cd) = depth.get_mut(c.as_str()) {
                    *cd = (*cd).max(d + 1);
                }
                if let Some(n) = indegree.get_mut(c.as_str()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.push(c.as_str());
                    }
                }
            }
        }
        depth
    }

    /// Groups sorted as `sort_groups`: depth, priority, name.
    pub(crate) fn sort_groups(&self, groups: &[String]) -> Vec<String> {
        let depths = self.depths();
        let mut keyed: Vec<(usize, i64, String)> = groups
            .iter()
            .map(|g| {
                let prio = self.groups.get(g).map_or(1, |x| x.priority);
                (
                    depths.get(g.as_str()).copied().unwrap_or(0),
                    prio,
                    g.clone(),
                )
            })
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, _, g)| g).collect()
    }

    /// `group.get_hosts()`: the group's hosts, then its descendants' level
    /// by level, without repeats.
    pub(crate) fn group_hosts(&self, group: &str) -> Vec<String> {
        let Some(g) = self.groups.get(group) else {
            return vec![];
        };
        let mut order: Vec<String> = vec![group.to_string()];
        let mut seen: Vec<String> = vec![group.to_string()];
        order.extend(g.children.iter().cloned());
        seen.extend(g.children.iter().cloned());
        let mut level: Vec<String> = g.children.clone();
        while !level.is_empty() {
            let mut next = Vec::new();
            for l in &level {
                for c in self
                    .groups
                    .get(l)
                    .map(|x| x.children.as_slice())
                    .unwrap_or(&[])
                {
                    if !seen.contains(c) {
                        seen.push(c.clone());
                        order.push(c.clone());
                        next.push(c.clone());
                    }
                }
            }
            level = next;
        }
        let mut hosts: Vec<String> = Vec::new();
        let mut set = std::collections::HashSet::new();
        for gname in &order {
            if let Some(gr) = self.groups.get(gname) {
                for h in &gr.hosts {
                    if set.insert(h.clone()) {
                        hosts.push(h.clone());
                    }
                }
            }
        }
        hosts
    }
}
