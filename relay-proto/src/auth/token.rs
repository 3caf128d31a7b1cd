//! Shared Access Signature tokens in Azure's exact format.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use super::audience::Audience;
use super::percent;
use crate::frame::MAX_TOKEN_LEN;

/// The prefix of every SAS token.
pub const SAS_PREFIX: &str = "SharedAccessSignature ";

/// Makes a SAS token for `resource_uri`, signed with `key` (its UTF-8 bytes are the HMAC key,
/// as in Azure), valid until `expiry` (unix seconds).
///
/// The result is exactly what Azure's SDKs make:
/// `SharedAccessSignature sr={enc(uri)}&sig={enc(base64(hmac_sha256(key, enc(uri) + "\n" + expiry)))}&se={expiry}&skn={key_name}`,
/// where `enc` is JavaScript's `encodeURIComponent`.
///
/// ```
/// use relay_proto::auth::{SasToken, sas_token};
///
/// let token = sas_token("sb://relay.example/calc", "RootManageSharedAccessKey", "secret", 1_900_000_000);
/// assert!(token.starts_with("SharedAccessSignature sr=sb%3A%2F%2Frelay.example%2Fcalc&sig="));
/// assert!(SasToken::parse(&token)?.verify("secret"));
/// # Ok::<(), relay_proto::auth::TokenError>(())
/// ```
pub fn sas_token(resource_uri: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let sr = percent::encode_component(resource_uri);
    let signature = BASE64.encode(sign(key, &sr, &expiry.to_string()).as_ref());
    format!("{SAS_PREFIX}sr={sr}&sig={}&se={expiry}&skn={key_name}", percent::encode_component(&signature))
}

fn sign(key: &str, sr: &str, se: &str) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(sr.as_bytes());
    ctx.update(b"\n");
    ctx.update(se.as_bytes());
    ctx.sign()
}

/// Why a string is not a well-formed SAS token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// The token does not start with `SharedAccessSignature `.
    #[error("not a SharedAccessSignature token")]
    NotSas,
    /// A field is missing, repeated, unknown or empty.
    #[error("token field {0:?} is missing, repeated, unknown or empty")]
    BadField(String),
    /// The expiry is not a number of seconds.
    #[error("token expiry is not a unix time")]
    BadExpiry,
    /// The signature is not base64 of a SHA-256 HMAC.
    #[error("token signature is not base64 of 32 bytes")]
    BadSignatureEncoding,
    /// The resource is not a valid resource URI.
    #[error("token resource is not a canonical resource URI")]
    BadResource,
}

/// A parsed SAS token. Its `Debug` output leaves the signature out.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr`, exactly as in the token (URL-encoded): the signature covers these bytes.
    sr: String,
    /// The audience `sr` names.
    audience: Audience,
    /// The decoded signature.
    signature: Vec<u8>,
    /// `se`, exactly as in the token.
    se: String,
    expiry: u64,
    key_name: String,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("audience", &self.audience)
            .field("expiry", &self.expiry)
            .field("key_name", &self.key_name)
            .field("signature", &"MASKED")
            .finish()
    }
}

impl SasToken {
    /// Parses a token: the four fields `sr`, `sig`, `se` and `skn`, each once, in any order.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let fields = token.strip_prefix(SAS_PREFIX).ok_or(TokenError::NotSas)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in fields.split('&') {
            let (name, value) = field.split_once('=').ok_or_else(|| TokenError::BadField(field.into()))?;
            let slot = match name {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => return Err(TokenError::BadField(name.into())),
            };
            if slot.is_some() || value.is_empty() {
                return Err(TokenError::BadField(name.into()));
            }
            *slot = Some(value);
        }
        let missing = |name: &str| TokenError::BadField(name.into());
        let (sr, sig, se, skn) = (
            sr.ok_or_else(|| missing("sr"))?,
            sig.ok_or_else(|| missing("sig"))?,
            se.ok_or_else(|| missing("se"))?,
            skn.ok_or_else(|| missing("skn"))?,
        );
        if !se.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::BadExpiry);
        }
        let expiry = se.parse().map_err(|_| TokenError::BadExpiry)?;
        let signature = percent::decode(sig)
            .and_then(|s| BASE64.decode(s).ok())
            .filter(|s| s.len() == 32)
            .ok_or(TokenError::BadSignatureEncoding)?;
        let audience = Audience::parse_encoded(sr).ok_or(TokenError::BadResource)?;
        let key_name = percent::decode(skn).ok_or_else(|| missing("skn"))?;
        Ok(Self { sr: sr.to_owned(), audience, signature, se: se.to_owned(), expiry, key_name })
    }

    /// Whether the signature was made with `key`, compared in constant time.
    pub fn verify(&self, key: &str) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
        let mut message = Vec::with_capacity(self.sr.len() + 1 + self.se.len());
        message.extend_from_slice(self.sr.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(self.se.as_bytes());
        hmac::verify(&key, &message, &self.signature).is_ok()
    }

    /// The host and path the token was signed for.
    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// When the token expires, in unix seconds.
    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    /// The name of the key that signed it.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789a=";

    #[test]
    fn round_trips_and_verifies() {
        let token = sas_token("sb://relay.example/calc", "root", KEY, 2_000_000_000);
        let parsed = SasToken::parse(&token).unwrap();
        assert!(parsed.verify(KEY));
        assert!(!parsed.verify("another key"));
        assert_eq!(parsed.expiry(), 2_000_000_000);
        assert_eq!(parsed.key_name(), "root");
        assert_eq!(parsed.audience().path, "calc");
        assert!(!format!("{parsed:?}").contains(&token[token.find("sig=").unwrap() + 4..][..10]));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let token = sas_token("sb://relay.example/calc", "root", KEY, 2_000_000_000);
        let tampered = [
            token.replace("se=2000000000", "se=2000000001"),
            token.replace("calc", "cald"),
            token.replace("relay.example", "relay.exampld"),
        ];
        for t in tampered {
            assert!(!SasToken::parse(&t).unwrap().verify(KEY), "{t}");
        }
        // Flip the first and the last byte of the signature: both fail.
        let parsed = SasToken::parse(&token).unwrap();
        for i in [0, 31] {
            let mut flipped = parsed.clone();
            flipped.signature[i] ^= 1;
            assert!(!flipped.verify(KEY));
        }
    }

    #[test]
    fn refuses_malformed_tokens() {
        let good = sas_token("sb://h/calc", "root", KEY, 2_000_000_000);
        let cases = [
            ("", TokenError::NotSas),
            ("Bearer x", TokenError::NotSas),
            (&good.replace("&skn=root", ""), TokenError::BadField("skn".into())),
            (&format!("{good}&skn=other"), TokenError::BadField("skn".into())),
            (&format!("{good}&x=1"), TokenError::BadField("x".into())),
            (&good.replace("se=2000000000", "se=-1"), TokenError::BadExpiry),
            (&good.replace("se=2000000000", "se=99999999999999999999999"), TokenError::BadExpiry),
            (&good.replace("sig=", "sig=AA"), TokenError::BadSignatureEncoding),
            (&format!("{good}{}", "a".repeat(MAX_TOKEN_LEN)), TokenError::TooLong),
        ];
        for (token, expected) in cases {
            assert_eq!(SasToken::parse(token), Err(expected), "{token}");
        }
        let tricky = sas_token("sb://h/calc/../admin", "root", KEY, 2_000_000_000);
        assert_eq!(SasToken::parse(&tricky), Err(TokenError::BadResource));
    }
}
