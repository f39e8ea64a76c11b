//! Runs one (task, host) node: conditions, loop, templating, retries, the
//! module itself, `changed_when`/`failed_when`, `register`.

use super::event::{DiffText, Event, Status};
use super::Shared;
use crate::connection::{ConnError, Connection};
use crate::expr;
use crate::local::LocalConnection;
use crate::module::{Context, Outcome, Progress};
use crate::modules;
use crate::playbook::{Cond, Play, Task};
use crate::template;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// What the scheduler needs to know about a finished node.
#[derive(Debug, Clone)]
pub(crate) struct NodeResult {
    pub status: Status,
    /// Failed or unreachable (and not ignored): the host's later tasks and
    /// the nodes that need this one are skipped.
    pub blocking: bool,
    pub ignored: bool,
    pub changed: bool,
}

/// Emits `Event::Progress` for a module's live progress.
struct ProgressSink {
    shared: Arc<Shared>,
    task: String,
    host: String,
    /// `no_log`: progress says only that the task is working.
    hidden: bool,
}

impl Progress for ProgressSink {
    fn update(&self, text: &str) {
        let text = if self.hidden {
            "working (no_log)"
        } else {
            text
        };
        self.shared.emit(Event::Progress {
            task: self.task.clone(),
            host: self.host.clone(),
            text: text.to_string(),
        });
    }
}

/// The other inventory hosts as modules see them.
struct OtherHosts {
    shared: Arc<Shared>,
    play_user: Option<String>,
}

impl crate::module::Hosts for OtherHosts {
    fn connection(&self, name: &str) -> Result<Option<Arc<dyn Connection>>, ConnError> {
        if !self.shared.inv_vars.contains_key(name) {
            return Ok(None);
        }
        self.shared
            .connection_for(name, self.play_user.as_deref(), None)
            .map(Some)
    }
}

/// One result line's worth of facts, before it is reported.
struct ItemResult {
    outcome: Outcome,
    unreachable: bool,
    ignored: bool,
    result: Value,
    /// The rendered `delegate_to` target the item ran on, if delegated.
    delegated: Option<String>,
}

