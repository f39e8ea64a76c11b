//! Shell completions and man pages, generated from the clap definition.

mod support;
use support::Project;

#[test]
fn completions_for_bash_zsh_and_fish_know_every_command_and_option() {
    let p = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = p.run_raw(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.all());
        for word in [
            "adhoc",
            "inventory",
            "modules",
            "doc",
            "--module-path",
            "--extra-vars",
            "--host-key-checking",
            "accept-new",
        ] {
            // fish writes long options as `-l module-path`.
            let word = if shell == "fish" {
                word.trim_start_matches('-')
            } else {
                word
            };
            assert!(r.stdout.contains(word), "{shell}: no {word}");
        }
    }
    // The bash script is valid bash and completes subcommands.
    let r = p.run_raw(&["completions", "bash"]);
    let script = p.file("mailrun.bash", &r.stdout);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(mailrun ad) COMP_CWORD=1 && _mailrun mailrun ad mailrun && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash");
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        words.lines().any(|w| w == "adhoc"),
        "{words}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = p.run_raw(&["completions", "tcsh"]);
    assert_eq!(r.code, 5, "{}", r.all());
}

#[test]
fn man_pages_describe_the_command_line() {
    let p = Project::new();
    let r = p.run_raw(&["man"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(".TH mailrun 1"), "{}", r.stdout);
    for word in ["\\-\\-module\\-path", "\\-\\-check", "adhoc", "Exit codes"] {
        assert!(r.stdout.contains(word), "no {word}");
    }
    let r = p.run_raw(&["man", "--out-dir", "man"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for page in [
        "mailrun.1",
        "mailrun-adhoc.1",
        "mailrun-doc.1",
        "mailrun-modules.1",
        "mailrun-inventory.1",
    ] {
        let text = p.read(&format!("man/{page}")).unwrap_or_default();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    assert!(p
        .read("man/mailrun-adhoc.1")
        .unwrap_or_default()
        .contains("\\-\\-module\\-name"));
}
