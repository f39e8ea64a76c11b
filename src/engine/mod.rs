//! The engine: plans the (task, host) graph and runs it, emitting events.

pub mod event;
pub mod graph;
mod runner;

use crate::connection::Connection;
use crate::error::{exit, Error};
use crate::inventory::Inventory;
use crate::module::Prompter;
use crate::playbook::{Play, Playbook, Task};
use event::{Event, HostStats, Reporter, Status};
use graph::{EdgeKind, NodeKind, PlanPlay, TaskGraph};
use indexmap::IndexMap;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Settings of one run, from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub check: bool,
    pub diff: bool,
    pub extra_vars: Map<String, Value>,
    pub become_: bool,
    pub become_user: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub limit: Option<String>,
    pub start_at_task: Option<String>,
    /// Where `group_vars/` and `host_vars/` beside the playbook are looked for.
    pub playbook_dir: Option<PathBuf>,
    /// The SSH pool (one per run); None: a pool with default settings.
    pub ssh: Option<Arc<crate::ssh::Pool>>,
    /// `--task-timeout`: seconds for every task without its own `timeout`.
    pub task_timeout: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            forks: 5,
            check: false,
            diff: false,
            extra_vars: Map::new(),
            become_: false,
            become_user: None,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            limit: None,
            start_at_task: None,
            playbook_dir: None,
            task_timeout: None,
            ssh: None,
        }
    }
}

/// The planned run: hosts per play, selected tasks, warnings.
pub struct Plan {
    pub plays: Vec<PlanPlay>,
    pub warnings: Vec<String>,
}

/// Which tasks run, by Ansible's tag rules (its `evaluate_tags`): `always`,
/// `never`, `all`, `tagged`, `untagged`.
fn tag_selected(task: &Task, play: &Play, only: &[String], skip: &[String]) -> bool {
    let mut own: HashSet<&str> = task
        .tags
        .iter()
        .chain(&play.tags)
        .map(String::as_str)
        .collect();
    if own.is_empty() {
        own.insert("untagged");
    }
    let has = |t: &str| own.contains(t);
    let untagged = own.len() == 1 && has("untagged");
    let only: Vec<&str> = if only.is_empty() {
        vec!["all"]
    } else {
        only.iter().map(String::as_str).collect()
    };
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    let run = has("always")
        || (only.contains(&"all") && !has("never"))
        || only.iter().any(|t| has(t))
        || (only.contains(&"tagged") && !untagged && !has("never"));
    let skipped = if skip.contains(&"all") {
        !has("always") || skip.contains(&"always")
    } else {
        skip.iter().any(|t| has(t)) || (skip.contains(&"tagged") && !untagged)
    };
    run && !skipped
}

/// Resolves each play's hosts and selected tasks.
pub fn plan(book: &Playbook, inv: &Inventory, opts: &RunOptions) -> Result<Plan, Error> {
    let mut warnings = Vec::new();
    let mut plays = Vec::new();
    let mut started = opts.start_at_task.is_none();
    let mut start_found = opts.start_at_task.is_none();
    for play in &book.plays {
        let pattern = if crate::template::has_template(&play.hosts) {
            let mut ctx = play.vars.clone();
            ctx.extend(opts.extra_vars.clone());
            crate::template::render_str(&play.hosts, &Value::Object(ctx))
                .map_err(|e| Error::Parse(format!("{}: hosts: {e}", play.origin)))?
        } else {
            play.hosts.clone()
        };
        let mut hosts = inv.select(&pattern)?;
        if hosts.is_empty() {
            warnings.push(format!(
                "Could not match supplied host pattern, ignoring: {pattern}"
            ));
        }
        if let Some(limit) = &opts.limit {
            hosts = inv.limit(hosts, limit)?;
        }
        let mut tasks = Vec::new();
        for (ti, t) in play.tasks.iter().enumerate() {
            if !started && opts.start_at_task.as_deref() == Some(t.name.as_str()) {
                started = true;
                start_found = true;
            }
            if started && tag_selected(t, play, &opts.tags, &opts.skip_tags) {
                tasks.push(ti);
            }
        }
        plays.push(PlanPlay { hosts, tasks });
    }
    if let Some(limit) = &opts.limit {
        if inv.limit(inv.hosts(), limit)?.is_empty() {
            crate::errln!("[WARNING]: Could not match supplied host pattern, ignoring: {limit}");
            return Err(Error::Other(
                "Specified inventory, host pattern and/or --limit leaves us with no hosts to target.".into(),
            ));
        }
    }
    if !start_found {
        let name = opts.start_at_task.clone().unwrap_or_default();
        let names = book
            .plays
            .iter()
            .flat_map(|p| p.tasks.iter().map(|t| t.name.as_str()));
        let help = crate::suggest::did_you_mean(&name, names)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return Err(Error::Options(format!(
            "--start-at-task: no task named '{name}'{help}"
        )));
    }
    Ok(Plan { plays, warnings })
}

