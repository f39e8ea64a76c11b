//! A small builder for running the `mailrun` binary on files in a temp dir.
#![allow(dead_code)]

pub mod lab;
pub mod mail;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// `--output json` lines as values.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    /// host_result events of a task.
    pub fn results(&self, task: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "host_result" && e["task"] == task && e["diff"].is_null())
            .collect()
    }
    pub fn status(&self, task: &str, host: &str) -> String {
        self.results(task)
            .iter()
            .rfind(|e| e["host"] == host && e["item"].is_null())
            .map(|e| e["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| "none".into())
    }
    pub fn recap(&self) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "recap")
            .unwrap_or(Value::Null)
    }
    pub fn changed(&self, host: &str) -> u64 {
        self.recap()["hosts"][host]["changed"]
            .as_u64()
            .unwrap_or(u64::MAX)
    }
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Project {
    pub fn new() -> Self {
        let p = Project {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        p.file("hosts.ini", "[local]\nlocalhost ansible_connection=local\n[pair]\nalpha ansible_connection=local\nbeta ansible_connection=local\n");
        p
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }
    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(name)).ok()
    }
    pub fn exists(&self, name: &str) -> bool {
        self.dir.path().join(name).exists()
    }
    /// Runs mailrun in the project dir with `-e root=<dir>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let root = format!("root={}", self.dir.path().display());
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-e", &root]);
        self.run_raw(&all)
    }
    pub fn run_raw(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }
    /// Runs mailrun with extra environment variables (e.g. HOME).
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_mailrun"))
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("MAILRUN_INVENTORY")
            .env_remove("SSH_AUTH_SOCK")
            .envs(env.iter().copied())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run mailrun");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Runs a playbook file with JSON output.
    pub fn play(&self, book: &str, extra: &[&str]) -> Run {
        let mut args = vec![book, "-i", "hosts.ini", "--output", "json"];
        args.extend(extra);
        self.run(&args)
    }
}