fn cond_holds(c: &Cond, vars: &Value) -> Result<bool, expr::ExprError> {
    match c {
        Cond::Const(b) => Ok(*b),
        Cond::All(exprs) => {
            for e in exprs {
                if !expr::eval_bool(e, vars)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

fn cond_src(c: &Cond) -> String {
    match c {
        Cond::Const(b) => b.to_string(),
        Cond::All(exprs) => exprs
            .iter()
            .map(|e| e.src.clone())
            .collect::<Vec<_>>()
            .join(" and "),
    }
}

/// A failure found before or instead of the module's run, with the result
/// `register` stores for it.
fn failed_item(msg: String, ignored: bool) -> ItemResult {
    let outcome = Outcome::failed(msg);
    ItemResult {
        result: result_value(&outcome),
        outcome,
        unreachable: false,
        ignored,
        delegated: None,
    }
}

/// The result `register` stores for an outcome.
fn result_value(o: &Outcome) -> Value {
    let mut m = Map::new();
    m.insert("changed".into(), Value::Bool(o.changed));
    m.insert("failed".into(), Value::Bool(o.failed));
    if o.skipped {
        m.insert("skipped".into(), Value::Bool(true));
    }
    if let Some(msg) = &o.msg {
        m.insert("msg".into(), Value::String(msg.clone()));
    }
    for (k, v) in &o.data {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

fn diff_text(o: &Outcome) -> Option<DiffText> {
    let d = o.diff.as_ref()?;
    let unified = similar::TextDiff::from_lines(&d.before, &d.after)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("before: {}", d.path),
            &format!("after: {}", d.path),
        )
        .to_string();
    Some(DiffText {
        path: d.path.clone(),
        unified,
    })
}

impl Shared {
    /// The variables a task sees on a host, lowest precedence first:
    /// inventory, play vars, vars_files, task vars, registered, extra vars.
    /// Templates in the variables written in the sources (inventory, play,
    /// vars_files, task) are rendered against the whole set; registered
    /// results and extra vars are data, never rendered again. A looped
    /// task's own vars are left for each item (they may use `item`). Also
    /// returns the variables whose templates cannot be rendered.
    pub(crate) fn vars_for(
        &self,
        play_idx: usize,
        play: &Play,
        task: &Task,
        host: &str,
    ) -> (Value, Vec<(String, String)>) {
        let mut m = self
            .inv_vars
            .get(host)
            .map(|v| (**v).clone())
            .unwrap_or_default();
        m.extend(play.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        m.extend(play.vars_files.iter().map(|(k, v)| (k.clone(), v.clone())));
        if task.loop_.is_none() {
            m.extend(task.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        // Only these keys come from sources and may be rendered.
        let mut from_sources: std::collections::HashSet<String> = m.keys().cloned().collect();
        let registered = self
            .registered
            .lock()
            .ok()
            .and_then(|r| r.get(host).cloned());
        for (k, v) in registered
            .into_iter()
            .flatten()
            .chain(self.opts.extra_vars.clone())
        {
            from_sources.remove(&k);
            m.insert(k, v);
        }
        m.insert("inventory_hostname".into(), Value::String(host.to_string()));
        let short = host.split('.').next().unwrap_or(host);
        m.insert(
            "inventory_hostname_short".into(),
            Value::String(short.to_string()),
        );
        m.insert(
            "playbook_dir".into(),
            Value::String(play.dir.display().to_string()),
        );
        m.insert("ansible_check_mode".into(), Value::Bool(self.opts.check));
        if task.mentions_groups || self.inventory_mentions_groups {
            m.insert(
                "ansible_play_hosts".into(),
                self.play_hosts_json[play_idx].clone(),
            );
            m.insert("groups".into(), (*self.groups).clone());
        }
        if task.mentions_hostvars || self.inventory_mentions_hostvars {
            let reg = self
                .registered
                .lock()
                .ok()
                .map(|r| r.clone())
                .unwrap_or_default();
            let mut hv = Map::new();
            for (h, vars) in &self.inv_vars {
                let mut one = (**vars).clone();
                one.insert("inventory_hostname".into(), Value::String(h.clone()));
                if let Some(r) = reg.get(h) {
                    one.extend(r.clone());
                }
                hv.insert(h.clone(), Value::Object(one));
            }
            m.insert("hostvars".into(), Value::Object(hv));
        }
        let broken = resolve_nested_templates(&mut m, &from_sources);
        crate::secret::register_vars(&m, false);
        (Value::Object(m), broken)
    }

    /// The connection a host uses. `task_vars` are the task's variables for
    /// that host (play vars, vars_files, extra vars included), when the
    /// host is the task's own; a delegate_to target uses its inventory
    /// variables and the extra vars. Templated connection variables
    /// (`ansible_host: "{{ ip }}"`) are rendered.
    pub(crate) fn connection_for(
        &self,
        host: &str,
        play_user: Option<&str>,
        task_vars: Option<&Value>,
    ) -> Result<Arc<dyn Connection>, ConnError> {
        let inv = self.inv_vars.get(host);
        let delegated;
        let scope: &Value = match task_vars {
            Some(v) => v,
            None => {
                let mut m = inv.map(|v| v.as_ref().clone()).unwrap_or_default();
                // Extra vars win, as in Ansible.
                m.extend(self.opts.extra_vars.clone());
                delegated = Value::Object(m);
                &delegated
            }
        };
        // Only the connection variables, rendered where templated.
        let mut vars = serde_json::Map::new();
        for (k, v) in scope.as_object().into_iter().flatten() {
            if !k.starts_with("ansible_") {
                continue;
            }
            let v = match v {
                Value::String(text) if template::has_template(text) => Value::String(
                    template::render_str(text, scope)
                        .map_err(|e| ConnError::Unreachable(format!("{k}: {e}")))?,
                ),
                other => other.clone(),
            };
            vars.insert(k.clone(), v);
        }
        match vars.get("ansible_connection").and_then(Value::as_str) {
            Some("local") => Ok(self.local.clone()),
            // A delegate_to target outside the inventory: this machine.
            None if inv.is_none() && matches!(host, "localhost" | "127.0.0.1" | "::1") => {
                Ok(self.local.clone())
            }
            Some(other) if !matches!(other, "ssh" | "smart" | "paramiko") => {
                Err(ConnError::Unreachable(format!(
                    "unknown connection type '{other}' (expected ssh or local)"
                )))
            }
            _ => {
                let c: Arc<dyn Connection> = self.pool.get(host, &vars, play_user)?;
                Ok(c)
            }
        }
    }

    pub(crate) async fn run_node(
        self: Arc<Self>,
        play_idx: usize,
        task: &Task,
        host: &str,
    ) -> NodeResult {
        let play = &self.book.plays[play_idx];
        let (base_vars, broken) = self.vars_for(play_idx, play, task, host);
        let check = task.check_mode.unwrap_or(self.opts.check);
        let fail = |msg: String| failed_item(msg, task.ignore_errors);
        if let Some((var, why)) = broken.iter().find(|(var, _)| task_uses(task, var)) {
            let r = fail(format!(
                "task '{}' on host '{host}': variable '{var}': {why}",
                task.name
            ));
            return self.report(play_idx, task, host, None, r, true);
        }

        // The loop's items, or one run without an item.
        let items: Vec<Option<Value>> = match &task.loop_ {
            None => vec![None],
            Some(l) => match template::render_value(l, &base_vars) {
                Ok(Value::Array(items)) => items.into_iter().map(Some).collect(),
                Ok(other) => {
                    let r = fail(format!(
                        "loop needs a list, but it gave {}",
                        kind_of(&other)
                    ));
                    return self.report(play_idx, task, host, None, r, true);
                }
                Err(e) => {
                    let r = fail(format!("task '{}' on host '{host}': {e}", task.name));
                    return self.report(play_idx, task, host, None, r, true);
                }
            },
        };
        if items.is_empty() {
            let result = serde_json::json!({"changed": false, "skipped": true, "results": [], "msg": "No items in the list"});
            return self.skip(play_idx, task, host, "no items in the loop".into(), result);
        }

        let looped = task.loop_.is_some();
        let mut results = Vec::new();
        let (mut any_changed, mut any_failed, mut all_skipped, mut unreachable) =
            (false, false, true, false);
        let mut last: Option<ItemResult> = None;
        for item in items {
            let mut vars = base_vars.clone();
            if let (Some(item), Value::Object(m)) = (&item, &mut vars) {
                m.insert(task.loop_var.clone(), item.clone());
                // A looped task's vars may use the item.
                let ctx = Value::Object(m.clone());
                for (k, raw) in &task.vars {
                    match template::render_value(raw, &ctx) {
                        Ok(v) => {
                            m.insert(k.clone(), v);
                        }
                        Err(e) => {
                            let r = fail(format!(
                                "task '{}' on host '{host}': variable '{k}': {e}",
                                task.name
                            ));
                            return self.report(play_idx, task, host, None, r, true);
                        }
                    }
                }
            }
            let label = item.as_ref().map(|i| self.label(task, i, &vars));
            if let Some(w) = &task.when {
                match cond_holds(w, &vars) {
                    Ok(true) => {}
                    Ok(false) => {
                        if looped {
                            self.emit(self.result_event(
                                play_idx,
                                task,
                                host,
                                label.clone(),
                                Status::Skipped,
                                None,
                                None,
                                None,
                                false,
                            ));
                            results.push(serde_json::json!({"skipped": true, "changed": false, "item": item}));
                            continue;
                        }
                        let reason = format!("conditional result was False: {}", cond_src(w));
                        let result = serde_json::json!({"changed": false, "skipped": true, "skip_reason": reason});
                        return self.skip(play_idx, task, host, reason, result);
                    }
                    Err(e) => {
                        let r = fail(format!(
                            "task '{}' on host '{host}': the condition `{}` failed: {e}",
                            task.name,
                            cond_src(w)
                        ));
                        let res = self.report(play_idx, task, host, label, r, !looped);
                        if !looped {
                            return res;
                        }
                        any_failed = true;
                        all_skipped = false;
                        continue;
                    }
                }
            }
            all_skipped = false;
            let r = self.run_item(play, task, host, &vars, check).await;
            self.set_facts(play_idx, task, host, &r.outcome);
            any_changed |= r.outcome.changed;
            any_failed |= r.outcome.failed;
            unreachable |= r.unreachable;
            let mut rv = r.result.clone();
            if let (Some(i), Value::Object(m)) = (&item, &mut rv) {
                m.insert("item".into(), i.clone());
            }
            results.push(rv);
            if looped {
                let status = item_status(&r);
                self.emit_item(play_idx, task, host, label, &r, status);
                if r.unreachable {
                    break;
                }
            }
            last = Some(r);
        }

        let (status, result) = if looped {
            let status = if unreachable {
                Status::Unreachable
            } else if any_failed {
                Status::Failed
            } else if all_skipped {
                Status::Skipped
            } else if any_changed {
                Status::Changed
            } else {
                Status::Ok
            };
            let msg = if any_failed {
                "One or more items failed"
            } else {
                "All items completed"
            };
            let result = serde_json::json!({"changed": any_changed, "failed": any_failed, "msg": msg, "results": results, "skipped": all_skipped});
            (status, result)
        } else {
            let Some(r) = last else {
                return NodeResult {
                    status: Status::Skipped,
                    blocking: false,
                    ignored: false,
                    changed: false,
                };
            };
            return self.report(play_idx, task, host, None, r, true);
        };
        self.register(play_idx, task, host, result.clone());
        let ignored = any_failed && task.ignore_errors;
        let blocking = unreachable || (any_failed && !ignored);
        if looped {
            let msg = (status == Status::Failed).then(|| "One or more items failed".to_string());
            let result = (!task.no_log).then_some(result);
            let mut e = self.result_event(
                play_idx, task, host, None, status, msg, None, result, ignored,
            );
            if let Event::HostResult { summary, .. } = &mut e {
                *summary = true;
            }
            self.emit(e);
        }
        NodeResult {
            status,
            blocking,
            ignored,
            changed: any_changed,
        }
    }

    /// The whole task is skipped on the host: registered, reported, done.
    fn skip(
        &self,
        play_idx: usize,
        task: &Task,
        host: &str,
        reason: String,
        result: Value,
    ) -> NodeResult {
        self.register(play_idx, task, host, result);
        let e = self.result_event(
            play_idx,
            task,
            host,
            None,
            Status::Skipped,
            Some(reason),
            None,
            None,
            false,
        );
        self.emit(e);
        NodeResult {
            status: Status::Skipped,
            blocking: false,
            ignored: false,
            changed: false,
        }
    }

    fn label(&self, task: &Task, item: &Value, vars: &Value) -> String {
        if task.no_log {
            return "(hidden: no_log)".into();
        }
        if let Some(l) = &task.loop_label {
            if let Ok(s) = template::render_str(l, vars) {
                return s;
            }
        }
        match item {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Reports a single (non-loop or failed-before-loop) result and registers it.
    fn report(
        &self,
        play_idx: usize,
        task: &Task,
        host: &str,
        item: Option<String>,
        r: ItemResult,
        register: bool,
    ) -> NodeResult {
        let status = item_status(&r);
        if register {
            self.register(play_idx, task, host, r.result.clone());
        }
        self.emit_item(play_idx, task, host, item, &r, status);
        NodeResult {
            status,
            blocking: r.unreachable || (r.outcome.failed && !r.ignored),
            ignored: r.ignored && r.outcome.failed,
            changed: r.outcome.changed,
        }
    }

    /// Reports one result line (and its diff): stderr for failures, the
    /// result unless `no_log`, where it was delegated to.
    fn emit_item(
        &self,
        play: usize,
        task: &Task,
        host: &str,
        item: Option<String>,
        r: &ItemResult,
        status: Status,
    ) {
        let stderr = r
            .outcome
            .data
            .get("stderr")
            .and_then(Value::as_str)
            .map(str::to_string);
        let shown = (!task.no_log).then(|| r.result.clone());
        let stderr = stderr.filter(|_| status == Status::Failed);
        let mut e = self.result_event(
            play,
            task,
            host,
            item,
            status,
            r.outcome.msg.clone(),
            stderr,
            shown,
            r.ignored,
        );
        if let Event::HostResult { delegated_to, .. } = &mut e {
            delegated_to.clone_from(&r.delegated);
        }
        self.emit(e);
        if let Some(d) = diff_text(&r.outcome).filter(|_| self.opts.diff && !task.no_log) {
            self.emit_diff(play, task, host, d);
        }
    }

    /// `set_fact`'s variables (`ansible_facts` in a result) stay with the
    /// host for the rest of the run.
    fn set_facts(&self, play_idx: usize, task: &Task, host: &str, o: &Outcome) {
        if let Some(Value::Object(facts)) = o.data.get("ansible_facts") {
            self.store(play_idx, task, host, facts.clone());
        }
    }

    fn register(&self, play_idx: usize, task: &Task, host: &str, result: Value) {
        if let Some(name) = &task.register {
            self.store(
                play_idx,
                task,
                host,
                Map::from_iter([(name.clone(), result)]),
            );
        }
    }

    /// Keeps variables for the host (every host of the play for `run_once`).
    fn store(&self, play_idx: usize, task: &Task, host: &str, vars: Map<String, Value>) {
        let Ok(mut reg) = self.registered.lock() else {
            return;
        };
        let hosts: Vec<String> = if task.run_once {
            self.play_hosts[play_idx].clone()
        } else {
            vec![host.to_string()]
        };
        for h in hosts {
            reg.entry(h).or_default().extend(vars.clone());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn result_event(
        &self,
        play: usize,
        task: &Task,
        host: &str,
        item: Option<String>,
        status: Status,
        msg: Option<String>,
        stderr: Option<String>,
        result: Option<Value>,
        ignored: bool,
    ) -> Event {
        let hidden = task.no_log;
        Event::HostResult {
            play,
            index: task.index,
            handler: task.handler,
            task: task.name.clone(),
            host: host.to_string(),
            status,
            item,
            delegated_to: None,
            msg: if hidden && status != Status::Skipped {
                msg.map(|_| {
                    "the output has been hidden due to the 'no_log: true' specified for this result"
                        .into()
                })
            } else {
                msg
            },
            stderr: if hidden { None } else { stderr },
            result: if hidden { None } else { result },
            diff: None,
            ignored,
            no_log: hidden,
            summary: false,
        }
    }

    fn emit_diff(&self, play: usize, task: &Task, host: &str, d: DiffText) {
        self.emit(Event::HostResult {
            play,
            index: task.index,
            handler: task.handler,
            task: task.name.clone(),
            host: host.to_string(),
            status: Status::Ok,
            item: None,
            delegated_to: None,
            msg: Some("diff".into()),
            stderr: None,
            result: None,
            diff: Some(d),
            ignored: false,
            no_log: false,
            summary: false,
        });
    }

    /// Renders the arguments, runs the module (with retries/until), applies
    /// changed_when/failed_when.
    async fn run_item(
        self: &Arc<Self>,
        play: &Play,
        task: &Task,
        host: &str,
        vars: &Value,
        check: bool,
    ) -> ItemResult {
        let fail = |msg: String| failed_item(msg, task.ignore_errors);
        let Some(module) = modules::get(&task.module) else {
            return fail(format!("unknown module '{}'", task.module));
        };
        let args = match template::render_value(&Value::Object(task.args.clone()), vars) {
            Ok(a) => a,
            Err(e) => return fail(format!("task '{}' on host '{host}': {e}", task.name)),
        };
        if let Err(e) = module.parse(&args) {
            let help = e.help.map(|h| format!(" ({h})")).unwrap_or_default();
            return fail(format!("{}{help}", e.msg));
        }
        let doc = module.doc();
        if check && !doc.check_mode {
            let mut o = Outcome::ok().msg(format!(
                "skipped: the {} module does not support check mode",
                task.module
            ));
            o.skipped = true;
            let result = result_value(&o);
            return ItemResult {
                outcome: o,
                unreachable: false,
                ignored: false,
                result,
                delegated: None,
            };
        }
        let target = match &task.delegate_to {
            Some(d) => match template::render_str(d, vars) {
                Ok(d) => d,
                Err(e) => return fail(format!("delegate_to: {e}")),
            },
            None => host.to_string(),
        };
        // A play's `connection: local` holds for its own hosts (not for a
        // delegate_to target, which keeps its own connection).
        let play_local = play.connection.as_deref() == Some("local") && task.delegate_to.is_none();
        let conn = match if play_local {
            Ok(self.local.clone())
        } else {
            let own = (target == host).then_some(vars);
            self.connection_for(&target, play.remote_user.as_deref(), own)
        } {
            Ok(c) => c,
            Err(e) => {
                let o = Outcome::failed(e.to_string());
                let result = result_value(&o);
                return ItemResult {
                    outcome: o,
                    unreachable: true,
                    ignored: false,
                    result,
                    delegated: None,
                };
            }
        };
        let become_ = task.become_.or(play.become_).unwrap_or(self.opts.become_);
        let become_user = if become_ {
            let user = task
                .become_user
                .clone()
                .or_else(|| play.become_user.clone())
                .or_else(|| {
                    vars.get("ansible_become_user")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .or_else(|| self.opts.become_user.clone())
                .unwrap_or_else(|| "root".into());
            Some(user)
        } else {
            None
        };
        let ctx = Context {
            host: host.to_string(),
            conn,
            local: self.local.clone(),
            check,
            diff: self.opts.diff,
            become_user,
            vars: vars.clone(),
            base_dir: self.base_dir(task),
            prompter: self.prompter.clone(),
            progress: Arc::new(ProgressSink {
                shared: self.clone(),
                task: task.name.clone(),
                host: host.to_string(),
                hidden: task.no_log,
            }),
            timeout: task
                .timeout
                .or(self.opts.task_timeout)
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            hosts: Arc::new(OtherHosts {
                shared: self.clone(),
                play_user: if play_local {
                    None
                } else {
                    play.remote_user.clone()
                },
            }),
        };
        let attempts = if task.until.is_some() {
            task.retries.unwrap_or(3).saturating_add(1)
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = module.run(&ctx, args.clone());
            let res = match ctx.timeout {
                // The module ends its own commands at `t` (and says so); this
                // is the backstop for one that does not.
                Some(t) => {
                    match tokio::time::timeout(t.saturating_add(Duration::from_secs(5)), run).await
                    {
                        Ok(r) => r,
                        Err(_) => Ok(Outcome::failed(format!(
                            "the task timed out after {} s",
                            t.as_secs()
                        ))),
                    }
                }
                None => run.await,
            };
            let mut outcome = match res {
                Ok(o) => o,
                Err(ConnError::Unreachable(m)) => {
                    let o = Outcome::failed(m);
                    let result = result_value(&o);
                    return ItemResult {
                        outcome: o,
                        unreachable: true,
                        ignored: false,
                        result,
                        delegated: None,
                    };
                }
                Err(e) => Outcome::failed(e.to_string()),
            };
            // changed_when / failed_when see the result under its register name.
            let mut scope = vars.clone();
            let mut result = result_value(&outcome);
            if let Value::Object(m) = &mut scope {
                if let Some(r) = &task.register {
                    m.insert(r.clone(), result.clone());
                }
                for (k, v) in result.as_object().into_iter().flatten() {
                    m.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            // As Ansible: a result the module skipped (a command in check
            // mode) is not judged by changed_when/failed_when.
            if !outcome.skipped {
                if let Some(c) = &task.changed_when {
                    match cond_holds(c, &scope) {
                        Ok(b) => outcome.changed = b,
                        Err(e) => {
                            outcome.failed = true;
                            outcome.msg = Some(format!("changed_when `{}`: {e}", cond_src(c)));
                        }
                    }
                }
                if let Some(c) = &task.failed_when {
                    match cond_holds(c, &scope) {
                        Ok(b) => {
                            outcome.failed = b;
                            if b && outcome.msg.is_none() {
                                outcome.msg = Some(format!("failed_when `{}` holds", cond_src(c)));
                            }
                        }
                        Err(e) => {
                            outcome.failed = true;
                            outcome.msg = Some(format!("failed_when `{}`: {e}", cond_src(c)));
                        }
                    }
                }
            }
            result = result_value(&outcome);
            if let Some(u) = &task.until {
                if let (Some(r), Value::Object(m)) = (&task.register, &mut scope) {
                    m.insert(r.clone(), result.clone());
                }
                let done = cond_holds(u, &scope).unwrap_or(false);
                if let Value::Object(m) = &mut result {
                    m.insert("attempts".into(), Value::from(attempt));
                }
                if !done {
                    let interrupted = crate::interrupt::requested;
                    if attempt < attempts && !interrupted() {
                        tokio::time::sleep(Duration::from_secs_f64(task.delay)).await;
                        if !interrupted() {
                            continue;
                        }
                    }
                    outcome.failed = true;
                    outcome.msg = Some(format!(
                        "until `{}` did not hold after {attempt} attempts",
                        cond_src(u)
                    ));
                    result = result_value(&outcome);
                }
            }
            let ignored = outcome.failed && task.ignore_errors;
            return ItemResult {
                outcome,
                unreachable: false,
                ignored,
                result,
                delegated: task.delegate_to.is_some().then(|| target.clone()),
            };
        }
    }

    fn base_dir(&self, task: &Task) -> std::path::PathBuf {
        match task.origin.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        }
    }
}

/// Whether a task's text (its arguments, conditions, loop, name) names the
/// variable, as a whole word.
fn task_uses(task: &Task, var: &str) -> bool {
    let whens = match &task.when {
        Some(Cond::All(exprs)) => exprs
            .iter()
            .map(|e| e.src.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let word = |c: char| c.is_alphanumeric() || c == '_';
    [task.source.as_str(), whens.as_str()].iter().any(|text| {
        text.match_indices(var).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + var.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
    })
}

fn item_status(r: &ItemResult) -> Status {
    if r.unreachable {
        Status::Unreachable
    } else if r.outcome.failed {
        Status::Failed
    } else if r.outcome.changed {
        Status::Changed
    } else if r.outcome.skipped {
        Status::Skipped
    } else {
        Status::Ok
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Play and inventory variables may refer to other variables
/// (`users_file: "{{ base }}/users"`): render them against the rest, a few
/// passes deep. Returns the variables whose templates cannot be rendered,
/// with the reason: a task that uses one fails with it.
fn resolve_nested_templates(
    m: &mut Map<String, Value>,
    from_sources: &std::collections::HashSet<String>,
) -> Vec<(String, String)> {
    fn has_tpl(v: &Value) -> bool {
        match v {
            Value::String(s) => template::has_template(s),
            Value::Array(a) => a.iter().any(has_tpl),
            Value::Object(o) => o.values().any(has_tpl),
            _ => false,
        }
    }
    let keys: Vec<String> = m
        .iter()
        .filter(|(k, v)| from_sources.contains(*k) && has_tpl(v))
        .map(|(k, _)| k.clone())
        .collect();
    if keys.is_empty() {
        return Vec::new();
    }
    for _ in 0..8 {
        let mut changed = false;
        let ctx = Value::Object(m.clone());
        for k in &keys {
            if let Some(v) = m.get(k) {
                if has_tpl(v) {
                    if let Ok(r) = template::render_value(v, &ctx) {
                        if &r != v {
                            m.insert(k.clone(), r);
                            changed = true;
                        }
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    // What still cannot be rendered, and why.
    let ctx = Value::Object(m.clone());
    keys.into_iter()
        .filter_map(|k| {
            let v = m.get(&k)?;
            match template::render_value(v, &ctx) {
                Err(e) if has_tpl(v) => Some((k, e.to_string())),
                Ok(r) if has_tpl(&r) => Some((
                    k,
                    "its template refers back to itself (a loop between variables)".into(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Keeps `LocalConnection` linked for hosts on this machine.
pub(crate) fn local_connection() -> Arc<dyn Connection> {
    Arc::new(LocalConnection)
}
