//! Percent-encoding as JavaScript's `encodeURIComponent` does it, and strict decoding.

/// Percent-encodes as JavaScript's `encodeURIComponent`: everything but
/// `A-Z a-z 0-9 - _ . ! ~ * ' ( )`, with upper-case hex digits.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 0xf) as usize]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes `%XX` sequences (either case) once; `+` is a space, as form encoders (and .NET's
/// `WebUtility.UrlEncode`) write it. Fails on a broken escape or bytes that are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Decodes as URL parsers decode query strings (WHATWG `application/x-www-form-urlencoded`):
/// `+` is a space, `%XX` a byte, and a broken escape stays as it is. For reading a string the
/// way a lenient peer would, never for accepting input.
pub(crate) fn decode_lenient(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => bytes.get(i + 1).and_then(|&b| hex_value(b)).zip(bytes.get(i + 2).and_then(|&b| hex_value(b))),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
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
