//! Percent-encoding as JavaScript's `encodeURIComponent` does it, and strict decoding.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What `encodeURIComponent` escapes: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes as JavaScript's `encodeURIComponent`, with upper-case hex digits.
///
/// ```
/// assert_eq!(relay_proto::auth::percent::encode_component("a b/c"), "a%20b%2Fc");
/// ```
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Decodes `%XX` sequences (either case) once; `+` is a space, as form encoders (and .NET's
/// `WebUtility.UrlEncode`) write it. Fails on a broken escape or bytes that are not UTF-8.
///
/// ```
/// use relay_proto::auth::percent::decode;
/// assert_eq!(decode("a+b%2Fc").as_deref(), Some("a b/c"));
/// assert_eq!(decode("%4"), None);
/// ```
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let escapes_whole = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .all(|(i, _)| bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if !escapes_whole {
        return None;
    }
    String::from_utf8(decode_lenient(s)).ok()
}

/// Decodes as URL parsers decode query strings (WHATWG `application/x-www-form-urlencoded`):
/// `+` is a space, `%XX` a byte, and a broken escape stays as it is. For reading a string the
/// way a lenient peer would, never for accepting input.
pub fn decode_lenient(s: &str) -> Vec<u8> {
    let spaced = match s.contains('+') {
        true => Cow::Owned(s.replace('+', " ")),
        false => Cow::Borrowed(s),
    };
    percent_decode_str(&spaced).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_encode_uri_component() {
        assert_eq!(encode_component("http://h:1/a b?c=d&e"), "http%3A%2F%2Fh%3A1%2Fa%20b%3Fc%3Dd%26e");
        assert_eq!(encode_component("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()");
        assert_eq!(encode_component("ü+/="), "%C3%BC%2B%2F%3D");
    }

    #[test]
    fn decodes_strictly_once() {
        assert_eq!(decode("http%3a%2F%2Fh").as_deref(), Some("http://h"));
        assert_eq!(decode("%252e").as_deref(), Some("%2e"));
        assert_eq!(decode("a+b").as_deref(), Some("a b"));
        for bad in ["%", "%4", "%zz", "%ff"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn decodes_leniently_like_url_parsers() {
        assert_eq!(decode_lenient("%73b-hc%2Did"), b"sb-hc-id");
        assert_eq!(decode_lenient("a+b%zz%4%"), b"a b%zz%4%");
        assert_eq!(decode_lenient("%ff%C3%BC"), b"\xff\xc3\xbc");
    }
}
