//! Finds the elements of a top-level JSON array without decoding them, so that one
//! record with invalid UTF-8 can be reported and skipped instead of failing the file.

use std::ops::Range;

/// Where and why the array structure is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

fn fail(offset: usize, reason: impl Into<String>) -> SplitError {
    SplitError {
        offset,
        reason: reason.into(),
    }
}

fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// Byte ranges of the elements of the top-level JSON array in `bytes`.
///
/// Only the structure is checked (brackets, strings, commas); each element is
/// decoded later. A UTF-8 byte-order mark is skipped.
pub(crate) fn split_array(bytes: &[u8]) -> Result<Vec<Range<usize>>, SplitError> {
    let mut pos = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    pos = skip_whitespace(bytes, pos);
    match bytes.get(pos) {
        Some(b'[') => pos += 1,
        Some(_) => return Err(fail(pos, "expected a JSON array `[` of records")),
        None => return Err(fail(pos, "empty file, expected a JSON array of records")),
    }
    let mut ranges = Vec::new();
    pos = skip_whitespace(bytes, pos);
    if bytes.get(pos) == Some(&b']') {
        return finish(bytes, pos + 1, ranges);
    }
    loop {
        let start = skip_whitespace(bytes, pos);
        let end = scan_value(bytes, start)?;
        if end == start {
            return Err(fail(start, "expected a record"));
        }
        ranges.push(start..end);
        pos = skip_whitespace(bytes, end);
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => return finish(bytes, pos + 1, ranges),
            Some(other) => {
                return Err(fail(
                    pos,
                    format!(
                        "expected `,` or `]` after a record, found {:?}",
                        *other as char
                    ),
                ));
            }
            None => return Err(fail(pos, "file ends inside the array (missing `]`)")),
        }
    }
}

fn finish(
    bytes: &[u8],
    pos: usize,
    ranges: Vec<Range<usize>>,
) -> Result<Vec<Range<usize>>, SplitError> {
    let rest = skip_whitespace(bytes, pos);
    if rest != bytes.len() {
        return Err(fail(rest, "unexpected content after the closing `]`"));
    }
    Ok(ranges)
}

/// The end (exclusive) of the value starting at `start`: just after its closing
/// bracket or quote, or at the delimiter that ends a bare scalar.
fn scan_value(bytes: &[u8], start: usize) -> Result<usize, SplitError> {
    let mut open: Vec<u8> = Vec::new();
    let mut pos = start;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => {
                pos = scan_string(bytes, pos)?;
                if open.is_empty() {
                    return Ok(pos);
                }
                continue;
            }
            b'{' => open.push(b'}'),
            b'[' => open.push(b']'),
            close @ (b'}' | b']') if !open.is_empty() => {
                let expected = open.pop().unwrap_or(close);
                if close != expected {
                    return Err(fail(
                        pos,
                        format!(
                            "found `{}` where `{}` was expected",
                            close as char, expected as char
                        ),
                    ));
                }
                if open.is_empty() {
                    return Ok(pos + 1);
                }
            }
            b'}' => return Err(fail(pos, "unbalanced `}`")),
            b']' | b',' | b' ' | b'\t' | b'\n' | b'\r' if open.is_empty() => return Ok(pos),
            _ => {}
        }
        pos += 1;
    }
    if open.is_empty() {
        Err(fail(pos, "file ends inside the array (missing `]`)"))
    } else {
        Err(fail(start, "record is cut short (unclosed `{` or `[`)"))
    }
}

/// The position just after the string starting with the quote at `start`.
fn scan_string(bytes: &[u8], start: usize) -> Result<usize, SplitError> {
    let mut pos = start + 1;
    while pos < bytes.len() {
        match bytes[pos] {
            b'\\' => pos += 2,
            b'"' => return Ok(pos + 1),
            _ => pos += 1,
        }
    }
    Err(fail(start, "unterminated string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        split_array(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    #[test]
    fn splits_records_with_nested_brackets_and_strings() {
        let text = r#" [ {"a": [1, "],}"]} , {"b": "x\"]"}, 3 ] "#;
        assert_eq!(
            pieces(text),
            vec![r#"{"a": [1, "],}"]}"#, r#"{"b": "x\"]"}"#, "3"]
        );
    }

    #[test]
    fn empty_array() {
        assert!(pieces("[]").is_empty());
        assert!(pieces(" [ \n ] ").is_empty());
    }

    #[test]
    fn broken_structure_is_an_error() {
        for (text, what) in [
            ("", "empty file"),
            ("{}", "expected a JSON array"),
            ("[{}", "missing `]`"),
            ("[{\"a\": 1]", "found `]` where `}` was expected"),
            ("[{\"a\": [1}]", "found `}` where `]` was expected"),
            ("[{\"a\": [1]", "cut short"),
            ("[{\"a\": \"x}]", "unterminated string"),
            ("[{}] x", "after the closing"),
            ("[{}, ]", "expected a record"),
            ("[{} {}]", "expected `,` or `]`"),
            ("[1}]", "unbalanced"),
        ] {
            let err = split_array(text.as_bytes()).unwrap_err();
            assert!(err.reason.contains(what), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn invalid_utf8_inside_a_string_does_not_break_splitting() {
        let mut bytes = b"[{\"id\": \"a\"}, {\"id\": \"b".to_vec();
        bytes.push(0xFF);
        bytes.extend_from_slice(b"\"}]");
        assert_eq!(split_array(&bytes).unwrap().len(), 2);
    }
}