/// What the runner shares between nodes.
pub(crate) struct Shared {
    book: Arc<Playbook>,
    opts: RunOptions,
    inv_vars: HashMap<String, Arc<Map<String, Value>>>,
    groups: Arc<Value>,
    play_hosts: Vec<Vec<String>>,
    /// Some inventory variable refers to `hostvars`: every task gets it.
    inventory_mentions_hostvars: bool,
    /// Some inventory variable or extra var may read `groups` or the play's
    /// hosts.
    inventory_mentions_groups: bool,
    /// `ansible_play_hosts` per play, built once.
    play_hosts_json: Vec<Value>,
    registered: Mutex<HashMap<String, Map<String, Value>>>,
    reporter: Mutex<Box<dyn Reporter>>,
    prompter: Arc<dyn Prompter>,
    local: Arc<dyn Connection>,
    pool: Arc<crate::ssh::Pool>,
}

impl Shared {
    /// Hands an event to the reporter, every registered secret masked.
    pub(crate) fn emit(&self, e: Event) {
        let e = crate::secret::redact_event(e);
        if let Ok(mut r) = self.reporter.lock() {
            r.event(&e);
        }
    }
}

/// Per-node bookkeeping in the scheduler.
#[derive(Default, Clone)]
struct NodeState {
    waiting: usize,
    /// Why this node must not run (an upstream failure), if so.
    blocked: Option<String>,
    /// Blocked through a `needs` edge: reported as skipped with the reason,
    /// even on a host that has failed.
    need_blocked: bool,
    /// The host a `run_once` node ran on (the first that had not failed).
    ran_on: Option<String>,
}

