//! Command-line arguments to an exit code: the one place errors are printed.

use crate::cli::{AdhocArgs, Cli, Command, CommonArgs, InventoryArgs, Output, PlaybookArgs};
use crate::engine::{self, event::Reporter, RunOptions};
use crate::error::{exit, Error, Result};
use crate::inventory::Inventory;
use crate::module::Module as _;
use crate::modules;
use crate::playbook::{self, LoadOptions, Playbook};
use crate::report::{Human, Json, TerminalPrompter};
use clap::Parser;
use serde_json::{Map, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The binary's entry: parses arguments, runs, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::BAD_OPTIONS,
            };
            let _ = e.print();
            return code;
        }
    };
    let outcome = std::panic::catch_unwind(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build();
        match rt {
            Ok(rt) => {
                let result = rt.block_on(dispatch(cli));
                // Work left behind (a login given up at Ctrl-C, a name
                // lookup in a blocking thread) must not hold the exit.
                rt.shutdown_timeout(std::time::Duration::from_millis(500));
                result
            }
            Err(e) => Err(Error::Other(format!("cannot start the runtime: {e}"))),
        }
    });
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            crate::errln!("error: {e}");
            e.exit_code()
        }
        Err(_) => {
            crate::errln!(
                "error: mailrun hit an unexpected internal error (a bug): please report it"
            );
            exit::UNEXPECTED
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32> {
    find_plugins(&cli);
    match cli.command {
        Some(Command::Adhoc(a)) => adhoc(a).await,
        Some(Command::Inventory(a)) => inventory(a),
        Some(Command::Modules) => {
            list_modules();
            Ok(exit::OK)
        }
        Some(Command::Doc { module }) => doc(&module),
        Some(Command::Completions { shell }) => {
            completions(shell);
            Ok(exit::OK)
        }
        Some(Command::Man { out_dir }) => man(out_dir.as_deref()),
        None => playbooks(cli.run).await,
    }
}

/// `mailrun completions SHELL`: clap_complete's script for the CLI as defined.
fn completions(shell: crate::cli::Shell) {
    use clap::CommandFactory;
    use clap_complete::{generate, shells};
    let mut cmd = Cli::command();
    let mut out = std::io::stdout();
    match shell {
        crate::cli::Shell::Bash => generate(shells::Bash, &mut cmd, "mailrun", &mut out),
        crate::cli::Shell::Zsh => generate(shells::Zsh, &mut cmd, "mailrun", &mut out),
        crate::cli::Shell::Fish => generate(shells::Fish, &mut cmd, "mailrun", &mut out),
    }
}

/// `mailrun man`: the man page on stdout, or with `--out-dir` one page per
/// command (mailrun.1, mailrun-adhoc.1, …) written there.
fn man(out_dir: Option<&Path>) -> Result<i32> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)?;
            crate::outln!("man pages written to {}", dir.display());
        }
        None => {
            let mut out: Vec<u8> = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            crate::out!("{}", String::from_utf8_lossy(&out));
        }
    }
    Ok(exit::OK)
}

/// Finds the plugin modules this command may use (see
/// [`crate::plugin::search_dirs`]) and prints what was not taken.
fn find_plugins(cli: &Cli) {
    let (playbooks, inventories): (&[PathBuf], &[String]) = match &cli.command {
        Some(Command::Adhoc(a)) => (&[], &a.common.inventory),
        Some(Command::Inventory(_)) => return,
        Some(_) => (&[], &[]),
        None => (&cli.run.playbooks, &cli.run.common.inventory),
    };
    let (dirs, mut warnings) = crate::plugin::search_dirs(&cli.module_path, playbooks, inventories);
    warnings.extend(crate::plugin::install(&dirs));
    for w in warnings {
        crate::errln!("[WARNING]: {w}");
    }
}

