//! The YAML inventory format (`all:` with `hosts`/`children`/`vars`), as
//! ansible-core's `yaml` plugin reads it.

use super::data::Data;
use super::ini::expand_hostpattern;
use crate::error::SourceError;
use crate::yaml::{Node, Yaml};
use std::path::Path;

/// Why a file is not a YAML inventory: `NotInventory` lets the caller try
/// INI, as Ansible does; `Invalid` is a real error in a YAML inventory.
pub(crate) enum YamlFail {
    NotInventory(SourceError),
    Invalid(SourceError),
}

pub(crate) fn parse(
    data: &mut Data,
    src: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), YamlFail> {
    let root = crate::yaml::parse(src, path).map_err(YamlFail::NotInventory)?;
    let err = |node: &Node, msg: String| SourceError::with_source(path, src, node.pos, msg);
    let Some(map) = root.as_map() else {
        let msg = if root.is_null() {
            "empty YAML inventory".to_string()
        } else {
            format!(
                "a YAML inventory is a mapping of groups, found {}",
                root.kind()
            )
        };
        return Err(YamlFail::NotInventory(err(&root, msg)));
    };
    if map.is_empty() {
        return Err(YamlFail::NotInventory(err(
            &root,
            "empty YAML inventory".into(),
        )));
    }
    if let Some(p) = root.get("plugin") {
        if !p.is_null() {
            return Err(YamlFail::Invalid(err(
                p,
                "inventory plugin configuration files are not supported".into(),
            )));
        }
    }
    let mut ctx = Ctx {
        data,
        src,
        path,
        warnings,
    };
    for (k, v) in map {
        ctx.group(k, v).map_err(YamlFail::Invalid)?;
    }
    Ok(())
}

struct Ctx<'a> {
    data: &'a mut Data,
    src: &'a str,
    path: &'a Path,
    warnings: &'a mut Vec<String>,
}

impl Ctx<'_> {
    fn err(&self, node: &Node, msg: String) -> SourceError {
        SourceError::with_source(self.path, self.src, node.pos, msg)
    }

    fn warn(&mut self, node: &Node, msg: String) {
        self.warnings.push(format!(
            "{}:{}:{}: {msg}",
            self.path.display(),
            node.pos.line,
            node.pos.col
        ));
    }

    /// One group; returns its name.
    fn group(&mut self, key: &Node, body: &Node) -> Result<String, SourceError> {
        let name = match &key.value {
            Yaml::Str(s) if !s.is_empty() => s.clone(),
            _ => {
                return Err(self.err(
                    key,
                    format!(
                        "a group name must be a non-empty string, found {}",
                        key.kind()
                    ),
                ))
            }
        };
        if !matches!(body.value, Yaml::Map(_) | Yaml::Null) {
            self.warn(
                key,
                format!("skipping '{name}': not a valid group definition"),
            );
            return Ok(name);
        }
        self.data.add_group(&name);
        let Some(entries) = body.as_map() else {
            return Ok(name);
        };
        for (k, v) in entries {
            let section = k.key_string();
            let is_section = matches!(section.as_str(), "vars" | "children" | "hosts");
            // A string stands for a one-key mapping with a null value.
            let owned;
            let v = match (&v.value, is_section) {
                (Yaml::Str(s), true) => {
                    owned = Node {
                        value: Yaml::Map(vec![(
                            Node {
                                value: Yaml::Str(s.clone()),
                                pos: v.pos,
                            },
                            Node::null(v.pos),
                        )]),
                        pos: v.pos,
                    };
                    &owned
                }
                _ => v,
            };
            if is_section && !matches!(v.value, Yaml::Map(_) | Yaml::Null) {
                return Err(self.err(
                    v,
                    format!(
                        "invalid \"{section}\" entry for group \"{name}\": expected a mapping, found {}",
                        v.kind()
                    ),
                ));
            }
            if !matches!(v.value, Yaml::Map(_) | Yaml::Null) {
                self.warn(
                    k,
                    format!("skipping key '{section}' in group '{name}': not a mapping"),
                );
                continue;
            }
            let Some(items) = v.as_map() else {
                continue;
            };
            match section.as_str() {
                "vars" => {
                    for (vk, vv) in items {
                        self.data
                            .set_group_var(&name, &vk.key_string(), vv.to_json())
                            .map_err(|m| self.err(vv, m))?;
                    }
                }
                "children" => {
                    for (ck, cv) in items {
                        let child = self.group(ck, cv)?;
                        self.data
                            .add_child(&name, &child)
                            .map_err(|m| self.err(ck, m))?;
                    }
                }
                "hosts" => {
                    for (hk, hv) in items {
                        let Yaml::Str(pattern) = &hk.value else {
                            return Err(self.err(
                                hk,
                                format!(
                                    "host pattern {} must be a string: quote it",
                                    hk.key_string()
                                ),
                            ));
                        };
                        let (hosts, port) =
                            expand_hostpattern(pattern).map_err(|m| self.err(hk, m))?;
                        self.data.check_room(&hosts).map_err(|m| self.err(hk, m))?;
                        let vars: &[(Node, Node)] = match &hv.value {
                            Yaml::Map(m) => m,
                            Yaml::Null => &[],
                            Yaml::Bool(false) | Yaml::Int(0) => &[],
                            Yaml::Str(s) if s.is_empty() => &[],
                            Yaml::Seq(s) if s.is_empty() => &[],
                            _ => {
                                return Err(self.err(
                                    hv,
                                    format!(
                                    "host '{pattern}': expected a mapping of variables, found {}",
                                    hv.kind()
                                ),
                                ))
                            }
                        };
                        for h in &hosts {
                            self.data.add_host(h, Some(&name), port);
                            for (vk, vv) in vars {
                                self.data.set_host_var(h, &vk.key_string(), vv.to_json());
                            }
                        }
                    }
                }
                _ => {
                    let help =
                        crate::suggest::did_you_mean(&section, ["vars", "children", "hosts"]);
                    let mut msg = format!(
                        "skipping unexpected key '{section}' in group '{name}': only \"vars\", \"children\" and \"hosts\" are valid"
                    );
                    if let Some(h) = help {
                        msg = format!("{msg} ({h})");
                    }
                    self.warn(k, msg);
                }
            }
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_holds_at_most_max_hosts() {
        // Each range within the cap, the two together past it.
        let src = "all:\n  children:\n    a:\n      hosts:\n        a[1:60000]:\n    b:\n      hosts:\n        b[1:60000]:\n";
        let mut d = Data::default();
        let mut warnings = Vec::new();
        let Err(YamlFail::Invalid(e)) = parse(&mut d, src, Path::new("inv.yml"), &mut warnings)
        else {
            panic!("120000 hosts were accepted");
        };
        assert_eq!((e.pos.line, e.pos.col), (8, 9), "{e}");
        assert!(e.msg.contains("too many hosts"), "{}", e.msg);
    }
}
