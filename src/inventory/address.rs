//! Host addresses as Ansible reads them: `host:port`, `[v6]:port`, and
//! `[a:b(:step)]` ranges (`parse_address` and `expand_hostname_range` in
//! ansible-core).

use regex::Regex;
use std::sync::OnceLock;

const NUMERIC_RANGE: &str = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]";
const HEX_RANGE: &str = r"\[(?:[0-9a-fA-F]+:[0-9a-fA-F]+)(?::[0-9]+)?\]";
const ALNUM_RANGE: &str = r"\[(?:[a-zA-Z]:[a-zA-Z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]";

struct Patterns {
    bracketed_hostport: Regex,
    hostport: Regex,
    ipv4: Regex,
    ipv6: Regex,
    hostname: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let i4 = format!(r"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{NUMERIC_RANGE})");
        let c = format!(r"(?:[0-9a-fA-F]{{1,4}}|{HEX_RANGE})");
        let v4 = format!(r"(?:{c}\.){{3}}{c}");
        let ipv6 = [
            format!(r"(?:{c}:){{7}}{c}"),
            format!(r"(?:{c}:){{1,6}}:"),
            format!(r"(?:{c}:)(?::{c}){{1,6}}"),
            format!(r"(?:{c}:){{2}}(?::{c}){{1,5}}"),
            format!(r"(?:{c}:){{3}}(?::{c}){{1,4}}"),
            format!(r"(?:{c}:){{4}}(?::{c}){{1,3}}"),
            format!(r"(?:{c}:){{5}}(?::{c}){{1,2}}"),
            format!(r"(?:{c}:){{6}}(?::{c})"),
            format!(r":(?::{c}){{1,6}}"),
            format!(r"{c}?::"),
            format!(r"(?:0:){{6}}{v4}"),
            format!(r"::(?:[fF]{{4}}:)?{v4}"),
            format!(r"(?:0:){{5}}[fF]{{4}}:{v4}"),
        ]
        .join("|");
        // Python compiles these with re.I: the classes spell both cases.
        // Python's label ends with a negative lookbehind `(?<![_-])`, which
        // the regex crate lacks: spell it as "the last piece is not _ or -".
        let r = ALNUM_RANGE;
        let last = format!(r"(?:[^\W_]|{r})");
        let label = format!(r"(?:{last}|(?:\w|{r})(?:[\w-]|{r})*{last})");
        let build = |s: &str| Regex::new(s).expect("static regex");
        Patterns {
            bracketed_hostport: build(r"^\[(.+)\]:([0-9]+)$"),
            hostport: build(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$"),
            ipv4: build(&format!(r"^(?:{i4}\.){{3}}{i4}$")),
            ipv6: build(&format!(r"^(?:{ipv6})$")),
            hostname: build(&format!(r"^{label}(?:\.{label})*$")),
        }
    })
}

/// `parse_address`: the host part and the port, or None when the text is
/// not a recognisable host (Ansible then keeps the text whole, no port).
pub(crate) fn parse_address(address: &str, allow_ranges: bool) -> Option<(String, Option<u64>)> {
    // The usual case without the patterns (compiling them costs more than
    // a small run): an ASCII host name or IPv4 address, no port, no range.
    if plain_hostname(address) {
        return Some((address.to_string(), None));
    }
    let p = patterns();
    let mut host = address.to_string();
    let mut port = None;
    for re in [&p.bracketed_hostport, &p.hostport] {
        if let Some(c) = re.captures(&host.clone()) {
            let h = c.get(1).map_or("", |m| m.as_str()).to_string();
            // Python's int() of a long digit string never fails; a port that
            // does not fit is not a port we can use anyway.
            port = Some(c.get(2).map_or("", |m| m.as_str()).parse::<u64>().ok()?);
            host = h;
        }
    }
    if !(p.ipv4.is_match(&host) || p.ipv6.is_match(&host) || p.hostname.is_match(&host)) {
        return None;
    }
    if !allow_ranges && host.contains('[') {
        return None;
    }
    Some((host, port))
}

/// What the `hostname` pattern accepts, for ASCII: dot-separated labels of
/// letters, digits, `_` and `-` that end in a letter or digit.
fn plain_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            b.last().is_some_and(|c| c.is_ascii_alphanumeric())
                && b[0] != b'-'
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        })
}

const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Python's int() on a range bound: optional sign, digits, single `_`s.
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Python slice of `LETTERS[beg..=end:step]`.
fn letter_slice(b: usize, e: usize, step: i64) -> Option<Vec<String>> {
    if step <= 0 {
        // A zero step is a ValueError; a negative one yields nothing here.
        return if step == 0 { None } else { Some(vec![]) };
    }
    let chars: Vec<char> = LETTERS.chars().collect();
    let stop = (e + 1).min(chars.len());
    Some(
        (b..stop)
            .step_by(usize::try_from(step).ok()?)
            .filter_map(|i| chars.get(i).map(|c| c.to_string()))
            .collect(),
    )
}

/// Cap on the hosts one line may expand to, so `h[0:999999999]` cannot eat
/// the machine: a whole inventory holds no more.
fn max_expansion() -> usize {
    super::data::max_hosts()
}

/// `expand_hostname_range`: `db[01:03]x` → db01x db02x db03x (ranges may
/// repeat: the first is expanded, then the results again). `Err` carries
/// Ansible's message. Unlike Ansible, a numeric range that yields nothing
/// (`[3:1]`) is an error rather than zero hosts.
pub(crate) fn expand_hostname_range(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(line, &mut out)?;
    Ok(out)
}

