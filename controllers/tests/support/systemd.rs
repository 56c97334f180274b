//! An independent reading of unit-file text, written from systemd's manual
//! pages only (systemd.syntax(7), systemd.service(5) "Command lines",
//! systemd.unit(5) "Specifiers"). It deliberately shares no code with the
//! library's quoting: it is the oracle the render properties check against.
//!
//! Besides the options and the argv of every `Exec*=` command, it reports
//! everything a value should never cause: an unescaped `%` specifier, a `$`
//! substitution other than a `${NAME}` reference, a command separator, a
//! comment line inside a continued value, and any syntax that systemd might
//! read differently from us. A `${NAME}` reference (NAME a shell
//! identifier) is the one substitution Kaylee means to write; in an argv
//! it appears as [`reference`]`(NAME)`, which no value can spell (values
//! never hold NUL).

/// systemd's whitespace: words and lines are split and stripped on these.
const WS: &[char] = &[' ', '\t', '\n', '\r'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not valid unit-file or command-line syntax.
    Syntax,
    /// Valid, but readers may disagree (bare CR, `\` then blanks at a line end…).
    Ambiguous,
    /// `#`/`;` line inside a continued value: silently dropped by systemd.
    CommentInValue,
    /// `%X` other than `%%`: would be replaced by a specifier's expansion.
    Specifier,
    /// `$` other than `$$`: would be an environment substitution.
    Variable,
    /// A lone `;`: ends one command and starts another.
    Separator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub kind: Kind,
    pub detail: String,
}

/// One command of an `Exec*=` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Leading `-@+!:` characters of the first word (`-` = failure ignored).
    pub prefixes: String,
    /// The argv the process receives, after specifier and `$` expansion.
    pub argv: Vec<String>,
    /// The same words before `$` substitution, which systemd does at exec
    /// time from the unit's environment (`$$` still doubled here).
    pub words: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// First physical line (1-based) of the option.
    pub line: usize,
    pub section: String,
    pub key: String,
    /// The logical value: continuations joined, outer whitespace stripped.
    pub value: String,
    /// For other options, the value after specifier expansion.
    pub expanded: String,
    /// For command-line options (`Exec…=`), the commands; empty otherwise.
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, Default)]
pub struct UnitFile {
    pub options: Vec<Opt>,
    pub problems: Vec<Problem>,
}

impl UnitFile {
    /// `(section, key)` of every option, in order.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.options
            .iter()
            .map(|o| (o.section.clone(), o.key.clone()))
            .collect()
    }

    /// Every option named `key` in `section`.
    pub fn get<'a>(&'a self, section: &'a str, key: &'a str) -> impl Iterator<Item = &'a Opt> {
        self.options
            .iter()
            .filter(move |o| o.section == section && o.key == key)
    }
}

pub fn parse(text: &str) -> UnitFile {
    let mut unit = UnitFile::default();
    let p = &mut unit.problems;
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_control() && c != '\n' {
            // CR may end a line for some readers, NUL ends a C string, tab
            // and the other controls should have been escaped.
            let kind = if c == '\0' {
                Kind::Syntax
            } else {
                Kind::Ambiguous
            };
            push(
                p,
                0,
                kind,
                format!("raw control character {c:?} at char {i}"),
            );
        }
    }
    let mut section: Option<String> = None;
    for (line, logical) in logical_lines(text, p) {
        let l = logical.trim_matches(WS);
        if l.starts_with('[') {
            match l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                Some(name) if !name.is_empty() && !name.contains(['[', ']']) => {
                    section = Some(name.to_string());
                }
                _ => push(p, line, Kind::Syntax, format!("bad section header {l:?}")),
            }
            continue;
        }
        let Some(current) = section.clone() else {
            push(p, line, Kind::Syntax, "assignment outside of a section");
            continue;
        };
        let Some((key, value)) = l.split_once('=') else {
            push(p, line, Kind::Syntax, format!("missing '=' in {l:?}"));
            continue;
        };
        let key = key.trim_matches(WS).to_string();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            push(p, line, Kind::Syntax, format!("bad key {key:?}"));
        }
        let value = value.trim_matches(WS).to_string();
        let (expanded, commands) = if key.starts_with("Exec") {
            (value.clone(), command_line(&value, line, p))
        } else {
            (expand_specifiers(&value, line, p), Vec::new())
        };
        unit.options.push(Opt {
            line,
            section: current,
            key,
            value,
            expanded,
            commands,
        });
    }
    unit
}

