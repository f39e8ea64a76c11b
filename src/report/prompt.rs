//! Answers `pause` prompts: `--yes` goes on, a terminal is asked, anything
//! else fails clearly.

use crate::module::Prompter;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

pub struct TerminalPrompter {
    pub yes: bool,
    lock: Mutex<()>,
}

impl TerminalPrompter {
    pub fn new(yes: bool) -> Self {
        TerminalPrompter {
            yes,
            lock: Mutex::new(()),
        }
    }
}

impl Prompter for TerminalPrompter {
    fn ask(&self, prompt: &str) -> Result<String, String> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| "prompt lock poisoned".to_string())?;
        if self.yes {
            crate::errln!("[pause] {prompt} (--yes: continuing)");
            return Ok(String::new());
        }
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "pause: '{prompt}' needs an answer, but there is no terminal: run with --yes to continue without prompting"
            ));
        }
        crate::err!("[pause] {prompt}\n(press Enter to continue, Ctrl-C to stop): ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Err("pause: no answer (end of input)".into()),
            Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => Err(format!("pause: cannot read the answer: {e}")),
        }
    }
}
