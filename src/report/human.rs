//! Human output, in the shape Ansible users know: a header per play and per
//! task, a line per host, a PLAY RECAP. Colour only on a terminal.
//!
//! Hosts run ahead of each other, so a task's lines are kept until the task
//! has ended on every host and then printed as one block.

use crate::engine::event::{Event, HostStats, Reporter, Status};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::io::Write;

type TaskKey = (usize, usize, bool);

pub struct Human<W: Write + Send> {
    out: W,
    color: bool,
    verbosity: u8,
    /// Lines of the tasks that have not ended yet, in the order they started.
    pending: IndexMap<TaskKey, Vec<String>>,
    titles: HashMap<TaskKey, String>,
    /// PLAY headers by play, and the play whose header was printed last:
    /// plays that run side by side get their header again when their
    /// blocks come out between another play's.
    plays: HashMap<usize, String>,
    current_play: Option<usize>,
    progress_shown: bool,
    /// Why each unreachable host could not be reached, for the recap.
    unreachable: IndexMap<String, String>,
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const MAGENTA: &str = "\x1b[35m";
const RESET: &str = "\x1b[0m";

fn banner(title: &str) -> String {
    let stars = 80usize.saturating_sub(title.chars().count() + 1).max(3);
    format!("{title} {}", "*".repeat(stars))
}

fn title(handler: bool, task: &str) -> String {
    let kind = if handler { "RUNNING HANDLER" } else { "TASK" };
    format!("{kind} [{task}]")
}

impl<W: Write + Send> Human<W> {
    pub fn new(out: W, color: bool, verbosity: u8) -> Self {
        Human {
            out,
            color,
            verbosity,
            pending: IndexMap::new(),
            titles: HashMap::new(),
            plays: HashMap::new(),
            current_play: None,
            progress_shown: false,
            unreachable: IndexMap::new(),
        }
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            let _ = write!(self.out, "\r\x1b[K");
            self.progress_shown = false;
        }
    }

    /// Prints a task's block: its header and its lines.
    fn flush(&mut self, key: TaskKey) {
        let Some(lines) = self.pending.shift_remove(&key) else {
            return;
        };
        if lines.is_empty() {
            return;
        }
        if self.current_play != Some(key.0) {
            if let Some(p) = self.plays.get(&key.0) {
                let _ = writeln!(self.out, "\n{}", banner(&format!("PLAY [{p}]")));
            }
            self.current_play = Some(key.0);
        }
        let t = self.titles.get(&key).cloned().unwrap_or_default();
        let _ = writeln!(self.out, "\n{}", banner(&t));
        for l in lines {
            let _ = writeln!(self.out, "{l}");
        }
    }

    fn recap_line(&self, host: &str, s: &HostStats) -> String {
        let field = |name: &str, n: u32, color: &str| {
            let text = format!("{name}={n:<4}");
            if n > 0 {
                self.paint(color, &text)
            } else {
                text
            }
        };
        let host_color = if s.failed > 0 || s.unreachable > 0 {
            RED
        } else if s.changed > 0 {
            YELLOW
        } else {
            GREEN
        };
        format!(
            "{} : {} {} {} {} {} {} {}",
            self.paint(host_color, &format!("{host:<26}")),
            field("ok", s.ok, GREEN),
            field("changed", s.changed, YELLOW),
            field("unreachable", s.unreachable, RED),
            field("failed", s.failed, RED),
            field("skipped", s.skipped, CYAN),
            field("rescued", s.rescued, MAGENTA),
            field("ignored", s.ignored, MAGENTA),
        )
    }

    /// The lines one host result prints.
    #[allow(clippy::too_many_arguments)]
    fn result_lines(
        &self,
        host: &str,
        status: Status,
        item: Option<&str>,
        delegated_to: Option<&str>,
        msg: Option<&str>,
        stderr: Option<&str>,
        result: Option<&serde_json::Value>,
        ignored: bool,
    ) -> Vec<String> {
        let (word, color) = match status {
            Status::Ok => ("ok", GREEN),
            Status::Changed => ("changed", YELLOW),
            Status::Failed => ("failed", RED),
            Status::Skipped => ("skipped", CYAN),
            Status::Unreachable => ("unreachable", RED),
        };
        let mut line = match delegated_to {
            Some(d) if d != host => format!("{word}: [{host} -> {d}]"),
            _ => format!("{word}: [{host}]"),
        };
        if let Some(i) = item {
            line.push_str(&format!(" => (item={i})"));
        }
        if let Some(m) = msg {
            line.push_str(&format!(": {m}"));
        }
        if ignored {
            line.push_str(" ...ignoring");
        }
        let mut out = vec![self.paint(color, &line)];
        if let Some(err) = stderr.filter(|s| !s.trim().is_empty()) {
            for l in err.lines() {
                out.push(self.paint(color, &format!("  stderr: {l}")));
            }
        }
        if self.verbosity > 0 {
            if let Some(r) = result {
                // As Ansible's YAML callback: results are easier to read as YAML.
                let pretty = crate::yaml::dump(r);
                out.extend(pretty.lines().map(|l| format!("  {l}")));
            }
        }
        out
    }

    fn diff_lines(&self, unified: &str) -> Vec<String> {
        unified
            .lines()
            .map(|line| match line.chars().next() {
                Some('+') if !line.starts_with("+++") => self.paint(GREEN, line),
                Some('-') if !line.starts_with("---") => self.paint(RED, line),
                Some('@') => self.paint(CYAN, line),
                _ => line.to_string(),
            })
            .collect()
    }
}