fn push(p: &mut Vec<Problem>, line: usize, kind: Kind, detail: impl Into<String>) {
    let detail = detail.into();
    p.push(Problem { line, kind, detail });
}

/// systemd.syntax(7): blank lines and lines starting with `#` or `;` are
/// ignored; a line ending in a backslash is joined with the next one, the
/// backslash replaced by a space.
fn logical_lines(text: &str, p: &mut Vec<Problem>) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let stripped = raw.trim_matches(WS);
        let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
        if pending.is_some() && is_comment {
            push(p, n, Kind::CommentInValue, format!("{stripped:?}"));
            continue;
        }
        if pending.is_none() && (stripped.is_empty() || is_comment) {
            continue;
        }
        let continues = raw.ends_with('\\');
        if !continues && stripped.ends_with('\\') {
            push(p, n, Kind::Ambiguous, "backslash followed by blanks");
        }
        if raw.ends_with("\\\\") {
            push(p, n, Kind::Ambiguous, "line ends in an escaped backslash");
        }
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        if continues {
            acc.push_str(&raw[..raw.len() - 1]);
            acc.push(' ');
            pending = Some((start, acc));
        } else {
            acc.push_str(raw);
            out.push((start, acc));
        }
    }
    if let Some((start, acc)) = pending {
        push(p, start, Kind::Ambiguous, "file ends inside a continuation");
        out.push((start, acc));
    }
    out
}

/// systemd.service(5) "Command lines": words as in systemd.syntax(7)
/// "Quoting", a lone `;` between commands, prefixes on the first word, then
/// specifiers (load time) and `$` substitution (exec time) in every word.
fn command_line(value: &str, line: usize, p: &mut Vec<Problem>) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let chars: Vec<char> = value.chars().collect();
    let mut i = 0;
    loop {
        while i < chars.len() && WS.contains(&chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        let word = read_word(&chars, &mut i, line, p);
        let raw: String = chars[start..i].iter().collect();
        // A lone `;` separates commands; so does a first word that unquotes
        // to `;` (the manual only promises `\;` to be literal after it).
        if raw == ";" || (words.is_empty() && word == ";") {
            push(p, line, Kind::Separator, format!("{raw:?}"));
            commands.push(finish(std::mem::take(&mut words), line, p));
            continue;
        }
        words.push(word);
    }
    if !words.is_empty() || commands.is_empty() {
        commands.push(finish(words, line, p));
    }
    commands
}

fn finish(mut words: Vec<String>, line: usize, p: &mut Vec<Problem>) -> Command {
    let mut prefixes = String::new();
    if let Some(first) = words.first_mut() {
        let rest = first.trim_start_matches(['-', '@', '+', '!', ':']);
        prefixes = first[..first.len() - rest.len()].to_string();
        *first = rest.to_string();
        if first.is_empty() {
            push(p, line, Kind::Syntax, "command is only prefixes");
        }
    } else {
        push(p, line, Kind::Syntax, "empty command");
    }
    let words: Vec<String> = words
        .iter()
        .map(|w| expand_specifiers(w, line, p))
        .collect();
    let argv = words.iter().map(|w| expand_variables(w, line, p)).collect();
    Command {
        prefixes,
        argv,
        words,
    }
}

