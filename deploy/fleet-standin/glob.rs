//! Glob matching: Go's `path.Match` (fleet's `Conflicts=`), and a plain
//! glob for `--fail-image`.
//!
//! `path.Match`: `*` is any run of characters but `/`, `?` one character
//! but `/`, `[…]` a class (`^` negates, `a-z` ranges, `\` escapes) and `\c`
//! is `c`. fleet treats a malformed pattern as matching nothing, and so
//! does [`path_match`].

/// Whether `name` matches `pattern` as Go's `path.Match` says.
pub fn path_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name).unwrap_or(false)
}

/// Whether `text` matches `pattern` where `*` is any run of characters
/// (`/` too) and `?` any one character; nothing else is special.
pub fn plain_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `None`: a malformed pattern.
fn matches(mut pattern: &[char], mut name: &[char]) -> Option<bool> {
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest unless it holds a `/`.
            return Some(!name.contains(&'/'));
        }
        // The chunk right here; a last chunk must use up the name.
        if let Some(t) = match_chunk(chunk, name)?
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        if star {
            // Or after skipping characters, never a `/`.
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'chunks;
                }
                i += 1;
            }
        }
        return Some(false);
    }
    Some(name.is_empty())
}

/// Leading stars, then the chunk up to the next star outside a class.
fn scan_chunk(pattern: &[char]) -> (bool, &[char], &[char]) {
    let mut p = pattern;
    let mut star = false;
    while p.first() == Some(&'*') {
        p = &p[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Matches one star-free chunk at the start of `s`: what is left of `s`,
/// `Some(None)` when it does not match, `None` for a malformed chunk.
fn match_chunk<'a>(mut chunk: &[char], mut s: &'a [char]) -> Option<Option<&'a [char]>> {
    while let Some(&c) = chunk.first() {
        match c {
            '[' => {
                let Some(&r) = s.first() else {
                    return Some(None);
                };
                s = &s[1..];
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&'-') {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    return Some(None);
                }
            }
            '?' => {
                match s.first() {
                    Some(&ch) if ch != '/' => s = &s[1..],
                    _ => return Some(None),
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if c == '\\' {
                    chunk = &chunk[1..];
                    *chunk.first()?
                } else {
                    c
                };
                if s.first() != Some(&literal) {
                    return Some(None);
                }
                s = &s[1..];
                chunk = &chunk[1..];
            }
        }
    }
    Some(Some(s))
}

/// One character of a class (maybe escaped), and what follows; `None`
/// when the class is malformed.
fn class_char(chunk: &[char]) -> Option<(char, &[char])> {
    let mut chunk = chunk;
    match chunk.first() {
        None | Some('-') | Some(']') => return None,
        Some('\\') => chunk = &chunk[1..],
        _ => {}
    }
    let c = *chunk.first()?;
    let rest = &chunk[1..];
    if rest.is_empty() {
        return None;
    }
    Some((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match_cases() {
        // Cases from Go's path/match_test.go.
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("*x", "xxx", true),
            // Malformed: no match.
            ("[]a]", "]", false),
            ("[-]", "-", false),
            ("[x-]", "x", false),
            ("\\", "a", false),
            ("[a-b-c]", "a", false),
            ("[", "a", false),
            ("a[", "a", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(path_match(pattern, name), want, "{pattern:?} {name:?}");
        }
    }

    #[test]
    fn kaylee_conflict_globs() {
        let group = "k:api:ac8555:01284d:*.service";
        assert!(path_match(group, "k:api:ac8555:01284d:2.service"));
        assert!(!path_match(group, "k:api:ac8555:ffffff:2.service"));
        assert!(path_match(
            "k:api:*.service",
            "k:api:ac8555:01284d:2.service"
        ));
        assert!(!path_match("k:api:*.service", "k:apix:1.service"));
    }

    #[test]
    fn plain_globs_cross_slashes() {
        assert!(plain_match("broken/*", "broken/app:latest"));
        assert!(plain_match("*absent*", "registry.example/absent:1"));
        assert!(plain_match("a?c", "abc"));
        assert!(!plain_match("busybox", "busybox:latest"));
        assert!(plain_match("busybox*", "busybox:latest"));
    }
}
