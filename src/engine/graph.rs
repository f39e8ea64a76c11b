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
    /// Every host has done the play's task before this index (a play or
    /// task with `any_errors_fatal` moves in step, as Ansible's).
    Step(usize, usize),
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
        // Ansible's order: after every earlier play (an earlier play with
        // `needs` does not wait for the ones before it; this one still does).
        if !play.needs_given {
            for &end_before in &ends[..pi] {
                g.add_edge(end_before, start, EdgeKind::Barrier);
            }
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
        // any_errors_fatal: every host finishes a task before any starts the next.
        if play.strategy == Strategy::Linear {
            for w in pp.tasks.windows(2) {
                if !(play.any_errors_fatal || play.tasks[w[0]].any_errors_fatal) {
                    continue;
                }
                let step = g.add_node(NodeKind::Step(pi, w[1]));
                for &n in task_nodes.get(&(pi, w[0])).into_iter().flatten() {
                    g.update_edge(n, step, EdgeKind::Barrier);
                }
                for &n in task_nodes.get(&(pi, w[1])).into_iter().flatten() {
                    g.update_edge(step, n, EdgeKind::Barrier);
                }
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
            NodeKind::PlayStart(p) | NodeKind::PlayEnd(p) | NodeKind::Step(p, _) => {
                book.plays[*p].origin.clone()
            }
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
        NodeKind::Handler { .. } | NodeKind::Step(..) => None,
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
            NodeKind::Step(p, t) => (
                format!("all hosts before '{}'", book.plays[*p].tasks[*t].name),
                "point",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::{Origin, Play, Task};
    use petgraph::algo::has_path_connecting;

    fn task(name: &str, id: Option<&str>, needs: &[&str]) -> Task {
        Task {
            name: name.into(),
            module: "command".into(),
            id: id.map(String::from),
            needs: needs
                .iter()
                .map(|n| (n.to_string(), Origin::default()))
                .collect(),
            ..Default::default()
        }
    }

    fn play(name: &str, tasks: Vec<Task>) -> Play {
        Play {
            name: name.into(),
            hosts: "all".into(),
            tasks,
            ..Default::default()
        }
    }

    fn node(tg: &TaskGraph, play: usize, task: usize, host: &str) -> NodeIndex {
        tg.g.node_indices()
            .find(|&n| {
                tg.g[n]
                    == NodeKind::Task {
                        play,
                        task,
                        host: host.into(),
                    }
            })
            .expect("node")
    }

    fn plan_all(book: &Playbook, hosts: &[&str]) -> Vec<PlanPlay> {
        book.plays
            .iter()
            .map(|p| PlanPlay {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                tasks: (0..p.tasks.len()).collect(),
            })
            .collect()
    }

    #[test]
    fn linear_plays_chain_per_host_and_barrier_between_plays() {
        let book = Playbook {
            paths: vec![],
            plays: vec![
                play("one", vec![task("a", None, &[]), task("b", None, &[])]),
                play("two", vec![task("c", None, &[])]),
            ],
        };
        let tg = build(&book, &plan_all(&book, &["h1", "h2"]));
        let path = |a, b| has_path_connecting(&tg.g, a, b, None);
        // Per host order.
        assert!(path(node(&tg, 0, 0, "h1"), node(&tg, 0, 1, "h1")));
        // Hosts are independent inside a play.
        assert!(!path(node(&tg, 0, 0, "h1"), node(&tg, 0, 1, "h2")));
        assert!(!path(node(&tg, 0, 1, "h2"), node(&tg, 0, 0, "h1")));
        // The next play waits for every host of the previous one.
        assert!(path(node(&tg, 0, 1, "h2"), node(&tg, 1, 0, "h1")));
        assert!(petgraph::algo::toposort(&tg.g, None).is_ok());
    }

    #[test]
    fn needs_cross_hosts_and_plays_and_graph_strategy_drops_the_chain() {
        let mut p2 = play("two", vec![task("x", None, &[]), task("y", None, &["a"])]);
        p2.needs = vec![];
        p2.strategy = Strategy::Graph;
        let mut p1 = play("one", vec![task("a", Some("a"), &[])]);
        p1.hosts = "old".into();
        let book = Playbook {
            paths: vec![],
            plays: vec![p1, p2],
        };
        let plan = vec![
            PlanPlay {
                hosts: vec!["old".into()],
                tasks: vec![0],
            },
            PlanPlay {
                hosts: vec!["new".into()],
                tasks: vec![0, 1],
            },
        ];
        let tg = build(&book, &plan);
        let path = |a, b| has_path_connecting(&tg.g, a, b, None);
        let a = node(&tg, 0, 0, "old");
        let (x, y) = (node(&tg, 1, 0, "new"), node(&tg, 1, 1, "new"));
        assert!(path(a, y), "y needs a on every host a runs on");
        assert!(
            !path(x, y) && !path(y, x),
            "graph strategy: x and y are independent"
        );
        // Play two has no implicit barrier... but no needs either means the
        // barrier applies; here `needs: []` is empty, so it follows play one.
        assert!(path(a, x));
        let e = tg.g.find_edge(a, y).expect("needs edge");
        assert_eq!(tg.g[e], EdgeKind::Need);
    }

    #[test]
    fn play_needs_replaces_the_barrier() {
        let p1 = play("one", vec![task("a", None, &[])]);
        let mut p2 = play("two", vec![task("b", Some("b"), &[])]);
        p2.id = Some("two".into());
        let mut p3 = play("three", vec![task("c", None, &[])]);
        p3.needs = vec![("two".into(), Origin::default())];
        p3.needs_given = true;
        let book = Playbook {
            paths: vec![],
            plays: vec![p1, p2, p3],
        };
        let tg = build(&book, &plan_all(&book, &["h"]));
        let path = |a, b| has_path_connecting(&tg.g, a, b, None);
        // three needs only two; two follows one by the default barrier, so
        // three still comes after one through two.
        assert!(path(node(&tg, 1, 0, "h"), node(&tg, 2, 0, "h")));
        let mut p3b = book.plays[2].clone();
        p3b.needs = vec![("b".into(), Origin::default())];
        let mut p2b = book.plays[1].clone();
        p2b.needs = vec![];
        p2b.needs_given = true;
        let book2 = Playbook {
            paths: vec![],
            plays: vec![book.plays[0].clone(), p2b, p3b],
        };
        let tg2 = build(&book2, &plan_all(&book2, &["h"]));
        // Play two says `needs: []`: no barrier, it runs beside play one.
        let one = tg2
            .g
            .node_indices()
            .find(|&n| {
                tg2.g[n]
                    == NodeKind::Task {
                        play: 0,
                        task: 0,
                        host: "h".into(),
                    }
            })
            .unwrap();
        let two = tg2
            .g
            .node_indices()
            .find(|&n| {
                tg2.g[n]
                    == NodeKind::Task {
                        play: 1,
                        task: 0,
                        host: "h".into(),
                    }
            })
            .unwrap();
        assert!(
            !has_path_connecting(&tg2.g, one, two, None)
                && !has_path_connecting(&tg2.g, two, one, None)
        );
    }

    #[test]
    fn run_once_is_one_node_on_every_host_chain() {
        let mut once = task("once", None, &[]);
        once.run_once = true;
        let book = Playbook {
            paths: vec![],
            plays: vec![play(
                "p",
                vec![task("a", None, &[]), once, task("c", None, &[])],
            )],
        };
        let tg = build(&book, &plan_all(&book, &["h1", "h2"]));
        let onces: Vec<_> =
            tg.g.node_indices()
                .filter(|&n| matches!(&tg.g[n], NodeKind::Task { task: 1, .. }))
                .collect();
        assert_eq!(onces.len(), 1);
        let path = |a, b| has_path_connecting(&tg.g, a, b, None);
        assert!(path(node(&tg, 0, 0, "h2"), onces[0]) && path(onces[0], node(&tg, 0, 2, "h2")));
    }

    #[test]
    fn cycles_are_named() {
        let mut p = play(
            "p",
            vec![
                task("first", Some("a"), &["b"]),
                task("second", Some("b"), &["a"]),
            ],
        );
        p.strategy = Strategy::Graph;
        let book = Playbook {
            paths: vec![],
            plays: vec![p],
        };
        let e = check_cycles(&book).unwrap_err().to_string();
        assert!(
            e.contains("cycle") && e.contains("'first'") && e.contains("'second'"),
            "{e}"
        );
        // A forward `needs` in a linear play is a cycle too.
        let p = play(
            "p",
            vec![task("first", None, &["b"]), task("second", Some("b"), &[])],
        );
        let book = Playbook {
            paths: vec![],
            plays: vec![p],
        };
        assert!(check_cycles(&book).is_err());
    }

    #[test]
    fn a_play_without_needs_follows_every_earlier_play() {
        let p1 = play("one", vec![task("a", None, &[])]);
        let mut p2 = play("two", vec![task("b", None, &[])]);
        p2.needs_given = true;
        let p3 = play("three", vec![task("c", None, &[])]);
        let book = Playbook {
            paths: vec![],
            plays: vec![p1, p2, p3],
        };
        let tg = build(&book, &plan_all(&book, &["h"]));
        let path = |a, b| has_path_connecting(&tg.g, a, b, None);
        assert!(
            !path(node(&tg, 0, 0, "h"), node(&tg, 1, 0, "h")),
            "two runs beside one"
        );
        assert!(
            path(node(&tg, 0, 0, "h"), node(&tg, 2, 0, "h")),
            "three follows one"
        );
        assert!(
            path(node(&tg, 1, 0, "h"), node(&tg, 2, 0, "h")),
            "three follows two"
        );
    }

    #[test]
    fn any_errors_fatal_moves_hosts_in_step() {
        let mut p = play("p", vec![task("a", None, &[]), task("b", None, &[])]);
        p.any_errors_fatal = true;
        let book = Playbook {
            paths: vec![],
            plays: vec![p],
        };
        let tg = build(&book, &plan_all(&book, &["h1", "h2"]));
        assert!(has_path_connecting(
            &tg.g,
            node(&tg, 0, 0, "h2"),
            node(&tg, 0, 1, "h1"),
            None
        ));
        let plain = Playbook {
            paths: vec![],
            plays: vec![play("p", vec![task("a", None, &[]), task("b", None, &[])])],
        };
        let tg = build(&plain, &plan_all(&plain, &["h1", "h2"]));
        assert!(!has_path_connecting(
            &tg.g,
            node(&tg, 0, 0, "h2"),
            node(&tg, 0, 1, "h1"),
            None
        ));
    }
}