/// One word starting at `chars[*i]`: either wholly quoted (`"…"` or `'…'`,
/// the closing quote followed by whitespace or the end) or unquoted; C-style
/// escapes apply in both. Returns the unescaped text.
fn read_word(chars: &[char], i: &mut usize, line: usize, p: &mut Vec<Problem>) -> String {
    let mut bytes = Vec::new();
    let quote = match chars[*i] {
        q @ ('"' | '\'') => {
            *i += 1;
            Some(q)
        }
        _ => None,
    };
    loop {
        let Some(&c) = chars.get(*i) else {
            if let Some(q) = quote {
                push(p, line, Kind::Syntax, format!("unterminated {q} quote"));
            }
            break;
        };
        *i += 1;
        match (quote, c) {
            (Some(q), c) if c == q => {
                if chars.get(*i).is_some_and(|n| !WS.contains(n)) {
                    push(p, line, Kind::Syntax, "text right after a closing quote");
                }
                break;
            }
            (None, c) if WS.contains(&c) => {
                *i -= 1;
                break;
            }
            (None, '"' | '\'') => {
                push(p, line, Kind::Syntax, "quote inside an unquoted word");
                bytes.push(c as u8);
            }
            (_, '\\') => unescape(chars, i, &mut bytes, line, p),
            (_, c) => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    String::from_utf8(bytes).unwrap_or_else(|e| {
        push(
            p,
            line,
            Kind::Syntax,
            format!("escapes make invalid UTF-8: {e}"),
        );
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    })
}

/// The escape after a backslash (systemd.syntax(7), table "Supported escapes").
fn unescape(chars: &[char], i: &mut usize, out: &mut Vec<u8>, line: usize, p: &mut Vec<Problem>) {
    let Some(&c) = chars.get(*i) else {
        push(p, line, Kind::Syntax, "backslash at the end of the value");
        return;
    };
    *i += 1;
    let simple = match c {
        'a' => Some(0x07),
        'b' => Some(0x08),
        'f' => Some(0x0c),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(0x0b),
        '\\' => Some(b'\\'),
        '"' => Some(b'"'),
        '\'' => Some(b'\''),
        's' => Some(b' '),
        // systemd.service(5): `\;` is a literal semicolon in command lines.
        ';' => Some(b';'),
        _ => None,
    };
    if let Some(b) = simple {
        out.push(b);
        return;
    }
    let (digits, radix) = match c {
        'x' => (2, 16),
        'u' => (4, 16),
        'U' => (8, 16),
        '0'..='7' => {
            *i -= 1;
            (3, 8)
        }
        _ => {
            push(p, line, Kind::Syntax, format!("unknown escape \\{c}"));
            return;
        }
    };
    let text: String = chars.iter().skip(*i).take(digits).collect();
    let well_formed = text.chars().count() == digits && text.chars().all(|d| d.is_digit(radix));
    let code = well_formed
        .then(|| u32::from_str_radix(&text, radix).ok())
        .flatten();
    *i += text.chars().count();
    match (c, code) {
        (_, None) => push(p, line, Kind::Syntax, format!("bad escape \\{c}{text}")),
        (_, Some(0)) => push(p, line, Kind::Syntax, "escaped NUL"),
        // A byte, not a character: above ASCII it cannot be read one way.
        ('x' | '0'..='7', Some(n)) if n < 0x80 => out.push(n as u8),
        ('x' | '0'..='7', Some(n)) => {
            push(
                p,
                line,
                Kind::Ambiguous,
                format!("byte escape {n:#x} above ASCII"),
            );
        }
        (_, Some(n)) => match char::from_u32(n) {
            Some(ch) => out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
            None => push(p, line, Kind::Syntax, format!("bad code point {n:#x}")),
        },
    }
}

/// systemd.unit(5): `%%` is a literal `%`; any other `%X` is a specifier.
fn expand_specifiers(s: &str, line: usize, p: &mut Vec<Problem>) -> String {
    expand(s, '%', line, Kind::Specifier, p)
}

/// What a `${NAME}` reference becomes in an argv here: systemd puts the
/// variable's value there, as part of the one word.
pub fn reference(name: &str) -> String {
    format!("\0{name}\0")
}

/// systemd.service(5): `$$` is a literal `$`; `${NAME}` is replaced by the
/// variable's value within its word, `$NAME` as a word of its own by the
/// value split at whitespace. A `${NAME}` with NAME a shell identifier
/// becomes [`reference`]; any other `$` is reported: never intended.
fn expand_variables(s: &str, line: usize, p: &mut Vec<Problem>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let name = after.strip_prefix('{').and_then(|b| {
            let end = b.find('}')?;
            let name = &b[..end];
            let mut chars = name.chars();
            let first = chars.next()?;
            let ident = (first.is_ascii_alphabetic() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            ident.then_some(name)
        });
        match name {
            Some(name) => {
                out.push_str(&reference(name));
                rest = &after[name.len() + 2..];
            }
            None => {
                let shown: String = after.chars().take(8).collect();
                push(p, line, Kind::Variable, format!("${shown}"));
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn expand(s: &str, sigil: char, line: usize, kind: Kind, p: &mut Vec<Problem>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == sigil {
            if it.peek() == Some(&sigil) {
                it.next();
            } else {
                let after: String = it.clone().take(8).collect();
                push(p, line, kind, format!("{sigil}{after}"));
            }
        }
        out.push(c);
    }
    out
}
