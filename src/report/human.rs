//! Human output, in the shape Ansible users know: a header per play and per
//! task, a line per host, a PLAY RECAP. Colour only on a terminal.

use crate::engine::event::{Event, HostStats, Reporter, Status};
use std::collections::HashMap;
use std::io::Write;

pub struct Human<W: Write + Send> {
    out: W,
    color: bool,
    verbosity: u8,
    /// The (play, task) whose header was printed last.
    header: Option<(usize, String)>,
    handlers: HashMap<(usize, String), bool>,
    progress_shown: bool,
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

impl<W: Write + Send> Human<W> {
    pub fn new(out: W, color: bool, verbosity: u8) -> Self {
        Human {
            out,
            color,
            verbosity,
            header: None,
            handlers: HashMap::new(),
            progress_shown: false,
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
}

impl<W: Write + Send> Reporter for Human<W> {
    fn event(&mut self, e: &Event) {
        self.clear_progress();
        match e {
            Event::PlayStart { name, .. } => {
                let _ = writeln!(self.out, "\n{}", banner(&format!("PLAY [{name}]")));
                self.header = None;
            }
            Event::TaskStart {
                play,
                task,
                handler,
                ..
            } => {
                self.handlers.insert((*play, task.clone()), *handler);
            }
            Event::HostResult {
                play,
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
                no_log,
            } => {
                let key = (*play, task.clone());
                if self.header.as_ref() != Some(&key) {
                    let kind = if self.handlers.get(&key).copied().unwrap_or(false) {
                        "RUNNING HANDLER"
                    } else {
                        "TASK"
                    };
                    let _ = writeln!(self.out, "\n{}", banner(&format!("{kind} [{task}]")));
                    self.header = Some(key);
                }
                if let Some(d) = diff {
                    for line in d.unified.lines() {
                        let colored = match line.chars().next() {
                            Some('+') if !line.starts_with("+++") => self.paint(GREEN, line),
                            Some('-') if !line.starts_with("---") => self.paint(RED, line),
                            Some('@') => self.paint(CYAN, line),
                            _ => line.to_string(),
                        };
                        let _ = writeln!(self.out, "{colored}");
                    }
                    return;
                }
                let (word, color) = match status {
                    Status::Ok => ("ok", GREEN),
                    Status::Changed => ("changed", YELLOW),
                    Status::Failed => ("failed", RED),
                    Status::Skipped => ("skipped", CYAN),
                    Status::Unreachable => ("unreachable", RED),
                };
                let target = match delegated_to {
                    Some(d) => format!("[{host} -> {d}]"),
                    None => format!("[{host}]"),
                };
                let mut line = format!("{word}: {target}");
                if let Some(i) = item {
                    line.push_str(&format!(" => (item={i})"));
                }
                if let Some(m) = msg {
                    line.push_str(&format!(": {m}"));
                }
                if *ignored {
                    line.push_str(" ...ignoring");
                }
                let _ = writeln!(self.out, "{}", self.paint(color, &line));
                if let Some(err) = stderr.as_deref().filter(|s| !s.trim().is_empty()) {
                    for l in err.lines() {
                        let _ =
                            writeln!(self.out, "{}", self.paint(color, &format!("  stderr: {l}")));
                    }
                }
                let show = self.verbosity > 0
                    || (*status == Status::Failed && result.is_some() && msg.is_none());
                if show && !no_log {
                    if let Some(r) = result {
                        let pretty = serde_json::to_string_pretty(r).unwrap_or_default();
                        for l in pretty.lines() {
                            let _ = writeln!(self.out, "  {l}");
                        }
                    }
                }
            }
            Event::Progress { host, task, text } => {
                if self.color {
                    let _ = write!(self.out, "  [{host}] {task}: {text}");
                    self.progress_shown = true;
                }
            }
            Event::Warning { msg } => {
                let _ = self.out.flush();
                eprintln!(
                    "{}",
                    if self.color {
                        format!("{MAGENTA}[WARNING]: {msg}{RESET}")
                    } else {
                        format!("[WARNING]: {msg}")
                    }
                );
            }
            Event::Recap {
                hosts, interrupted, ..
            } => {
                if *interrupted {
                    let _ = writeln!(
                        self.out,
                        "\n{}",
                        self.paint(RED, "Interrupted: no new tasks were started after Ctrl-C.")
                    );
                }
                let _ = writeln!(self.out, "\n{}", banner("PLAY RECAP"));
                for (h, s) in hosts {
                    let _ = writeln!(self.out, "{}", self.recap_line(h, s));
                }
                let _ = writeln!(self.out);
            }
        }
        let _ = self.out.flush();
    }
}