/// `mailrun modules`: built-ins, Ansible aliases and plugins, one line each.
fn list_modules() {
    let mut lines: Vec<(String, String)> = modules::all()
        .iter()
        .map(|m| {
            let d = m.doc();
            (
                d.name.to_string(),
                first_sentence(d.description).to_string(),
            )
        })
        .collect();
    for (alias, target) in modules::ALIASES {
        lines.push((
            alias.to_string(),
            format!("alias of {target} (Ansible's name)"),
        ));
    }
    for name in crate::plugin::names() {
        if let Some(p) = crate::plugin::get(name) {
            let d = p.doc();
            lines.push((
                name.to_string(),
                format!(
                    "{} [plugin: {}]",
                    first_sentence(d.description),
                    p.path.display()
                ),
            ));
        }
    }
    lines.sort();
    for (name, text) in lines {
        // One line each, whatever a plugin's description holds.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        crate::outln!("{name:<16} {text}");
    }
}

fn doc(name: &str) -> Result<i32> {
    let name = name.strip_prefix("ansible.builtin.").unwrap_or(name);
    if let Some((_, target)) = modules::ALIASES.iter().find(|(a, _)| *a == name) {
        crate::outln!("{name} is Ansible's name for {target}: the same arguments.\n");
    }
    if let Some(p) = crate::plugin::get(name).filter(|_| modules::builtin(name).is_none()) {
        if let Some(e) = p.unusable() {
            return Err(Error::Other(e.msg));
        }
        crate::outln!("plugin module: {}", p.path.display());
    }
    let Some(m) = modules::get(name) else {
        let help = crate::suggest::did_you_mean(name, modules::names())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return Err(Error::Options(format!(
            "no module named '{name}'{help}; `mailrun modules` lists them"
        )));
    };
    let d = m.doc();
    crate::outln!("{} — {}\n", d.name, d.description);
    let aliases: Vec<&str> = modules::ALIASES
        .iter()
        .filter(|(_, target)| *target == d.name)
        .map(|(alias, _)| *alias)
        .collect();
    if !aliases.is_empty() {
        crate::outln!("Ansible's name: {}", aliases.join(", "));
    }
    crate::outln!(
        "check mode: {}",
        if d.check_mode {
            "supported"
        } else {
            "not supported"
        }
    );
    if let Some(ff) = d.free_form {
        crate::outln!("free form: the text after the module name fills '{ff}'");
    }
    crate::outln!("\narguments:");
    for a in &d.args {
        let req = if a.required { ", required" } else { "" };
        let def = a
            .default
            .map(|d| format!(", default {d}"))
            .unwrap_or_default();
        crate::outln!(
            "  {:<14} ({}{req}{def})\n      {}",
            a.name,
            a.kind,
            a.description
        );
    }
    crate::outln!("\nexample:\n{}", d.example.trim_end());
    Ok(exit::OK)
}

fn inventory(a: InventoryArgs) -> Result<i32> {
    let mut inv = load_inventory(&a.inventory)?;
    let dir = a.playbook_dir.as_deref();
    if let Some(d) = dir {
        inv.load_playbook_vars(d)?;
    }
    let text = if let Some(h) = &a.host {
        inv.host_json_for(h, dir)?
    } else if let Some(g) = &a.graph {
        if a.vars {
            inv.graph_text_vars(Some(g), dir)?
        } else {
            inv.graph_text(Some(g))?
        }
    } else if a.list {
        inv.list_json_for(dir)
    } else {
        return Err(Error::Options(
            "mailrun inventory needs one of --list, --host HOST or --graph".into(),
        ));
    };
    crate::out!("{}", ensure_newline(text));
    Ok(exit::OK)
}

