//! Ansible inventories. (API fixed; body being written.)

use crate::error::Result;
use serde_json::{Map, Value};
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Inventory {}

impl Inventory {
    /// Loads `-i` sources in order: a file (INI or YAML), a directory of
    /// them, or a comma list `a,b,`.
    pub fn load(_sources: &[String]) -> Result<Inventory> {
        Ok(Inventory {})
    }
    /// Every host, in inventory order.
    pub fn hosts(&self) -> Vec<String> {
        vec![]
    }
    /// Hosts matching an Ansible pattern, in Ansible's order. A pattern
    /// matching nothing is Ok(empty) (the caller warns).
    pub fn select(&self, _pattern: &str) -> Result<Vec<String>> {
        Ok(vec![])
    }
    /// The host's variables from inventory sources, group_vars/ and
    /// host_vars/ (beside the inventory and beside `playbook_dir`), merged
    /// with Ansible's precedence. No magic variables.
    pub fn host_vars(&self, _host: &str, _playbook_dir: Option<&Path>) -> Map<String, Value> {
        Map::new()
    }
    /// The `groups` magic variable: group name → host names (all, ungrouped too).
    pub fn groups_var(&self) -> Map<String, Value> {
        Map::new()
    }
    /// `mailrun inventory --list`: exactly ansible-inventory's JSON.
    pub fn list_json(&self) -> String {
        String::new()
    }
    /// `--host H`.
    pub fn host_json(&self, _host: &str) -> Result<String> {
        Ok(String::new())
    }
    /// `--graph [GROUP]`.
    pub fn graph_text(&self, _group: Option<&str>) -> Result<String> {
        Ok(String::new())
    }
}
