//! `pause`: waits for the operator (a prompt) or for a time. Never changes
//! anything.

use super::args;
use crate::connection::ConnError;
use crate::module::{ArgError, ArgSpec, Context, Module, ModuleDoc, Outcome};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

pub struct Pause;

const DEFAULT_PROMPT: &str = "Press enter to continue";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default, deserialize_with = "args::opt_string_lenient")]
    prompt: Option<String>,
    #[serde(default, deserialize_with = "args::opt_int_lenient")]
    seconds: Option<u64>,
    #[serde(default, deserialize_with = "args::opt_int_lenient")]
    minutes: Option<u64>,
}

/// What the check step decided.
enum Plan {
    Wait(Duration, Option<String>),
    Ask(String),
}

fn plan(p: Params) -> Plan {
    match (p.seconds, p.minutes) {
        (None, None) => Plan::Ask(p.prompt.unwrap_or_else(|| DEFAULT_PROMPT.into())),
        (s, m) => {
            let secs = s
                .unwrap_or(0)
                .saturating_add(m.unwrap_or(0).saturating_mul(60));
            Plan::Wait(Duration::from_secs(secs), p.prompt)
        }
    }
}

#[async_trait]
impl Module for Pause {
    fn doc(&self) -> ModuleDoc {
        ModuleDoc {
            name: "pause",
            description: "Waits for the operator to answer a prompt (--yes answers it), or for a time.",
            args: vec![
                ArgSpec {
                    name: "prompt",
                    kind: "string",
                    required: false,
                    default: Some(DEFAULT_PROMPT),
                    description: "The question shown to the operator; the answer is registered as user_input.",
                },
                ArgSpec {
                    name: "seconds",
                    kind: "int",
                    required: false,
                    default: None,
                    description: "Wait this many seconds instead of asking (the prompt is only shown).",
                },
                ArgSpec {
                    name: "minutes",
                    kind: "int",
                    required: false,
                    default: None,
                    description: "Wait this many minutes instead of asking (added to seconds).",
                },
            ],
            check_mode: true,
            example: "- name: Make the new server the secondary MX\n  pause:\n    prompt: \"Add the new server as secondary MX in DNS, then press enter\"\n",
            free_form: None,
        }
    }

    fn parse(&self, args: &Value) -> Result<(), ArgError> {
        args::typed::<Params>("pause", args).map(|_| ())
    }

    async fn run(&self, ctx: &Context, args: Value) -> Result<Outcome, ConnError> {
        let p = match args::typed::<Params>("pause", &args) {
            Ok(p) => p,
            Err(e) => return Ok(super::arg_failure(e)),
        };
        let plan = plan(p);
        if ctx.check {
            let what = match &plan {
                Plan::Ask(prompt) => prompt.clone(),
                Plan::Wait(d, _) => format!("{}s", d.as_secs()),
            };
            return Ok(Outcome::ok().msg(format!("would pause: {what}")));
        }
        Ok(match plan {
            Plan::Wait(d, prompt) => {
                let what = format!("pausing for {}s", d.as_secs());
                ctx.progress.update(&match prompt {
                    Some(p) => format!("{p} ({what})"),
                    None => what,
                });
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = crate::interrupt::wait() => return Ok(Outcome::failed(crate::interrupt::MSG)),
                }
                Outcome::ok()
                    .with("user_input", "")
                    .with("seconds", d.as_secs())
            }
            Plan::Ask(prompt) => {
                let prompter = ctx.prompter.clone();
                let asked = prompt.clone();
                // The prompter blocks on the terminal: keep it off the runtime.
                // Ctrl-C ends the wait (the read is left to the runtime's
                // shutdown).
                let answer = tokio::select! {
                    a = tokio::task::spawn_blocking(move || prompter.ask(&asked)) => a,
                    _ = crate::interrupt::wait() => return Ok(Outcome::failed(crate::interrupt::MSG)),
                };
                match answer {
                    Ok(Ok(answer)) => Outcome::ok().with("user_input", answer),
                    Ok(Err(msg)) => Outcome::failed(msg),
                    Err(e) => Outcome::failed(format!("pause: prompt failed: {e}")),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testutil::{ctx, ctx_with, rt, run, CannedPrompter};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[test]
    fn asks_and_registers_the_answer() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let prompter = Arc::new(CannedPrompter {
                answer: Ok("done".into()),
                asked: Mutex::new(Vec::new()),
            });
            let c = ctx_with(dir.path(), prompter.clone());
            let o = run(&c, "pause", json!({"prompt": "Switch the MX"})).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            assert_eq!(o.data["user_input"], "done");
            let o = run(&c, "pause", json!({})).await;
            assert!(!o.changed && !o.failed, "{o:?}");
            let asked = prompter.asked.lock().map(|a| a.clone()).unwrap_or_default();
            assert_eq!(
                asked,
                vec![
                    "Switch the MX".to_string(),
                    "Press enter to continue".into()
                ]
            );
        });
    }

    #[test]
    fn no_answer_fails() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let msg = "no terminal to ask on; use --yes".to_string();
            let c = ctx_with(
                dir.path(),
                Arc::new(CannedPrompter {
                    answer: Err(msg.clone()),
                    asked: Mutex::new(Vec::new()),
                }),
            );
            let o = run(&c, "pause", json!({"prompt": "?"})).await;
            assert!(o.failed && !o.changed && o.msg == Some(msg), "{o:?}");
        });
    }

    #[test]
    fn check_mode_does_not_ask_and_seconds_wait() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let prompter = Arc::new(CannedPrompter {
                answer: Ok("x".into()),
                asked: Mutex::new(Vec::new()),
            });
            let mut c = ctx_with(dir.path(), prompter.clone());
            c.check = true;
            let o = run(&c, "pause", json!({"prompt": "Switch the MX"})).await;
            assert_eq!(o.msg.as_deref(), Some("would pause: Switch the MX"));
            assert!(!o.changed && !o.failed);
            assert!(prompter.asked.lock().map(|a| a.is_empty()).unwrap_or(false));
            let c = ctx(dir.path());
            let start = std::time::Instant::now();
            let o = run(&c, "pause", json!({"seconds": "1"})).await;
            assert!(
                !o.changed && !o.failed && start.elapsed().as_millis() >= 900,
                "{o:?}"
            );
            let o = run(&c, "pause", json!({"seconds": "soon"})).await;
            assert!(
                o.failed
                    && o.msg
                        .as_deref()
                        .is_some_and(|m| m.starts_with("pause: argument 'seconds'")),
                "{o:?}"
            );
        });
    }
}
