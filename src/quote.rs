//! POSIX shell quoting and shell-words splitting: never `format!` a raw
//! string into a command line, quote it.
//!
//! [`quote`] leaves words made only of safe characters as they are and wraps
//! anything else in single quotes (a `'` inside becomes `'\''`), so the shell
//! sees exactly the original bytes. [`split`] is the inverse for the
//! `command` module: it splits a command line into words with shell quoting
//! rules, but without any expansion or operators.
//!
//! Quoting cannot stop a word that starts with `-` from being read as an
//! option by the program; put `--` before such arguments.

use std::borrow::Cow;

/// Characters that never need quoting in any POSIX shell position.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '-' | '_')
}

/// `s` as one shell word: unchanged when only safe characters, else single-quoted.
pub fn quote(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_safe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// The words quoted and joined by spaces: a command line that `sh -c` runs
/// with exactly these arguments.
pub fn join(args: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(a.as_ref()));
    }
    out
}

/// Splits a command line into words as a POSIX shell would, with quotes and
/// backslashes, but without expansions: `$x`, `>`, `|` and `;` are plain
/// text. An unterminated quote is an error.
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in: {s}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in: {s}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in: {s}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => {
                    in_word = true;
                    cur.push('\\');
                }
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_table() {
        let cases: &[(&str, &str)] = &[
            ("", "''"),
            ("abc", "abc"),
            ("/etc/dovecot/users", "/etc/dovecot/users"),
            ("a=b,c:d@e%f+g", "a=b,c:d@e%f+g"),
            // Quoting does not change how a program reads a leading dash.
            ("-rf", "-rf"),
            ("--", "--"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("'", "''\\'''"),
            ("$(rm -rf /)", "'$(rm -rf /)'"),
            ("`id`", "'`id`'"),
            ("$HOME", "'$HOME'"),
            ("a\nb", "'a\nb'"),
            ("a\"b", "'a\"b'"),
            ("*.conf", "'*.conf'"),
            ("~root", "'~root'"),
            ("a;b|c&d>e<f", "'a;b|c&d>e<f'"),
            ("é", "'é'"),
            ("\\", "'\\'"),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), *want, "quote({input:?})");
        }
    }

    #[test]
    fn join_quotes_each_word() {
        assert_eq!(
            join(&["echo", "a b", "", "it's"]),
            "echo 'a b' '' 'it'\\''s'"
        );
        let empty: [&str; 0] = [];
        assert_eq!(join(&empty), "");
    }

    #[test]
    fn split_table() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  echo   hi  ", &["echo", "hi"]),
            ("echo 'a b' \"c d\"", &["echo", "a b", "c d"]),
            ("echo a\\ b", &["echo", "a b"]),
            ("echo \"a \\\"q\\\" \\$x \\n\"", &["echo", "a \"q\" $x \\n"]),
            ("echo ''", &["echo", ""]),
            ("echo hi > /tmp/x", &["echo", "hi", ">", "/tmp/x"]),
            ("echo $(id)", &["echo", "$(id)"]),
            ("a'b'\"c\"d", &["abcd"]),
            ("a\nb", &["a", "b"]),
        ];
        for (input, want) in cases {
            let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
            assert_eq!(split(input), Ok(want), "split({input:?})");
        }
        assert!(split("echo 'oops").is_err());
        assert!(split("echo \"oops").is_err());
    }

    /// What `sh` makes of a joined line is the original words.
    #[test]
    fn join_round_trips_through_sh() {
        let words = ["a b", "it's", "$(id)", "", "x\ny", "-n", "\\", "\"q\""];
        let line = format!("printf '%s\\0' {}", join(&words));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output();
        let Ok(out) = out else { return };
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let mut want: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        want.push(String::new());
        assert_eq!(got, want);
        assert_eq!(
            split(&join(&words)).ok(),
            Some(want[..words.len()].to_vec())
        );
    }
}