/// Loads the inventory sources (Ansible's default when none is given) and
/// prints the inventory's warnings.
fn load_inventory(given: &[String]) -> Result<Inventory> {
    let inv = Inventory::load(&default_inventory(given))?;
    for w in inv.warnings() {
        crate::errln!("[WARNING]: {w}");
    }
    Ok(inv)
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// `-i` as given; without one, Ansible's default inventory if present.
fn default_inventory(given: &[String]) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    if let Ok(env) = std::env::var("MAILRUN_INVENTORY") {
        return env
            .split(',')
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .collect();
    }
    if Path::new("/etc/ansible/hosts").exists() {
        return vec!["/etc/ansible/hosts".into()];
    }
    Vec::new()
}

/// Parses `-e` values: `k=v …`, JSON/YAML text, or `@file`.
pub fn extra_vars(values: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for v in values {
        let (text, origin) = if let Some(file) = v.strip_prefix('@') {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::Options(format!("-e @{file}: cannot read: {e}")))?;
            (text, PathBuf::from(file))
        } else {
            (v.clone(), PathBuf::from("-e"))
        };
        let trimmed = text.trim_start();
        if v.starts_with('@') || trimmed.starts_with('{') || trimmed.starts_with('[') {
            let node = crate::yaml::parse(&text, &origin)
                .map_err(|e| Error::Options(format!("-e: {e}")))?;
            match node.to_json() {
                Value::Object(m) => out.extend(m),
                Value::Null => {}
                _ => {
                    return Err(Error::Options(format!(
                        "-e {v}: expected a mapping of variables"
                    )))
                }
            }
        } else {
            let m = modules::args::parse_kv(&text, None)
                .map_err(|e| Error::Options(format!("-e {v}: {e}")))?;
            out.extend(m);
        }
    }
    Ok(out)
}

fn run_options(c: &CommonArgs, mut extra: Map<String, Value>) -> RunOptions {
    if let Some(t) = c.connection {
        let name = match t {
            crate::cli::ConnectionType::Local => "local",
            crate::cli::ConnectionType::Ssh => "ssh",
        };
        extra
            .entry("ansible_connection")
            .or_insert_with(|| Value::String(name.into()));
    }
    RunOptions {
        forks: c.forks as usize,
        check: c.check,
        diff: c.diff,
        extra_vars: extra,
        become_: c.become_,
        become_user: c.become_user.clone(),
        limit: c.limit.clone(),
        task_timeout: c.task_timeout,
        ..Default::default()
    }
}

fn reporter(c: &CommonArgs) -> Box<dyn Reporter> {
    match c.output {
        Output::Json => Box::new(Json::new(std::io::stdout())),
        Output::Human => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            Box::new(Human::new(std::io::stdout(), color, c.verbose))
        }
    }
}

/// The next Ctrl-C or SIGTERM.
async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) -> bool {
    match term {
        Some(t) => tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            r = t.recv() => r.is_some(),
        },
        None => tokio::signal::ctrl_c().await.is_ok(),
    }
}

/// Ctrl-C: the first stops new tasks and ends running commands (see
/// [`crate::interrupt`]), the second exits at once.
fn watch_interrupts() {
    tokio::spawn(async move {
        // SIGTERM (a service manager, `kill`) is taken as Ctrl-C: the mail
        // copies in flight end cleanly and the ledger is written.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        if next_signal(&mut term).await {
            crate::interrupt::request();
            crate::errln!("\n[mailrun] interrupted: no new tasks start; running commands are being stopped (Ctrl-C again to exit now)");
            if next_signal(&mut term).await {
                crate::errln!("[mailrun] interrupted twice: exiting now");
                std::process::exit(exit::INTERRUPTED);
            }
        }
    });
}

