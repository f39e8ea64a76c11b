//! The dependency graph of (task, host) nodes.
//!
//! Default edges: a task on a host follows the previous task of its play on
//! that host (strategy `linear`); a play starts once the previous play has
//! ended on all its hosts, unless it names what it `needs`. A task's `needs`
//! waits for the named task on every host it runs on. Handlers follow a
//! host's last task of the play. Virtual `PlayStart`/`PlayEnd` nodes keep
//! the barrier edges linear in the number of hosts.

use crate::error::{Error, SourceError};
use crate::playbook::{Playbook, Strategy};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    PlayStart(usize),
    PlayEnd(usize),
    Task {
        play: usize,
        task: usize,
        host: String,
    },
    Handler {
        play: usize,
        handler: usize,
        host: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// The per-host order inside a play: a failure upstream skips downstream.
    Order,
    /// An explicit `needs`: a failure upstream skips downstream.
    Need,
    /// Between plays: waits, but a failure upstream does not skip downstream.
    Barrier,
}

/// A play as planned: its hosts and the tasks selected (tags, start-at).
#[derive(Debug, Clone, Default)]
pub struct PlanPlay {
    pub hosts: Vec<String>,
    pub tasks: Vec<usize>,
}

pub struct TaskGraph {
    pub g: DiGraph<NodeKind, EdgeKind>,
    pub starts: Vec<NodeIndex>,
    pub ends: Vec<NodeIndex>,
}

/// Builds the graph for the planned plays.
pub fn build(book: &Playbook, plan: &[PlanPlay]) -> TaskGraph {
    let mut g = DiGraph::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    // (play, task) → its nodes, for `needs`.
    let mut task_nodes: HashMap<(usize, usize), Vec<NodeIndex>> = HashMap::new();
    let mut ids: HashMap<&str, IdTarget> = HashMap::new();
    for (pi, play) in book.plays.iter().enumerate() {
        if let Some(id) = &play.id {
            ids.insert(id, IdTarget::Play(pi));
        }
        for (ti, t) in play.tasks.iter().enumerate() {
            if let Some(id) = &t.id {
                ids.insert(id, IdTarget::Task(pi, ti));
            }
        }
    }
    for (pi, play) in book.plays.iter().enumerate() {
        let pp = &plan[pi];
        let start = g.add_node(NodeKind::PlayStart(pi));
        let end = g.add_node(NodeKind::PlayEnd(pi));
        starts.push(start);
        ends.push(end);
        g.add_edge(start, end, EdgeKind::Barrier);
        if play.needs.is_empty() && pi > 0 {
            g.add_edge(ends[pi - 1], start, EdgeKind::Barrier);
        }
        let mut shared: HashMap<usize, NodeIndex> = HashMap::new();
        for host in &pp.hosts {
            let mut prev = start;
            let mut host_tasks = Vec::new();
            for &ti in &pp.tasks {
                let task = &play.tasks[ti];
                let node = if task.run_once {
                    let first = pp.hosts.first().cloned().unwrap_or_default();
                    *shared.entry(ti).or_insert_with(|| {
                        let n = g.add_node(NodeKind::Task {
                            play: pi,
                            task: ti,
                            host: first,
                        });
                        task_nodes.entry((pi, ti)).or_default().push(n);
                        n
                    })
                } else {
                    let n = g.add_node(NodeKind::Task {
                        play: pi,
                        task: ti,
                        host: host.clone(),
                    });
                    task_nodes.entry((pi, ti)).or_default().push(n);
                    n
                };
                match play.strategy {
                    Strategy::Linear => {
                        g.update_edge(prev, node, EdgeKind::Order);
                        prev = node;
                    }
                    Strategy::Graph => {
                        g.update_edge(start, node, EdgeKind::Order);
                    }
                }
                host_tasks.push(node);
            }
            let tails = match play.strategy {
                Strategy::Linear => vec![prev],
                Strategy::Graph if host_tasks.is_empty() => vec![start],
                Strategy::Graph => host_tasks,
            };
            let mut tails = tails;
            for hi in 0..play.handlers.len() {
                let h = g.add_node(NodeKind::Handler {
                    play: pi,
                    handler: hi,
                    host: host.clone(),
                });
                for t in &tails {
                    g.update_edge(*t, h, EdgeKind::Order);
                }
                tails = vec![h];
            }
            for t in tails {
                g.update_edge(t, end, EdgeKind::Order);
            }
        }
    }
    // `needs`, once every node exists.
    for (pi, play) in book.plays.iter().enumerate() {
        for (id, _) in &play.needs {
            for from in targets(ids.get(id.as_str()), &task_nodes, &ends) {
                g.update_edge(from, starts[pi], EdgeKind::Need);
            }
        }
        for (ti, task) in play.tasks.iter().enumerate() {
            let Some(nodes) = task_nodes.get(&(pi, ti)).cloned() else {
                continue;
            };
            for (id, _) in &task.needs {
                for from in targets(ids.get(id.as_str()), &task_nodes, &ends) {
                    for &n in &nodes {
                        if from != n {
                            g.update_edge(from, n, EdgeKind::Need);
                        }
                    }
                }
            }
        }
    }
    TaskGraph { g, starts, ends }
}

