//! `--output json`: one JSON object per line on stdout, one per event.
//!
//! Events (field `event`): `play_start` {play, name, hosts}, `task_start`
//! {play, index, task, id?, handler}, `host_result` {play, index, handler,
//! task, host, status
//! (ok|changed|failed|skipped|unreachable), item?, delegated_to?, msg?,
//! stderr?, result? (absent with no_log), diff? {path, unified}, ignored,
//! no_log}, `task_end` {play, index, handler, task}, `progress` {task, host,
//! text}, `warning` {msg}, `recap` {hosts:
//! {HOST: {ok, changed, unreachable, failed, skipped, rescued, ignored}},
//! interrupted, exit_code}.

use crate::engine::event::{Event, Reporter};
use std::io::Write;

pub struct Json<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> Json<W> {
    pub fn new(out: W) -> Self {
        Json { out }
    }
}

impl<W: Write + Send> Reporter for Json<W> {
    fn event(&mut self, e: &Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }
}
