//! Redis's glob patterns (`SCAN ... MATCH`, `CONFIG GET`): `*` any run of
//! bytes, `?` one byte, `[abc]`, `[a-z]` and `[^...]` one byte of (or not
//! of) a class, `\x` the byte `x` itself.
//!
//! The pattern comes from a client, so the matcher must not be a way to
//! burn a core: it backtracks only to the last `*` (the classic greedy
//! wildcard algorithm), which is `O(pattern × text)` in the worst case,
//! where the naive recursive matcher is exponential in the number of
//! stars.

/// One element of a pattern, matching one byte (or, for `Star`, any run).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Byte(u8),
    /// A class: its ranges (inclusive) and whether it is negated.
    Class {
        ranges: Vec<(u8, u8)>,
        negated: bool,
    },
}

fn tokens(pattern: &[u8]) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut at = 0;
    while at < pattern.len() {
        let token = match pattern[at] {
            b'*' => Token::Star,
            b'?' => Token::Any,
            b'\\' if at + 1 < pattern.len() => {
                at += 1;
                Token::Byte(pattern[at])
            }
            b'[' => {
                let (class, next) = class(pattern, at + 1);
                at = next;
                out.push(class);
                continue;
            }
            byte => Token::Byte(byte),
        };
        out.push(token);
        at += 1;
    }
    out
}

/// The class starting after its `[` at `at`; returns it and where the
/// pattern goes on. An unclosed class runs to the end, as in Redis.
fn class(pattern: &[u8], mut at: usize) -> (Token, usize) {
    let negated = pattern.get(at) == Some(&b'^');
    if negated {
        at += 1;
    }
    let mut ranges = Vec::new();
    while at < pattern.len() && pattern[at] != b']' {
        let mut low = pattern[at];
        if low == b'\\' && at + 1 < pattern.len() {
            at += 1;
            low = pattern[at];
        }
        if pattern.get(at + 1) == Some(&b'-') && at + 2 < pattern.len() && pattern[at + 2] != b']' {
            let high = pattern[at + 2];
            ranges.push((low.min(high), low.max(high)));
            at += 3;
        } else {
            ranges.push((low, low));
            at += 1;
        }
    }
    (Token::Class { ranges, negated }, at + 1)
}

fn single(token: &Token, byte: u8, fold_case: bool) -> bool {
    let same = |a: u8, b: u8| if fold_case { a.eq_ignore_ascii_case(&b) } else { a == b };
    match token {
        Token::Star => unreachable!("a star matches runs"),
        Token::Any => true,
        Token::Byte(expected) => same(*expected, byte),
        Token::Class { ranges, negated } => {
            let inside = ranges.iter().any(|&(low, high)| {
                (low..=high).contains(&byte)
                    || (fold_case
                        && ((low..=high).contains(&byte.to_ascii_lowercase())
                            || (low..=high).contains(&byte.to_ascii_uppercase())))
            });
            inside != *negated
        }
    }
}

/// Whether `text` matches `pattern` (ASCII case folded when `fold_case`).
pub fn matches(pattern: &[u8], text: &[u8], fold_case: bool) -> bool {
    let tokens = tokens(pattern);
    let (mut t, mut p) = (0usize, 0usize);
    // Where the last star was, and the text position it has absorbed to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(token) if single(token, text[t], fold_case) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_at, absorbed)) => {
                    p = star_at + 1;
                    t = absorbed + 1;
                    star = Some((star_at, absorbed + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        matches(pattern.as_bytes(), text.as_bytes(), false)
    }

    #[test]
    fn stars_questions_classes_and_escapes_match_as_in_redis() {
        assert!(m("*", "") && m("*", "anything"));
        assert!(m("user:*", "user:42") && !m("user:*", "users:42"));
        assert!(m("h?llo", "hello") && m("h?llo", "hallo") && !m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("*a*b*c", "xxaxxbxxc") && !m("*a*b*c", "xxaxxcxxb"));
        assert!(!m("User:*", "user:1"), "MATCH is case-sensitive");
        assert!(matches(b"User:*", b"user:1", true), "CONFIG GET folds case");
        assert!(m("[", "") || !m("[", "x"), "an unclosed class does not panic");
        assert!(!m("a[", "ab"));
    }

    #[test]
    fn a_pattern_of_many_stars_is_not_exponential() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        // Pattern-times-text steps; a recursive matcher never finishes
        // this (the test run would hang and time out).
        assert!(!m(&pattern, &text));
    }
}