/// Runs the planned graph to the end (or to the first Ctrl-C, see
/// [`crate::interrupt`]: no new task, no new retry) and returns the exit
/// code.
pub async fn run(
    book: Arc<Playbook>,
    inv: &Inventory,
    plan: Plan,
    opts: RunOptions,
    reporter: Box<dyn Reporter>,
    prompter: Arc<dyn Prompter>,
) -> i32 {
    let tg = graph::build(&book, &plan.plays);
    // Every inventory host's variables (delegate_to targets need theirs
    // too), with `group_names`.
    let dir = opts.playbook_dir.as_deref();
    let mut inv_vars = HashMap::new();
    let hosts = inv
        .hosts()
        .into_iter()
        .chain(plan.plays.iter().flat_map(|p| p.hosts.iter().cloned()));
    for h in hosts {
        if inv_vars.contains_key(&h) {
            continue;
        }
        let mut vars = inv.host_vars(&h, dir);
        // Secrets written as they are (not templates) are known before
        // anything is printed; templated ones when they are rendered.
        let mut scope = vars.clone();
        scope.extend(opts.extra_vars.clone());
        crate::secret::register_vars(&scope, true);
        for play in book.plays.iter() {
            let mut s = scope.clone();
            s.extend(play.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            s.extend(play.vars_files.iter().map(|(k, v)| (k.clone(), v.clone())));
            s.extend(opts.extra_vars.clone());
            crate::secret::register_vars(&s, true);
        }
        let names = inv.group_names(&h).into_iter().map(Value::String).collect();
        vars.insert("group_names".into(), Value::Array(names));
        inv_vars.insert(h, Arc::new(vars));
    }
    let inv_text: String = inv_vars.values().map(|v| format!("{v:?}")).collect();
    let inventory_mentions_hostvars = inv_text.contains("hostvars");
    let inventory_mentions_groups = crate::playbook::mentions_play_world(&inv_text)
        || crate::playbook::mentions_play_world(&format!("{:?}", opts.extra_vars));
    let pool = match &opts.ssh {
        Some(p) => p.clone(),
        None => crate::ssh::Pool::new(crate::ssh::config::SshOptions::default())
            .unwrap_or_else(|_| crate::ssh::Pool::without_ssh_config(Default::default())),
    };
    let shared = Arc::new(Shared {
        book: book.clone(),
        opts: opts.clone(),
        inv_vars,
        groups: Arc::new(Value::Object(inv.groups_var())),
        inventory_mentions_hostvars,
        inventory_mentions_groups,
        play_hosts: plan.plays.iter().map(|p| p.hosts.clone()).collect(),
        play_hosts_json: plan
            .plays
            .iter()
            .map(|p| Value::Array(p.hosts.iter().cloned().map(Value::String).collect()))
            .collect(),
        registered: Mutex::new(HashMap::new()),
        reporter: Mutex::new(reporter),
        prompter,
        local: runner::local_connection(),
        pool: pool.clone(),
    });
    for w in &plan.warnings {
        shared.emit(Event::Warning { msg: w.clone() });
    }
    let code = Scheduler::new(shared, tg).run().await;
    pool.close_all().await;
    code
}

struct Scheduler {
    shared: Arc<Shared>,
    tg: TaskGraph,
    state: Vec<NodeState>,
    stats: IndexMap<String, HostStats>,
    failed_hosts: HashMap<String, String>,
    unreachable_hosts: HashSet<String>,
    notified: HashSet<(usize, usize, String)>,
    tasks_started: HashSet<(usize, usize, bool)>,
    /// Nodes not yet done per (play, index, handler), for `TaskEnd`.
    remaining: HashMap<(usize, usize, bool), usize>,
    aborted: Option<String>,
    forks: usize,
}

impl Scheduler {
    fn new(shared: Arc<Shared>, tg: TaskGraph) -> Self {
        let mut state = vec![NodeState::default(); tg.g.node_count()];
        for n in tg.g.node_indices() {
            state[n.index()].waiting = tg.g.edges_directed(n, Direction::Incoming).count();
        }
        // Hosts enter the recap when something is reported for them.
        let stats = IndexMap::new();
        let mut remaining = HashMap::new();
        for n in tg.g.node_indices() {
            if let Some(key) = task_key(&tg.g[n]) {
                *remaining.entry(key).or_insert(0) += 1;
            }
        }
        let forks = shared.opts.forks.max(1);
        Scheduler {
            remaining,
            shared,
            tg,
            state,
            stats,
            failed_hosts: HashMap::new(),
            unreachable_hosts: HashSet::new(),
            notified: HashSet::new(),
            tasks_started: HashSet::new(),
            aborted: None,
            forks,
        }
    }

    async fn run(mut self) -> i32 {
        let mut ready: VecDeque<NodeIndex> = self
            .tg
            .g
            .node_indices()
            .filter(|n| self.state[n.index()].waiting == 0)
            .collect();
        let mut running: tokio::task::JoinSet<(NodeIndex, runner::NodeResult)> =
            tokio::task::JoinSet::new();
        // Which node each running task is, so a panic is still accounted for.
        let mut spawned: HashMap<tokio::task::Id, NodeIndex> = HashMap::new();
        let mut done = 0usize;
        let mut internal_error = false;
        loop {
            let stopping = crate::interrupt::requested() || self.aborted.is_some();
            while running.len() < self.forks || stopping {
                let Some(n) = ready.pop_front() else { break };
                if let Some(spawn) = self.start(n, stopping) {
                    let handle = running.spawn(spawn);
                    spawned.insert(handle.id(), n);
                } else {
                    let blocked = self.state[n.index()].blocked.is_some();
                    self.complete(n, blocked, &mut ready);
                    done += 1;
                }
            }
            if running.is_empty() && ready.is_empty() {
                break;
            }
            let Some(joined) = running.join_next_with_id().await else {
                continue;
            };
            done += 1;
            match joined {
                Ok((id, (n, res))) => {
                    spawned.remove(&id);
                    self.record(n, &res);
                    self.complete(n, res.blocking, &mut ready);
                }
                Err(e) => {
                    // A bug: the node counts as failed so nothing that
                    // follows it runs, and the run ends with exit 250.
                    internal_error = true;
                    self.shared.emit(Event::Warning {
                        msg: format!("internal error in a task (a bug, please report it): {e}"),
                    });
                    if let Some(n) = spawned.remove(&e.id()) {
                        let failed = runner::NodeResult {
                            status: Status::Failed,
                            blocking: true,
                            ignored: false,
                            changed: false,
                        };
                        self.record(n, &failed);
                        self.complete(n, true, &mut ready);
                    }
                }
            }
        }
        // Every node must have been decided; one that never became ready is
        // a bug in the graph, never a silent success.
        if done < self.tg.g.node_count() {
            internal_error = true;
            let stuck: Vec<String> = self
                .tg
                .g
                .node_indices()
                .filter(|n| self.state[n.index()].waiting > 0)
                .take(5)
                .map(|n| format!("{:?}", self.tg.g[n]))
                .collect();
            self.shared.emit(Event::Warning {
                msg: format!(
                    "internal error: tasks never became ready (a bug, please report it): {}",
                    stuck.join(", ")
                ),
            });
        }
        let interrupted = crate::interrupt::requested();
        let code = if internal_error {
            exit::UNEXPECTED
        } else if interrupted {
            exit::INTERRUPTED
        } else if self.stats.values().any(|s| s.failed > 0) {
            exit::HOST_FAILED
        } else if !self.unreachable_hosts.is_empty() {
            exit::UNREACHABLE
        } else {
            exit::OK
        };
        // Ansible lists the recap's hosts by name.
        let mut hosts = self.stats.clone();
        hosts.sort_keys();
        self.shared.emit(Event::Recap {
            hosts,
            interrupted,
            exit_code: code,
        });
        code
    }

    /// Decides what to do with a ready node: a future to run, or None when
    /// it completes at once (virtual node, skipped, or not notified).
    fn start(
        &mut self,
        n: NodeIndex,
        stopping: bool,
    ) -> Option<impl std::future::Future<Output = (NodeIndex, runner::NodeResult)> + Send + 'static>
    {
        let kind = self.tg.g[n].clone();
        let (play, idx, mut host, handler) = match kind {
            NodeKind::PlayStart(p) => {
                if !stopping {
                    let hosts = self.shared.play_hosts[p].clone();
                    let name = self.shared.book.plays[p].name.clone();
                    self.shared.emit(Event::PlayStart {
                        play: p,
                        name,
                        hosts,
                    });
                }
                return None;
            }
            NodeKind::PlayEnd(_) | NodeKind::Step(..) => return None,
            NodeKind::Task { play, task, host } => (play, task, host, false),
            NodeKind::Handler {
                play,
                handler,
                host,
            } => (play, handler, host, true),
        };
        if stopping {
            self.state[n.index()]
                .blocked
                .get_or_insert_with(|| "the run was stopped".into());
            return None;
        }
        if handler && !self.notified.contains(&(play, idx, host.clone())) {
            return None;
        }
        let book = self.shared.book.clone();
        let p = &book.plays[play];
        let task = p.task(idx, handler);
        // A run_once task runs on the play's first host that has not failed.
        if task.run_once && !handler {
            let healthy = self.shared.play_hosts[play]
                .iter()
                .find(|h| !self.failed_hosts.contains_key(*h));
            if let Some(h) = healthy {
                host = h.clone();
                self.state[n.index()].ran_on = Some(host.clone());
            }
        }
        // A failed host's remaining tasks end quietly, as in Ansible (but
        // what `needs` a failed task says why it was skipped).
        let failed_host = self
            .failed_hosts
            .get(&host)
            .filter(|_| !self.state[n.index()].need_blocked);
        if let Some(t) = failed_host {
            let reason = format!("the host failed at task '{t}'");
            self.state[n.index()].blocked.get_or_insert(reason);
            return None;
        }
        let skip_reason = self.state[n.index()].blocked.clone();
        self.task_start(play, idx, handler, task);
        if let Some(reason) = skip_reason {
            self.state[n.index()].blocked = Some(reason.clone());
            self.stats.entry(host.clone()).or_default().skipped += 1;
            self.shared.emit(Event::HostResult {
                play,
                index: task.index,
                handler: task.handler,
                task: task.name.clone(),
                host: host.clone(),
                status: Status::Skipped,
                item: None,
                delegated_to: None,
                msg: Some(reason),
                stderr: None,
                result: None,
                diff: None,
                ignored: false,
                no_log: false,
                summary: false,
            });
            return None;
        }
        let shared = self.shared.clone();
        Some(async move {
            let p = &book.plays[play];
            let task = p.task(idx, handler);
            let res = shared.run_node(play, task, &host).await;
            (n, res)
        })
    }

    fn task_start(&mut self, play: usize, idx: usize, handler: bool, task: &Task) {
        if self.tasks_started.insert((play, idx, handler)) {
            self.shared.emit(Event::TaskStart {
                play,
                index: task.index,
                task: task.name.clone(),
                id: task.id.clone(),
                handler,
            });
        }
    }

    /// Counts a finished node and applies its consequences to the host.
    fn record(&mut self, n: NodeIndex, res: &runner::NodeResult) {
        let ran_on = self.state[n.index()].ran_on.clone();
        let (play, idx, mut host, handler) = match &self.tg.g[n] {
            NodeKind::Task { play, task, host } => (*play, *task, host.clone(), false),
            NodeKind::Handler {
                play,
                handler,
                host,
            } => (*play, *handler, host.clone(), true),
            _ => return,
        };
        if let Some(h) = ran_on {
            host = h;
        }
        let book = self.shared.book.clone();
        let p = &book.plays[play];
        let task = p.task(idx, handler);
        let hosts: Vec<String> = if task.run_once && !handler {
            self.shared.play_hosts[play].clone()
        } else {
            vec![host.clone()]
        };
        let s = self.stats.entry(host.clone()).or_default();
        match res.status {
            Status::Ok => s.ok += 1,
            Status::Changed => {
                s.ok += 1;
                s.changed += 1
            }
            Status::Skipped => s.skipped += 1,
            Status::Failed if res.ignored => {
                s.ok += 1;
                s.ignored += 1;
                s.changed += u32::from(res.changed);
            }
            Status::Failed => s.failed += 1,
            Status::Unreachable => s.unreachable += 1,
        }
        if res.status == Status::Unreachable {
            self.unreachable_hosts.insert(host.clone());
        }
        if res.blocking {
            for h in &hosts {
                self.failed_hosts
                    .entry(h.clone())
                    .or_insert_with(|| task.name.clone());
            }
            if (p.any_errors_fatal || task.any_errors_fatal) && self.aborted.is_none() {
                self.aborted = Some(format!(
                    "any_errors_fatal: task '{}' failed on {host}",
                    task.name
                ));
                self.shared.emit(Event::Warning {
                    msg: format!(
                        "stopping all hosts: '{}' failed on {host} (any_errors_fatal)",
                        task.name
                    ),
                });
            }
        }
        if res.changed {
            for name in &task.notify {
                for (hi, h) in p.handlers.iter().enumerate() {
                    if &h.name == name || h.listen.contains(name) {
                        for host in &hosts {
                            self.notified.insert((play, hi, host.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Marks a node done and readies its successors; a blocking result
    /// blocks them along order and `needs` edges (not across play barriers).
    fn complete(&mut self, n: NodeIndex, blocking: bool, ready: &mut VecDeque<NodeIndex>) {
        if let Some(key) = task_key(&self.tg.g[n]) {
            let left = self.remaining.entry(key).or_insert(1);
            *left = left.saturating_sub(1);
            if *left == 0 && self.tasks_started.contains(&key) {
                let (play, index, handler) = key;
                let p = &self.shared.book.plays[play];
                let task = p.task(index, handler);
                let task = task.name.clone();
                self.shared.emit(Event::TaskEnd {
                    play,
                    index,
                    handler,
                    task,
                });
            }
        }
        let reason = if blocking {
            Some(self.block_reason(n))
        } else {
            None
        };
        let succ: Vec<(NodeIndex, EdgeKind)> = self
            .tg
            .g
            .edges(n)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (t, kind) in succ {
            let st = &mut self.state[t.index()];
            if let Some(r) = &reason {
                if kind == EdgeKind::Need && !st.need_blocked {
                    st.blocked = Some(r.clone());
                    st.need_blocked = true;
                } else if kind == EdgeKind::Order
                    && st.blocked.is_none()
                    && !run_once_node(&self.shared.book, &self.tg.g[t])
                {
                    // A run_once node is shared by every host's chain: one
                    // failed host does not stop it for the others.
                    st.blocked = Some(r.clone());
                }
            }
            st.waiting = st.waiting.saturating_sub(1);
            if st.waiting == 0 {
                ready.push_back(t);
            }
        }
    }

    fn block_reason(&self, n: NodeIndex) -> String {
        if let Some(r) = &self.state[n.index()].blocked {
            return r.clone();
        }
        match &self.tg.g[n] {
            NodeKind::Task { play, task, host } => {
                let t = &self.shared.book.plays[*play].tasks[*task];
                let what =
                    t.id.as_ref()
                        .map(|id| format!("'{}' (id {id})", t.name))
                        .unwrap_or_else(|| format!("'{}'", t.name));
                format!("needs {what}, which did not succeed on {host}")
            }
            NodeKind::Handler {
                play,
                handler,
                host,
            } => {
                format!(
                    "handler '{}' failed on {host}",
                    self.shared.book.plays[*play].handlers[*handler].name
                )
            }
            _ => "an earlier step failed".into(),
        }
    }
}

/// (play, index, handler) of a task or handler node.
fn task_key(n: &NodeKind) -> Option<(usize, usize, bool)> {
    match n {
        NodeKind::Task { play, task, .. } => Some((*play, *task, false)),
        NodeKind::Handler { play, handler, .. } => Some((*play, *handler, true)),
        _ => None,
    }
}

fn run_once_node(book: &Playbook, n: &NodeKind) -> bool {
    matches!(n, NodeKind::Task { play, task, .. } if book.plays[*play].tasks[*task].run_once)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_ansible() {
        let t = |tags: &[&str]| Task {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let play = Play::default();
        let sel = |task: &Task, only: &[&str], skip: &[&str]| {
            let o: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            let s: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
            tag_selected(task, &play, &o, &s)
        };
        let (plain, a, always, never, never_dbg) = (
            t(&[]),
            t(&["a"]),
            t(&["always"]),
            t(&["never"]),
            t(&["never", "dbg"]),
        );
        // (task, --tags, --skip-tags, runs)
        let cases: &[(&Task, &[&str], &[&str], bool)] = &[
            (&plain, &[], &[], true),
            (&never, &[], &[], false),
            (&always, &["a"], &[], true),
            (&plain, &["a"], &[], false),
            (&a, &["a"], &[], true),
            (&never_dbg, &["dbg"], &[], true),
            (&never_dbg, &["tagged"], &[], false),
            (&a, &["tagged"], &[], true),
            (&plain, &["untagged"], &[], true),
            (&a, &["untagged"], &[], false),
            (&always, &["never"], &[], true),
            (&never, &["never"], &[], true),
            (&a, &[], &["a"], false),
            (&always, &[], &["all"], true),
            (&always, &[], &["always"], false),
            (&a, &[], &["tagged"], false),
            (&plain, &[], &["tagged"], true),
        ];
        for (i, (task, only, skip, want)) in cases.iter().enumerate() {
            assert_eq!(
                sel(task, only, skip),
                *want,
                "case {i}: {:?} -t {only:?} --skip-tags {skip:?}",
                task.tags
            );
        }
    }
}
