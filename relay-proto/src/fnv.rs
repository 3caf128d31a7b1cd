//! 64-bit FNV-1a: the stable hash of contract and shape fingerprints.

use std::fmt;

/// The hash of nothing.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `hash` continued over `bytes`.
pub(crate) const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

/// FNV-1a over whatever is written.
pub(crate) struct Fnv(pub(crate) u64);

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = fnv1a(self.0, s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut writer = Fnv(FNV_OFFSET);
        writer.write_str("fo").unwrap();
        writer.write_str("obar").unwrap();
        assert_eq!(writer.0, fnv1a(FNV_OFFSET, b"foobar"));
        assert_eq!(writer.0, 0x8594_4171_f739_67e8);
    }
}