async fn playbooks(a: PlaybookArgs) -> Result<i32> {
    if a.playbooks.is_empty() {
        return Err(Error::Options(
            "no playbook given: mailrun PLAYBOOK… (see --help)".into(),
        ));
    }
    for p in &a.playbooks {
        if !p.is_file() {
            return Err(Error::Other(format!(
                "the playbook: {} could not be found",
                p.display()
            )));
        }
    }
    let extra = extra_vars(&a.common.extra_vars)?;
    let book = playbook::load(
        &a.playbooks,
        &LoadOptions {
            extra_vars: extra.clone(),
        },
    )?;
    if a.syntax_check {
        for p in &a.playbooks {
            crate::outln!("\nplaybook: {}", p.display());
        }
        return Ok(exit::OK);
    }
    let mut inv = load_inventory(&a.common.inventory)?;
    let mut opts = run_options(&a.common, extra);
    opts.tags = a.tags.clone();
    opts.skip_tags = a.skip_tags.clone();
    opts.start_at_task = a.start_at_task.clone();
    opts.playbook_dir = a.playbooks.first().and_then(|p| p.parent()).map(|p| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    });
    if let Some(dir) = &opts.playbook_dir {
        inv.load_playbook_vars(dir)?;
    }
    let plan = engine::plan(&book, &inv, &opts)?;
    if a.list_hosts || a.list_tasks {
        print_lists(&book, &plan, &a);
        return Ok(exit::OK);
    }
    if a.graph {
        let tg = engine::graph::build(&book, &plan.plays);
        crate::out!("{}", engine::graph::to_dot(&book, &tg));
        return Ok(exit::OK);
    }
    execute(book, &inv, plan, opts, &a.common).await
}

fn print_lists(book: &Playbook, plan: &engine::Plan, a: &PlaybookArgs) {
    for w in &plan.warnings {
        crate::errln!("[WARNING]: {w}");
    }
    let mut top: Option<usize> = None;
    let mut number = 0;
    for (pi, play) in book.plays.iter().enumerate() {
        let pp = &plan.plays[pi];
        if top != Some(play.top) {
            let path = book
                .paths
                .get(play.top)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            crate::outln!("\nplaybook: {path}");
            top = Some(play.top);
            number = 0;
        }
        number += 1;
        let tags = |own: &[String]| {
            let mut all: Vec<&str> = own.iter().chain(&play.tags).map(String::as_str).collect();
            all.sort_unstable();
            all.dedup();
            all.join(", ")
        };
        crate::outln!(
            "\n  play #{number} ({}): {}\tTAGS: [{}]",
            play.hosts,
            play.name,
            tags(&[])
        );
        if a.list_hosts {
            crate::outln!("    pattern: ['{}']", play.hosts);
            crate::outln!("    hosts ({}):", pp.hosts.len());
            for h in &pp.hosts {
                crate::outln!("      {h}");
            }
        }
        if a.list_tasks {
            crate::outln!("    tasks:");
            for &ti in &pp.tasks {
                let t = &play.tasks[ti];
                let id =
                    t.id.as_ref()
                        .map(|i| format!("\tID: {i}"))
                        .unwrap_or_default();
                crate::outln!("      {}\tTAGS: [{}]{id}", t.name, tags(&t.tags));
            }
        }
    }
}