impl<W: Write + Send> Reporter for Human<W> {
    fn event(&mut self, e: &Event) {
        self.clear_progress();
        match e {
            Event::PlayStart { play, name, hosts } => {
                self.plays.insert(*play, name.clone());
                // Printed now unless another play's tasks are still open.
                if self.pending.values().all(Vec::is_empty) || hosts.is_empty() {
                    let _ = writeln!(self.out, "\n{}", banner(&format!("PLAY [{name}]")));
                    self.current_play = Some(*play);
                    if hosts.is_empty() {
                        let _ = writeln!(self.out, "skipping: no hosts matched");
                    }
                }
            }
            Event::TaskStart {
                play,
                index,
                task,
                handler,
                ..
            } => {
                let key = (*play, *index, *handler);
                self.titles.insert(key, title(*handler, task));
                self.pending.entry(key).or_default();
            }
            Event::HostResult {
                play,
                index,
                handler,
                task,
                host,
                status,
                item,
                delegated_to,
                msg,
                stderr,
                result,
                diff,
                ignored,
                summary,
                ..
            } => {
                let key = (*play, *index, *handler);
                if *status == Status::Unreachable {
                    self.unreachable
                        .entry(host.clone())
                        .or_insert_with(|| msg.clone().unwrap_or_default());
                }
                // A loop's items were shown; its summary only when it failed.
                if *summary && *status != Status::Failed {
                    return;
                }
                self.titles
                    .entry(key)
                    .or_insert_with(|| title(*handler, task));
                let lines = match diff {
                    Some(d) => self.diff_lines(&d.unified),
                    None => self.result_lines(
                        host,
                        *status,
                        item.as_deref(),
                        delegated_to.as_deref(),
                        msg.as_deref(),
                        stderr.as_deref(),
                        result.as_ref(),
                        *ignored,
                    ),
                };
                self.pending.entry(key).or_default().extend(lines);
            }
            Event::TaskEnd {
                play,
                index,
                handler,
                ..
            } => self.flush((*play, *index, *handler)),
            Event::Progress { host, task, text } => {
                if self.color {
                    let _ = write!(self.out, "  [{host}] {task}: {text}");
                    self.progress_shown = true;
                }
            }
            Event::Warning { msg } => {
                let _ = self.out.flush();
                if self.color {
                    crate::errln!("{MAGENTA}[WARNING]: {msg}{RESET}");
                } else {
                    crate::errln!("[WARNING]: {msg}");
                }
            }
            Event::Recap {
                hosts, interrupted, ..
            } => {
                let keys: Vec<TaskKey> = self.pending.keys().copied().collect();
                for k in keys {
                    self.flush(k);
                }
                if *interrupted {
                    let text = "Interrupted: no new tasks were started after Ctrl-C.";
                    let _ = writeln!(self.out, "\n{}", self.paint(RED, text));
                }
                let _ = writeln!(self.out, "\n{}", banner("PLAY RECAP"));
                for (h, s) in hosts {
                    let _ = writeln!(self.out, "{}", self.recap_line(h, s));
                }
                if !self.unreachable.is_empty() {
                    let _ = writeln!(self.out);
                    let mut hosts: Vec<_> = self.unreachable.iter().collect();
                    hosts.sort();
                    for (h, why) in hosts {
                        let line = format!("UNREACHABLE {h}: {why}");
                        let _ = writeln!(self.out, "{}", self.paint(RED, &line));
                    }
                }
                let _ = writeln!(self.out);
            }
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::HostStats;

    fn result(play: usize, index: usize, host: &str, status: Status) -> Event {
        Event::HostResult {
            play,
            index,
            handler: false,
            task: format!("t{index}"),
            host: host.into(),
            status,
            item: None,
            delegated_to: None,
            msg: None,
            stderr: None,
            result: None,
            diff: None,
            ignored: false,
            no_log: false,
            summary: false,
        }
    }

    #[test]
    fn tasks_print_as_blocks_in_ansible_shape() {
        let mut buf = Vec::new();
        {
            let mut h = Human::new(&mut buf, false, 0);
            let start = |i: usize| Event::TaskStart {
                play: 0,
                index: i,
                task: format!("t{i}"),
                id: None,
                handler: false,
            };
            let end = |i: usize| Event::TaskEnd {
                play: 0,
                index: i,
                handler: false,
                task: format!("t{i}"),
            };
            h.event(&Event::PlayStart {
                play: 0,
                name: "p".into(),
                hosts: vec!["a".into(), "b".into()],
            });
            h.event(&start(0));
            h.event(&result(0, 0, "a", Status::Ok));
            h.event(&start(1));
            // a runs ahead: its t1 result arrives before b's t0.
            h.event(&result(0, 1, "a", Status::Changed));
            h.event(&result(0, 0, "b", Status::Ok));
            h.event(&end(0));
            h.event(&result(0, 1, "b", Status::Failed));
            h.event(&end(1));
            let mut hosts = IndexMap::new();
            hosts.insert(
                "a".to_string(),
                HostStats {
                    ok: 2,
                    changed: 1,
                    ..Default::default()
                },
            );
            h.event(&Event::Recap {
                hosts,
                interrupted: false,
                exit_code: 0,
            });
        }
        let text = String::from_utf8(buf).unwrap();
        let want = format!(
            "\n{}\n\n{}\nok: [a]\nok: [b]\n\n{}\nchanged: [a]\nfailed: [b]\n\n{}\n{}\n\n",
            banner("PLAY [p]"),
            banner("TASK [t0]"),
            banner("TASK [t1]"),
            banner("PLAY RECAP"),
            "a                          : ok=2    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0   "
        );
        assert_eq!(text, want);
    }
}
