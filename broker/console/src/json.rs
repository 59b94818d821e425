//! JSON for the API, written and checked by hand: the broker's library
//! crates carry no serde_json (docs/architecture.md, invariant 4), and the
//! console's answers are small trees of strings and numbers.

use std::fmt::Write as _;

/// A JSON value to write.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// Integers only: offsets, counts, bytes, milliseconds.
    Int(i128),
    /// Rates and latencies; written with up to three decimals.
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// Keys in the order given.
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    /// An object of `fields`.
    pub(crate) fn object(fields: impl IntoIterator<Item = (&'static str, Json)>) -> Json {
        Json::Object(fields.into_iter().collect())
    }

    /// The text of this value.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) if f.is_finite() => {
                let _ = write!(out, "{}", (f * 1000.0).round() / 1000.0);
            }
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => write_str(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::Int(n.into())
    }
}

impl From<u32> for Json {
    fn from(n: u32) -> Json {
        Json::Int(n.into())
    }
}

impl From<i64> for Json {
    fn from(n: i64) -> Json {
        Json::Int(n.into())
    }
}

impl From<usize> for Json {
    fn from(n: usize) -> Json {
        Json::Int(n as i128)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Json {
        v.map_or(Json::Null, Into::into)
    }
}

/// Writes `s` as a JSON string. `<`, `>` and `&` are escaped too, so that
/// an answer is inert even if something renders it as HTML.
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Deepest nesting [`is_json_document`] accepts.
const MAX_DEPTH: usize = 64;

/// Whether `text` is one JSON object or array (what the record browser
/// shows as JSON), nested at most [`MAX_DEPTH`] deep.
pub(crate) fn is_json_document(text: &str) -> bool {
    let mut p = Parser { bytes: text.as_bytes(), at: 0 };
    p.space();
    if !matches!(p.peek(), Some(b'{' | b'[')) {
        return false;
    }
    if !p.value(0) {
        return false;
    }
    p.space();
    p.at == p.bytes.len()
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.space();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                self.space();
                if self.eat(b'}') {
                    return true;
                }
                loop {
                    self.space();
                    if !self.string() {
                        return false;
                    }
                    self.space();
                    if !self.eat(b':') || !self.value(depth + 1) {
                        return false;
                    }
                    self.space();
                    if self.eat(b'}') {
                        return true;
                    }
                    if !self.eat(b',') {
                        return false;
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                self.space();
                if self.eat(b']') {
                    return true;
                }
                loop {
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.space();
                    if self.eat(b']') {
                        return true;
                    }
                    if !self.eat(b',') {
                        return false;
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn string(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                    Some(b'u') => {
                        let hex = self.bytes.get(self.at + 1..self.at + 5);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return false;
                        }
                        self.at += 5;
                    }
                    _ => return false,
                },
                0..0x20 => return false,
                _ => {}
            }
        }
        false
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        let digits = |p: &mut Self| {
            let start = p.at;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.at += 1;
            }
            p.at > start
        };
        if !self.eat(b'0') && !digits(self) {
            return false;
        }
        if self.eat(b'.') && !digits(self) {
            return false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !digits(self) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_json_and_html() {
        let v = Json::object([("v", Json::from("<script>\"a\"\\\n\u{1}&"))]);
        assert_eq!(v.render(), r#"{"v":"\u003cscript\u003e\"a\"\\\n\u0001\u0026"}"#);
        assert_eq!(
            Json::Array(vec![Json::Null, 3u64.into(), Json::Float(1.23456)]).render(),
            "[null,3,1.235]"
        );
    }

    #[test]
    fn json_documents_are_objects_and_arrays() {
        for good in [r#"{"a":[1,-2.5e3,true,null,"x\"\u00e9"]}"#, " [] ", "{}", r#"[{"a":{}}]"#] {
            assert!(is_json_document(good), "{good}");
        }
        for bad in ["", "1", "\"s\"", "{", "[1,]", "{\"a\" 1}", "[01x]", "{} x", "[\"\u{1}\"]", "[1.]"] {
            assert!(!is_json_document(bad), "{bad}");
        }
        assert!(!is_json_document(&"[".repeat(100_000)), "too deep, and no stack overflow");
    }
}