async fn adhoc(mut a: AdhocArgs) -> Result<i32> {
    // Ad hoc runs are for reading results: show them as `-v` does.
    a.common.verbose = a.common.verbose.max(1);
    let extra = extra_vars(&a.common.extra_vars)?;
    let Some(module) = modules::get(&a.module) else {
        let help = crate::suggest::did_you_mean(&a.module, modules::names())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        if let Some(why) = crate::plugin::not_taken(&a.module) {
            return Err(Error::Parse(format!(
                "unknown module '{}': {why}",
                a.module
            )));
        }
        return Err(Error::Parse(format!("unknown module '{}'{help}", a.module)));
    };
    if let Some(e) = module.unusable() {
        return Err(Error::Parse(e.msg));
    }
    let doc = module.doc();
    let trimmed = a.args.trim_start();
    // YAML text (`name: x` lines) counts as arguments only when every key
    // is one of the module's arguments (`echo a: b` stays a command).
    let yaml_args = || match crate::yaml::parse(&a.args, Path::new("-a")).map(|n| n.to_json()) {
        Ok(Value::Object(m))
            if !m.is_empty() && m.keys().all(|k| doc.args.iter().any(|s| s.name == k)) =>
        {
            Some(m)
        }
        _ => None,
    };
    let args = if trimmed.starts_with('{') {
        match crate::yaml::parse(&a.args, Path::new("-a")).map(|n| n.to_json()) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Error::Parse("-a: expected a mapping of arguments".into())),
            Err(e) => return Err(Error::Source(Box::new(e))),
        }
    } else if let Some(m) = (!a.args.contains('=')).then(yaml_args).flatten() {
        m
    } else {
        modules::args::parse_kv_module(&a.module, &doc, &a.args)
            .map_err(|e| Error::Parse(format!("-a: {}: {e}", a.module)))?
    };
    if let Err(e) = module.check_args(&args) {
        let help = e.help.map(|h| format!(" ({h})")).unwrap_or_default();
        return Err(Error::Parse(format!("{}{help}", e.msg)));
    }
    let task = playbook::Task {
        name: a.module.clone(),
        named: false,
        module: a.module.clone(),
        args,
        loop_var: "item".into(),
        delay: 5.0,
        mentions_hostvars: a.args.contains("hostvars"),
        mentions_groups: crate::playbook::mentions_play_world(&a.args),
        source: a.args.clone(),
        ..Default::default()
    };
    let play = playbook::Play {
        name: format!("Ad hoc: {} on {}", a.module, a.pattern),
        hosts: a.pattern.clone(),
        tasks: vec![task],
        dir: PathBuf::from("."),
        ..Default::default()
    };
    let book = Playbook {
        paths: Vec::new(),
        plays: vec![play],
    };
    let inv = load_inventory(&a.common.inventory)?;
    let opts = run_options(&a.common, extra);
    let plan = engine::plan(&book, &inv, &opts)?;
    execute(book, &inv, plan, opts, &a.common).await
}

/// Runs a planned playbook with the reporter, prompter and Ctrl-C handling
/// the options ask for.
async fn execute(
    book: Playbook,
    inv: &Inventory,
    plan: engine::Plan,
    mut opts: RunOptions,
    c: &CommonArgs,
) -> Result<i32> {
    opts.ssh = Some(ssh_pool(c)?);
    let prompter = Arc::new(TerminalPrompter::new(c.yes));
    watch_interrupts();
    Ok(engine::run(Arc::new(book), inv, plan, opts, reporter(c), prompter).await)
}

/// The SSH pool of the run. Passwords asked for with `-k`/`-K` are read
/// here, once, before any host is contacted.
fn ssh_pool(c: &CommonArgs) -> Result<Arc<crate::ssh::Pool>> {
    use crate::ssh::config::SshOptions;
    if let Some(key) = &c.private_key {
        if !key.is_file() {
            return Err(Error::Options(format!(
                "--private-key {}: no such file",
                key.display()
            )));
        }
    }
    let ask = |what: &str| -> Result<String> {
        rpassword::prompt_password(format!("{what}: "))
            .map_err(|e| Error::Options(format!("cannot read the {what} from the terminal: {e}")))
    };
    let password = if c.ask_pass {
        Some(ask("SSH password")?)
    } else {
        None
    };
    let become_password = if c.ask_become_pass {
        let p = ask("BECOME password")?;
        Some(p)
    } else {
        None
    };
    let opts = SshOptions {
        user: c.user.clone(),
        private_key: c.private_key.clone(),
        password,
        become_password,
        host_key_checking: crate::ssh::policy_from_cli(c.host_key_checking),
        ..Default::default()
    };
    crate::ssh::Pool::new(opts).map_err(|e| Error::Options(format!("ssh config: {e}")))
}

/// A description's first sentence: `mailrun modules` shows one line each.
fn first_sentence(text: &str) -> &str {
    match text.find(". ") {
        Some(i) => &text[..=i],
        None => text,
    }
}
