//! `group_vars/` and `host_vars/` directories (ansible-core's
//! `host_group_vars` plugin and `DataLoader.find_vars_files`).

use crate::error::{Error, Pos, SourceError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const EXTS: [&str; 3] = [".yml", ".yaml", ".json"];

/// The variables found under one base directory, per group and per host
/// (each already merged across its files).
#[derive(Debug, Clone, Default)]
pub(crate) struct DirVars {
    pub(crate) groups: HashMap<String, Map<String, Value>>,
    pub(crate) hosts: HashMap<String, Map<String, Value>>,
}

impl DirVars {
    /// Loads `base/group_vars/<g>` for each group and `base/host_vars/<h>`
    /// for each host.
    pub(crate) fn load<'a>(
        base: &Path,
        groups: impl Iterator<Item = &'a String>,
        hosts: impl Iterator<Item = &'a String>,
    ) -> Result<DirVars, Error> {
        let mut dv = DirVars::default();
        let gdir = base.join("group_vars");
        if gdir.is_dir() {
            for g in groups {
                if let Some(m) = entity_vars(&gdir, g)? {
                    dv.groups.insert(g.clone(), m);
                }
            }
        }
        let hdir = base.join("host_vars");
        if hdir.is_dir() {
            for h in hosts {
                if let Some(m) = entity_vars(&hdir, h)? {
                    dv.hosts.insert(h.clone(), m);
                }
            }
        }
        Ok(dv)
    }
}

/// `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json` or the directory `NAME/`:
/// the first that exists wins; a directory's files merge in sorted order.
fn entity_vars(dir: &Path, name: &str) -> Result<Option<Map<String, Value>>, Error> {
    // Ansible skips names that are absolute paths ('chroot' hosts); names
    // that would climb out of the directory are skipped too.
    if name.starts_with('/') || name.split('/').any(|p| p == "..") || name.contains('\0') {
        return Ok(None);
    }
    let mut files = Vec::new();
    for ext in std::iter::once("").chain(EXTS) {
        let p = dir.join(format!("{name}{ext}"));
        if p.is_dir() {
            dir_files(&p, &mut files);
            break;
        }
        if p.exists() {
            files.push(p);
            break;
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut out = Map::new();
    for f in files {
        for (k, v) in load_vars_file(&f)? {
            out.insert(k, v);
        }
    }
    Ok(Some(out))
}

fn dir_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<std::ffi::OsString> =
        rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let s = n.to_string_lossy();
        if s.starts_with('.') || s.ends_with('~') {
            continue;
        }
        let ext = Path::new(&n)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()));
        let full = dir.join(&n);
        if full.is_dir() {
            if ext.is_none() {
                dir_files(&full, out);
            }
        } else if full.is_file() && ext.as_deref().is_none_or(|e| EXTS.contains(&e)) {
            out.push(full);
        }
    }
}

/// One vars file: YAML (or JSON); empty is nothing, anything but a mapping
/// is an error.
pub(crate) fn load_vars_file(path: &Path) -> Result<Map<String, Value>, Error> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| Error::Parse(format!("{}: cannot read: {e}", path.display())))?;
    let node = crate::yaml::parse(&src, path)?;
    match node.to_json() {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        Value::Bool(false) => Ok(Map::new()),
        Value::String(s) if s.is_empty() => Ok(Map::new()),
        Value::Array(a) if a.is_empty() => Ok(Map::new()),
        _ => Err(SourceError::with_source(
            path,
            &src,
            if node.pos.line == 0 {
                Pos { line: 1, col: 1 }
            } else {
                node.pos
            },
            format!(
                "a vars file must hold a mapping of variables, found {}",
                node.kind()
            ),
        )
        .into()),
    }
}
