//! Address syntax: what a listener may register and a caller may dial.

/// The longest address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 256;

/// Why a string is not a valid address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The address is empty.
    #[error("address is empty")]
    Empty,
    /// The address is longer than [`MAX_ADDRESS_LEN`].
    #[error("address is longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong,
    /// A segment is empty (`a//b`, a leading or trailing `/`) or is `.` or `..`.
    #[error("address has an empty, `.` or `..` segment")]
    BadSegment,
    /// The address holds a character outside `A-Z a-z 0-9 - . _ ~ /`.
    #[error("address holds the character {0:?}, allowed are A-Z a-z 0-9 - . _ ~ /")]
    BadCharacter(char),
}

/// Checks that `address` is a canonical address: `/`-separated segments of unreserved URL
/// characters, none empty, `.` or `..`. Nothing is normalised: a non-canonical address is refused.
///
/// ```
/// use relay_proto::validate_address;
/// assert!(validate_address("calc").is_ok());
/// assert!(validate_address("eu/billing").is_ok());
/// assert!(validate_address("eu/../billing").is_err());
/// assert!(validate_address("/calc").is_err());
/// ```
pub fn validate_address(address: &str) -> Result<(), AddressError> {
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong);
    }
    if let Some(c) = address.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')))
    {
        return Err(AddressError::BadCharacter(c));
    }
    if address.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(AddressError::BadSegment);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_canonical_addresses() {
        for bad in ["", "a//b", "a/", "/a", ".", "..", "a/./b", "a/../b", "a%2fb", "a\0b", "a b", "ä"] {
            assert!(validate_address(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(validate_address(&"a".repeat(MAX_ADDRESS_LEN + 1)), Err(AddressError::TooLong));
        for good in ["calc", "eu/billing", "a.b", "x-y_z~1", &"a".repeat(MAX_ADDRESS_LEN)] {
            assert_eq!(validate_address(good), Ok(()), "{good:?} refused");
        }
    }
}