#[derive(Clone, Copy)]
enum IdTarget {
    Play(usize),
    Task(usize, usize),
}

fn targets(
    t: Option<&IdTarget>,
    task_nodes: &HashMap<(usize, usize), Vec<NodeIndex>>,
    ends: &[NodeIndex],
) -> Vec<NodeIndex> {
    match t {
        Some(IdTarget::Play(p)) => vec![ends[*p]],
        Some(IdTarget::Task(p, t)) => task_nodes.get(&(*p, *t)).cloned().unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Finds a cycle in the task order (every play on one stand-in host, every
/// task selected): a parse error naming the tasks in the cycle.
pub fn check_cycles(book: &Playbook) -> Result<(), Error> {
    let plan: Vec<PlanPlay> = book
        .plays
        .iter()
        .map(|p| PlanPlay {
            hosts: vec!["*".into()],
            tasks: (0..p.tasks.len()).collect(),
        })
        .collect();
    let tg = build(book, &plan);
    if petgraph::algo::toposort(&tg.g, None).is_ok() {
        return Ok(());
    }
    for scc in petgraph::algo::tarjan_scc(&tg.g) {
        if scc.len() < 2 {
            continue;
        }
        // Walk the cycle in order, starting from a task that has `needs`.
        let in_scc = |n: NodeIndex| scc.contains(&n);
        let first = scc
            .iter()
            .copied()
            .find(|&n| matches!(&tg.g[n], NodeKind::Task { play, task, .. } if !book.plays[*play].tasks[*task].needs.is_empty()))
            .unwrap_or(scc[0]);
        let mut path = vec![first];
        let mut cur = first;
        for _ in 0..scc.len() {
            let Some(next) =
                tg.g.edges(cur)
                    .map(|e| e.target())
                    .find(|&t| in_scc(t) && (t == first || !path.contains(&t)))
            else {
                break;
            };
            if next == first {
                break;
            }
            path.push(next);
            cur = next;
        }
        let names: Vec<String> = path
            .iter()
            .filter_map(|&n| describe(book, &tg.g[n]))
            .collect();
        let origin = match &tg.g[first] {
            NodeKind::Task { play, task, .. } => {
                let t = &book.plays[*play].tasks[*task];
                t.needs
                    .first()
                    .map(|(_, o)| o.clone())
                    .unwrap_or_else(|| t.origin.clone())
            }
            NodeKind::PlayStart(p) | NodeKind::PlayEnd(p) => book.plays[*p].origin.clone(),
            NodeKind::Handler { play, .. } => book.plays[*play].origin.clone(),
        };
        let msg = format!(
            "a cycle in the task order: {} → back to the first",
            names.join(" → ")
        );
        return Err(SourceError::new(&origin.file, origin.pos, msg).into());
    }
    Ok(())
}

fn describe(book: &Playbook, n: &NodeKind) -> Option<String> {
    match n {
        NodeKind::Task { play, task, .. } => {
            let t = &book.plays[*play].tasks[*task];
            Some(format!("task '{}' ({})", t.name, t.origin))
        }
        NodeKind::PlayStart(p) => Some(format!("start of play '{}'", book.plays[*p].name)),
        NodeKind::PlayEnd(p) => Some(format!("end of play '{}'", book.plays[*p].name)),
        NodeKind::Handler { .. } => None,
    }
}

/// The graph as Graphviz DOT.
pub fn to_dot(book: &Playbook, tg: &TaskGraph) -> String {
    let mut out = String::from(
        "digraph mailrun {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for n in tg.g.node_indices() {
        let (label, shape) = match &tg.g[n] {
            NodeKind::PlayStart(p) => (
                format!("play {}: {} (start)", p + 1, book.plays[*p].name),
                "oval",
            ),
            NodeKind::PlayEnd(p) => (
                format!("play {}: {} (end)", p + 1, book.plays[*p].name),
                "oval",
            ),
            NodeKind::Task { play, task, host } => (
                format!("{} @ {}", book.plays[*play].tasks[*task].name, host),
                "box",
            ),
            NodeKind::Handler {
                play,
                handler,
                host,
            } => (
                format!(
                    "handler {} @ {}",
                    book.plays[*play].handlers[*handler].name, host
                ),
                "box",
            ),
        };
        let _ = writeln!(
            out,
            "  n{} [label={}, shape={shape}];",
            n.index(),
            dot_string(&label)
        );
    }
    for e in tg.g.edge_references() {
        let style = match e.weight() {
            EdgeKind::Order => "",
            EdgeKind::Need => " [style=bold, color=blue, label=\"needs\"]",
            EdgeKind::Barrier => " [style=dashed]",
        };
        let _ = writeln!(
            out,
            "  n{} -> n{}{style};",
            e.source().index(),
            e.target().index()
        );
    }
    out.push_str("}\n");
    out
}

fn dot_string(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