fn expand_into(line: &str, out: &mut Vec<String>) -> Result<(), String> {
    if line.is_empty() {
        return Ok(());
    }
    let replaced = line.replacen('[', "|", 1).replacen(']', "|", 1);
    let parts: Vec<&str> = replaced.split('|').collect();
    let [head, nrange, tail] = parts[..] else {
        return Err(format!(
            "host range '{line}' is not of the form head[begin:end]tail"
        ));
    };
    let bounds: Vec<&str> = nrange.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err("host range must be begin:end or begin:end:step".into());
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step_s = bounds.get(2).copied().unwrap_or("1");
    if end.is_empty() {
        return Err("host range must specify end value".into());
    }
    let width = if beg.starts_with('0') && beg.len() > 1 {
        if beg.len() != end.len() {
            return Err("host range must specify equal-length begin and end formats".into());
        }
        Some(beg.len())
    } else {
        None
    };
    let fill = |s: String| match width {
        Some(w) if s.chars().count() < w => {
            // Python's zfill keeps a sign in front.
            let (sign, digits) = match s.strip_prefix('-') {
                Some(d) => ("-", d.to_string()),
                None => ("", s.clone()),
            };
            let pad = w.saturating_sub(s.chars().count());
            format!("{sign}{}{digits}", "0".repeat(pad))
        }
        _ => s,
    };
    let alpha = match (LETTERS.find(beg), LETTERS.find(end)) {
        (Some(b), Some(e)) => {
            if b > e {
                return Err("host range must have begin <= end".into());
            }
            py_int(step_s).and_then(|st| letter_slice(b, e, st))
        }
        _ => None,
    };
    let seq: Vec<String> = match alpha {
        Some(s) => s,
        None => {
            let (Some(b), Some(e), Some(st)) = (py_int(beg), py_int(end), py_int(step_s)) else {
                return Err(format!("host range [{nrange}] is not a valid range"));
            };
            if st == 0 {
                return Err("host range step must not be zero".into());
            }
            if (st > 0 && b > e) || (st < 0 && b <= e) {
                return Err(format!(
                    "host range [{nrange}] is empty: it must go from the smaller to the larger number"
                ));
            }
            let count = ((e as i128 + 1 - b as i128) / st as i128).unsigned_abs() as usize;
            if count.saturating_add(out.len()) > max_expansion() {
                return Err(format!("host range [{nrange}] expands to too many hosts"));
            }
            let mut v = Vec::new();
            let mut i = b as i128;
            while (st > 0 && i <= e as i128) || (st < 0 && i > e as i128 + 1) {
                v.push(i.to_string());
                i += st as i128;
            }
            v
        }
    };
    for s in seq {
        let name = format!("{head}{}{tail}", fill(s));
        if name.contains('[') {
            expand_into(&name, out)?;
        } else {
            if out.len() >= max_expansion() {
                return Err("host range expands to too many hosts".into());
            }
            out.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case<'a> = (&'a str, bool, Option<(&'a str, Option<u64>)>);

    #[test]
    fn the_plain_hostname_shortcut_agrees_with_the_pattern() {
        for s in [
            "a",
            "-a",
            "a-",
            "_a",
            "a_",
            "a..b",
            ".a",
            "a.",
            "10.0.0.1",
            "999.1.2.3",
            "x_y-z.example.org",
            "bh001",
            "a-b",
            "a--b",
            "1",
            "",
            "a b",
            "a:22",
            "ünï",
            "a.-b",
        ] {
            let regex = patterns().hostname.is_match(s);
            let plain = plain_hostname(s);
            assert!(
                !plain || regex,
                "{s:?}: shortcut says host, pattern does not"
            );
            if s.is_ascii() && !s.contains([':', '[', ']']) {
                assert_eq!(plain, regex, "{s:?}");
            }
        }
    }

    #[test]
    fn addresses() {
        let cases: &[Case] = &[
            ("host", false, Some(("host", None))),
            ("host:2222", false, Some(("host", Some(2222)))),
            ("10.0.0.1:22", false, Some(("10.0.0.1", Some(22)))),
            ("[::1]:22", false, Some(("::1", Some(22)))),
            ("fe80::1", false, Some(("fe80::1", None))),
            (
                "mx[01:03].example.jp",
                true,
                Some(("mx[01:03].example.jp", None)),
            ),
            ("mx[01:03].example.jp", false, None),
            ("bad_", false, None),
            ("a:b", false, None),
            ("héllo", false, Some(("héllo", None))),
        ];
        for (text, ranges, want) in cases {
            let got = parse_address(text, *ranges);
            let want = want.map(|(h, p)| (h.to_string(), p));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn ranges() {
        let cases: &[(&str, Result<&[&str], ()>)] = &[
            ("mx[01:03].jp", Ok(&["mx01.jp", "mx02.jp", "mx03.jp"])),
            ("db-[a:c]", Ok(&["db-a", "db-b", "db-c"])),
            ("web[1:10:3]", Ok(&["web1", "web4", "web7", "web10"])),
            ("r[1:2]-[a:b]", Ok(&["r1-a", "r1-b", "r2-a", "r2-b"])),
            ("[:1]x", Ok(&["0x", "1x"])),
            ("x[Y:b]", Err(())),
            ("mx[3:1]", Err(())),
            ("mx[1:]", Err(())),
            ("mx[01:3]", Err(())),
            ("mx[1]", Err(())),
            ("mx[1:2:0]", Err(())),
            ("mx[a:2]", Err(())),
            ("x]y[1:2]", Err(())),
            ("é[1:2]ü", Ok(&["é1ü", "é2ü"])),
        ];
        for (text, want) in cases {
            let got = expand_hostname_range(text);
            match want {
                Ok(w) => assert_eq!(
                    got.ok(),
                    Some(w.iter().map(|s| s.to_string()).collect()),
                    "{text}"
                ),
                Err(()) => assert!(got.is_err(), "{text}: {got:?}"),
            }
        }
    }
}
