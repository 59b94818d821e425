//! Query strings and form bodies (`application/x-www-form-urlencoded`):
//! parsed into pairs, then read field by field with errors that name the
//! field and its limit.

use crate::error::ApiError;

/// The fields of a query string or form body, in order (a field may
/// repeat).
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(String, String)>);

/// Longest form body or query string the API reads.
pub(crate) const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

impl Fields {
    /// Parses `a=1&b=x+y`; a field without `=` has an empty value.
    pub(crate) fn parse(text: &str) -> Result<Fields, ApiError> {
        if text.len() > MAX_FORM_BYTES {
            return Err(ApiError::bad("body", format!("is over the limit of {MAX_FORM_BYTES} bytes")));
        }
        let mut fields = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(k).ok_or_else(|| ApiError::bad("query", "is not percent-encoded UTF-8"))?;
            let value = decode(v).ok_or_else(|| ApiError::bad(&key, "is not percent-encoded UTF-8"))?;
            fields.push((key, value));
        }
        Ok(Fields(fields))
    }

    /// Parses a form body.
    pub(crate) fn from_body(body: &[u8]) -> Result<Fields, ApiError> {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad("body", "is not UTF-8"))?;
        Fields::parse(text)
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` as a number in `range`; `None` when absent or empty.
    pub(crate) fn number<T>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.get(key).filter(|t| !t.is_empty()) else { return Ok(None) };
        let n: T = text.parse().map_err(|_| ApiError::bad(key, format!("`{text}` is not a number")))?;
        if !range.contains(&n) {
            return Err(ApiError::bad(key, format!("{n} is not in {}..={}", range.start(), range.end())));
        }
        Ok(Some(n))
    }

    /// `key`, which must be present and not empty.
    pub(crate) fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::bad(key, "is required"))
    }
}

/// Percent-decoding, with `+` as a space; `None` if not UTF-8 or malformed.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_and_repeat() {
        let f = Fields::parse("a=1&b=x+y%21&h=k%3Dv&h=&c&%E2%82%AC=%e2%82%ac").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("x y!"));
        assert_eq!(f.all("h").collect::<Vec<_>>(), ["k=v", ""]);
        assert_eq!(f.get("c"), Some(""));
        assert_eq!(f.get("€"), Some("€"));
        assert!(Fields::parse("a=%zz").is_err());
        assert!(Fields::parse("a=%").is_err());
        assert!(Fields::parse("a=%ff").is_err(), "not UTF-8");
        let err = Fields::parse("limit=5000").unwrap().number::<u32>("limit", 1..=1000).unwrap_err();
        assert_eq!(err.message, "invalid limit: 5000 is not in 1..=1000");
    }
}
