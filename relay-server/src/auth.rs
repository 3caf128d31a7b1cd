//! Who may listen on or call which address: keys, rights, scopes and anonymous senders. Sans-IO:
//! [`Policy::authorize`] takes the token, the right, the address and the time.

use std::collections::{HashMap, HashSet};

use relay_proto::auth::{AuthFailure, Right, SasToken, SharedAccessKey, path_covers};

use crate::config::{Config, KeyConfig};

/// A refusal: the reason, and a detail for humans that never holds a key or signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Why.
    pub reason: AuthFailure,
    /// What exactly, for a human.
    pub detail: String,
}

fn denied(reason: AuthFailure, detail: impl Into<String>) -> Denied {
    Denied { reason, detail: detail.into() }
}

/// The relay's authorization policy.
#[derive(Debug)]
pub struct Policy {
    keys: HashMap<String, PolicyKey>,
    anonymous_senders: HashSet<String>,
    hostnames: Vec<String>,
    clock_skew: u64,
    max_ttl: u64,
}

#[derive(Debug)]
struct PolicyKey {
    secrets: Vec<SharedAccessKey>,
    rights: Vec<Right>,
    scope: String,
}

impl Policy {
    /// The policy of `config`, plus `root` (all rights everywhere) if given.
    pub fn new(config: &Config, root: Option<SharedAccessKey>) -> Self {
        let mut keys = HashMap::new();
        for KeyConfig { name, primary_key, secondary_key, rights, scope } in &config.keys {
            let secrets = std::iter::once(primary_key)
                .chain(secondary_key)
                .map(|secret| SharedAccessKey::new(name.clone(), secret.expose()))
                .collect();
            keys.insert(
                name.clone(),
                PolicyKey { secrets, rights: rights.clone(), scope: scope.clone().unwrap_or_default() },
            );
        }
        if let Some(root) = root {
            let entry = keys.entry(root.name().to_owned()).or_insert_with(|| PolicyKey {
                secrets: Vec::new(),
                rights: vec![Right::Manage],
                scope: String::new(),
            });
            entry.secrets.push(root);
        }
        Self {
            keys,
            anonymous_senders: config
                .addresses
                .iter()
                .filter(|a| a.anonymous_senders)
                .map(|a| a.path.clone())
                .collect(),
            hostnames: config.hostnames.iter().map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase()).collect(),
            clock_skew: config.clock_skew_secs,
            max_ttl: config.max_token_ttl_secs,
        }
    }

    /// Decides whether `token` grants `right` on `address` at `now` (unix seconds). On success,
    /// returns when the grant ends (`None`: never, for anonymous senders).
    pub fn authorize(&self, token: Option<&str>, right: Right, address: &str, now: u64) -> Result<Authorized, Denied> {
        if right == Right::Send && self.anonymous_senders.contains(address) {
            return Ok(Authorized::ANONYMOUS);
        }
        let grant = self.verify(token, now)?;
        self.permits(&grant, right, address)
    }

    /// The address a Hybrid Connections sender's path names, and when its grant ends: of
    /// `candidates` (the path's prefixes, longest first), the longest the sender may send to that
    /// is `live` (has a listener, or is multicast), else the longest it may send to. Whether an
    /// address is live is asked only of addresses the sender may use, so neither the choice nor
    /// a refusal tells it where listeners are; a refusal is the longest candidate's, whatever is
    /// registered. The token is verified once, however many candidates there are.
    pub fn sender_address<'a>(
        &self,
        token: Option<&str>,
        candidates: &[&'a str],
        live: impl Fn(&str) -> bool,
        now: u64,
    ) -> Result<(&'a str, Authorized), Denied> {
        let mut grant = None;
        let mut longest_covered = None;
        let mut longest_denied = None;
        for &candidate in candidates {
            let permitted = if self.anonymous_senders.contains(candidate) {
                Ok(Authorized::ANONYMOUS)
            } else {
                match grant.get_or_insert_with(|| self.verify(token, now)) {
                    Ok(grant) => self.permits(grant, Right::Send, candidate),
                    Err(denied) => Err(denied.clone()),
                }
            };
            match permitted {
                Ok(expiry) if live(candidate) => return Ok((candidate, expiry)),
                Ok(expiry) => {
                    longest_covered.get_or_insert((candidate, expiry));
                }
                Err(denied) => {
                    longest_denied.get_or_insert(denied);
                }
            }
        }
        match (longest_covered, longest_denied) {
            (Some(covered), _) => Ok(covered),
            (None, Some(denied)) => Err(denied),
            (None, None) => Err(denied(AuthFailure::OutOfScope, "no address in the path")),
        }
    }

    /// Checks what does not depend on the address: the token is there, well formed, signed by a
    /// known key, current, not longer-lived than allowed, and for one of the relay's host names.
    fn verify(&self, token: Option<&str>, now: u64) -> Result<Grant<'_>, Denied> {
        let token = token.ok_or_else(|| denied(AuthFailure::MissingToken, "a token is required"))?;
        let token = SasToken::parse(token).map_err(|e| denied(AuthFailure::Malformed, e.to_string()))?;
        let verified = self.keys.get(token.key_name()).filter(|k| k.secrets.iter().any(|s| token.verify(s.secret())));
        let Some(key) = verified else {
            return Err(denied(AuthFailure::BadSignature, "unknown key name or signature mismatch"));
        };
        if now > token.expiry().saturating_add(self.clock_skew) {
            return Err(denied(AuthFailure::Expired, format!("token expired at {}", token.expiry())));
        }
        // A token that lives for years is a standing credential nobody can revoke short of
        // rotating the key. Refused as malformed, not expired: a fresh token signed the same way
        // would be refused again, so a client must not take this for "renew and retry".
        if token.expiry() > now.saturating_add(self.max_ttl).saturating_add(self.clock_skew) {
            return Err(denied(
                AuthFailure::Malformed,
                format!("token lives longer than the relay allows ({} s at most)", self.max_ttl),
            ));
        }
        if !self.hostnames.contains(&token.audience().host) {
            return Err(denied(AuthFailure::OutOfScope, format!("token is for host {:?}", token.audience().host)));
        }
        Ok(Grant { key, token })
    }

    /// Checks what depends on the address: the token's audience and its key's scope cover it,
    /// and the key grants `right`. Returns when the grant ends. Details name neither the address
    /// nor the audience's path: they go on the wire, and would tell a prober what it probed.
    fn permits(&self, grant: &Grant<'_>, right: Right, address: &str) -> Result<Authorized, Denied> {
        let Grant { key, token } = grant;
        if !token.audience().covers(address) {
            return Err(denied(AuthFailure::OutOfScope, "the token's audience does not cover the address"));
        }
        if !path_covers(&key.scope, address) {
            return Err(denied(
                AuthFailure::OutOfScope,
                format!("key {:?} does not cover the address", token.key_name()),
            ));
        }
        if !key.rights.iter().any(|r| *r == right || *r == Right::Manage) {
            return Err(denied(
                AuthFailure::WrongRight,
                format!("key {:?} lacks the {right:?} right", token.key_name()),
            ));
        }
        Ok(Authorized {
            expiry: Some(token.expiry().saturating_add(self.clock_skew)),
            key: Some(token.key_name().to_owned()),
        })
    }
}

/// What [`Policy::authorize`] grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// When the grant ends (unix seconds, clock skew included); `None`: never, for anonymous
    /// senders.
    pub expiry: Option<u64>,
    /// The name of the key that signed the token; `None` for anonymous senders.
    pub key: Option<String>,
}

impl Authorized {
    /// A sender on an `anonymous_senders` address, without a token.
    pub const ANONYMOUS: Self = Self { expiry: None, key: None };
}

/// A token checked for everything but the address: which key signed it.
struct Grant<'p> {
    key: &'p PolicyKey,
    token: SasToken,
}

#[cfg(test)]
mod tests {
    use relay_proto::auth::sas_token;

    use super::*;
    use crate::config::{AddressConfig, Secret};

    const NOW: u64 = 1_900_000_000;

    fn policy() -> Policy {
        let key = |name: &str, rights: Vec<Right>, scope: Option<&str>| KeyConfig {
            name: name.into(),
            primary_key: Secret::new(format!("{name}-primary")),
            secondary_key: Some(Secret::new(format!("{name}-secondary"))),
            rights,
            scope: scope.map(Into::into),
        };
        let config = Config {
            keys: vec![
                key("listener", vec![Right::Listen], None),
                key("sender", vec![Right::Send], None),
                key("calc-only", vec![Right::Listen, Right::Send], Some("calc")),
            ],
            addresses: vec![AddressConfig { path: "public".into(), anonymous_senders: true, ..Default::default() }],
            clock_skew_secs: 30,
            ..Config::default()
        };
        Policy::new(&config, Some(SharedAccessKey::new("root", "root-key")))
    }

    fn token(uri: &str, name: &str, key: &str, expiry: u64) -> String {
        sas_token(uri, name, key, expiry)
    }

    #[test]
    fn grants_what_keys_allow() {
        let p = policy();
        let t = token("sb://localhost/calc", "root", "root-key", NOW + 60);
        assert_eq!(p.authorize(Some(&t), Right::Listen, "calc", NOW), Ok(root_grant(NOW + 90)));
        assert_eq!(p.authorize(Some(&t), Right::Send, "calc/eu", NOW), Ok(root_grant(NOW + 90)));
        let secondary = token("http://127.0.0.1:7443/$hc/calc", "sender", "sender-secondary", NOW + 60);
        assert!(p.authorize(Some(&secondary), Right::Send, "calc", NOW).is_ok());
        let whole = token("quic://localhost:7443/", "root", "root-key", NOW + 60);
        assert!(p.authorize(Some(&whole), Right::Listen, "any/where", NOW).is_ok());
        assert_eq!(p.authorize(None, Right::Send, "public", NOW), Ok(Authorized::ANONYMOUS));
    }

    #[test]
    fn refuses_with_distinct_reasons() {
        let p = policy();
        let reason = |token: Option<&str>, right, address| p.authorize(token, right, address, NOW).unwrap_err().reason;
        let root = |uri: &str, expiry| token(uri, "root", "root-key", expiry);
        assert_eq!(reason(None, Right::Send, "calc"), AuthFailure::MissingToken);
        assert_eq!(reason(None, Right::Listen, "public"), AuthFailure::MissingToken, "listeners always need a token");
        assert_eq!(reason(Some("garbage"), Right::Send, "calc"), AuthFailure::Malformed);
        let forged = token("sb://localhost/calc", "root", "guessed-key", NOW + 60);
        assert_eq!(reason(Some(&forged), Right::Send, "calc"), AuthFailure::BadSignature);
        let unknown = token("sb://localhost/calc", "nobody", "root-key", NOW + 60);
        assert_eq!(reason(Some(&unknown), Right::Send, "calc"), AuthFailure::BadSignature);
        let tampered =
            root("sb://localhost/calc", NOW + 60).replace(&format!("se={}", NOW + 60), &format!("se={}", NOW + 6000));
        assert_eq!(reason(Some(&tampered), Right::Send, "calc"), AuthFailure::BadSignature);
        assert_eq!(reason(Some(&root("sb://localhost/calc", NOW - 31)), Right::Send, "calc"), AuthFailure::Expired);
        assert!(p.authorize(Some(&root("sb://localhost/calc", NOW - 29)), Right::Send, "calc", NOW).is_ok(), "skew");
        let listen = token("sb://localhost/calc", "listener", "listener-primary", NOW + 60);
        let send = token("sb://localhost/calc", "sender", "sender-primary", NOW + 60);
        assert_eq!(reason(Some(&listen), Right::Send, "calc"), AuthFailure::WrongRight);
        assert_eq!(reason(Some(&send), Right::Listen, "calc"), AuthFailure::WrongRight);
        let calc = root("sb://localhost/calc", NOW + 60);
        assert_eq!(reason(Some(&calc), Right::Send, "calc-evil"), AuthFailure::OutOfScope);
        assert_eq!(reason(Some(&calc), Right::Send, "calculator"), AuthFailure::OutOfScope);
        assert_eq!(
            reason(Some(&root("sb://evil.example/calc", NOW + 60)), Right::Send, "calc"),
            AuthFailure::OutOfScope
        );
        assert_eq!(
            reason(Some(&root("sb://localhost/calc/../admin", NOW + 60)), Right::Send, "admin"),
            AuthFailure::Malformed
        );
        assert_eq!(
            reason(Some(&root("sb://localhost/%2e%2e/admin", NOW + 60)), Right::Send, "admin"),
            AuthFailure::Malformed
        );
        let scoped = token("sb://localhost/", "calc-only", "calc-only-primary", NOW + 60);
        assert!(p.authorize(Some(&scoped), Right::Send, "calc/eu", NOW).is_ok());
        assert_eq!(reason(Some(&scoped), Right::Send, "admin"), AuthFailure::OutOfScope);
        let oversize = format!("{calc}{}", "x".repeat(5000));
        assert_eq!(reason(Some(&oversize), Right::Send, "calc"), AuthFailure::Malformed);
    }

    /// What a token signed with the root key grants until `expiry`.
    fn root_grant(expiry: u64) -> Authorized {
        Authorized { expiry: Some(expiry), key: Some("root".into()) }
    }

    #[test]
    fn details_never_name_the_address_or_the_audience_path() {
        // Regression (issue 19): details reach the wire (QUIC refusals, HTTP reason phrases), so
        // naming the address let a prober read back what it asked, and the audience echoed the token.
        let p = policy();
        let narrow = token("sb://localhost/audience-path", "root", "root-key", NOW + 60);
        let scoped = token("sb://localhost/", "calc-only", "calc-only-primary", NOW + 60);
        for (t, address) in [(&narrow, "probed-address"), (&narrow, "audience-path-x"), (&scoped, "probed-address")] {
            let denied = p.authorize(Some(t), Right::Send, address, NOW).unwrap_err();
            assert_eq!(denied.reason, AuthFailure::OutOfScope);
            assert!(!denied.detail.contains("probed") && !denied.detail.contains("audience-path"), "{denied:?}");
        }
    }

    #[test]
    fn a_sender_address_is_chosen_among_covered_prefixes_only() {
        let p = policy();
        let path = ["x/y/z", "x/y", "x"];
        let live = |listening: &'static [&'static str]| move |a: &str| listening.contains(&a);
        let choose = |token: &str, listening| p.sender_address(Some(token), &path, live(listening), NOW);
        // A token for `x/y/z` alone: a listener on `x/y` is never looked at, let alone named.
        let narrow = token("sb://localhost/x/y/z", "root", "root-key", NOW + 60);
        assert_eq!(choose(&narrow, &[]), Ok(("x/y/z", root_grant(NOW + 90))));
        assert_eq!(choose(&narrow, &["x/y"]), Ok(("x/y/z", root_grant(NOW + 90))), "the same as with no listener");
        assert_eq!(choose(&narrow, &["x/y", "x/y/z"]), Ok(("x/y/z", root_grant(NOW + 90))));
        // A token for `x`: the longest covered prefix with a listener, else the longest covered.
        let wide = token("sb://localhost/x", "root", "root-key", NOW + 60);
        assert_eq!(choose(&wide, &["x/y"]).unwrap().0, "x/y");
        assert_eq!(choose(&wide, &["x", "x/y"]).unwrap().0, "x/y");
        assert_eq!(choose(&wide, &["x"]).unwrap().0, "x");
        assert_eq!(choose(&wide, &[]).unwrap().0, "x/y/z");
        // Nothing covered: the longest candidate's refusal, whatever is registered.
        let other = token("sb://localhost/other", "root", "root-key", NOW + 60);
        let refused = choose(&other, &[]).unwrap_err();
        assert_eq!(refused.reason, AuthFailure::OutOfScope);
        assert_eq!(choose(&other, &["x/y"]), Err(refused));
        let listen_only = token("sb://localhost/x", "listener", "listener-primary", NOW + 60);
        assert_eq!(choose(&listen_only, &["x"]).unwrap_err().reason, AuthFailure::WrongRight);
        // Anonymous senders need no token on their address, and only there.
        let public = ["public/a", "public"];
        assert_eq!(p.sender_address(None, &public, |_| false, NOW), Ok(("public", Authorized::ANONYMOUS)));
        let denied = p.sender_address(None, &["calc/a", "calc"], |_| true, NOW).unwrap_err();
        assert_eq!(denied.reason, AuthFailure::MissingToken);
        assert!(p.sender_address(Some(&wide), &[], |_| true, NOW).is_err());
    }

    #[test]
    fn tokens_living_past_the_maximum_lifetime_are_refused() {
        // Regression (issue 19): a token signed to last for years was accepted.
        let p = policy();
        let week = 7 * 24 * 3600; // The default `max_token_ttl_secs`.
        let at_most = token("sb://localhost/calc", "root", "root-key", NOW + week + 30);
        assert!(p.authorize(Some(&at_most), Right::Send, "calc", NOW).is_ok(), "the maximum plus the clock skew");
        for expiry in [NOW + week + 31, NOW + 365 * 24 * 3600, u64::MAX] {
            let long = token("sb://localhost/calc", "root", "root-key", expiry);
            assert_eq!(p.authorize(Some(&long), Right::Send, "calc", NOW).unwrap_err().reason, AuthFailure::Malformed);
        }
        // The clients' default lifetime must stay well inside the relay's default maximum.
        assert!(relay_proto::auth::DEFAULT_TOKEN_TTL.as_secs() < week);
    }

    #[test]
    fn details_never_hold_keys_or_signatures() {
        let p = policy();
        let t = token("sb://localhost/calc", "root", "root-key", NOW + 60);
        let sig = &t[t.find("sig=").unwrap() + 4..t.find("&se=").unwrap()];
        for (right, address) in [(Right::Send, "other"), (Right::Listen, "calc-evil")] {
            let detail = p.authorize(Some(&t), right, address, NOW).unwrap_err().detail;
            assert!(!detail.contains("root-key") && !detail.contains(sig), "{detail}");
        }
        let debug = format!("{p:?}");
        for secret in ["root-key", "listener-primary", "sender-secondary"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    /// SplitMix64: a fixed seed, so that any failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// A path of up to three segments over a small alphabet: names that are prefixes of one
    /// another, case variants, dots, escapes, Azure's `$hc`, a non-ASCII letter, empty segments
    /// (`a//b`, a leading or trailing `/`).
    fn arbitrary_path(rng: &mut Rng) -> String {
        const SEGMENTS: &[&str] =
            &["a", "A", "ab", "b", "a.b", "a-b", "~", ".", "..", "", "%2e", "%2F", "a%20b", "$hc", "\u{e4}"];
        let segments: Vec<&str> = (0..rng.below(4)).map(|_| rng.pick(SEGMENTS)).collect();
        let mut path = segments.join("/");
        if rng.below(8) == 0 {
            path.push('/');
        }
        path
    }

    /// An address near `scope` (itself, below it, beside it, above it, in another case) or
    /// anywhere.
    fn address_near(rng: &mut Rng, scope: &str) -> String {
        match rng.below(7) {
            0 => scope.to_owned(),
            1 => format!("{scope}/{}", arbitrary_path(rng)),
            2 => format!("{scope}{}", rng.pick(&["b", "-x", ".", "%2F", "/"])),
            3 => scope.rsplit_once('/').map_or(String::new(), |(parent, _)| parent.to_owned()),
            4 => scope.to_ascii_uppercase(),
            _ => arbitrary_path(rng),
        }
    }

    /// The reference, written from the rules rather than from the code: the segments of the
    /// path a token signed for `sb://{host}/{scope}` is good for (none: the whole namespace), or
    /// `None` if no relay may accept it. A leading `$hc/` and one trailing `/` are dropped; what
    /// remains must be segments of `A-Z a-z 0-9 - . _ ~`, none empty, `.` or `..`, 256 bytes at
    /// most.
    fn scope_segments(scope: &str) -> Option<Vec<&str>> {
        if scope.is_empty() {
            return Some(Vec::new());
        }
        let path = scope.strip_prefix("$hc/").unwrap_or(scope);
        let path = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        let canonical = segments.iter().all(|s| !s.is_empty() && *s != "." && *s != ".." && s.chars().all(unreserved));
        (canonical && path.len() <= 256).then_some(segments)
    }

    /// Whether `address` is the scope itself or below it, segment by segment.
    fn below(scope: &[&str], address: &str) -> bool {
        let address: Vec<&str> = address.split('/').collect();
        address.len() >= scope.len() && address[..scope.len()] == *scope
    }

    #[test]
    fn a_token_covers_exactly_its_scope_and_what_is_below_it_on_its_own_hosts() {
        let config = Config {
            keys: vec![KeyConfig {
                name: "ab-only".into(),
                primary_key: Secret::new("ab-only-key".to_owned()),
                secondary_key: None,
                rights: vec![Right::Manage],
                scope: Some("a/b".into()),
            }],
            ..Config::default()
        };
        let p = Policy::new(&config, Some(SharedAccessKey::new("root", "root-key")));
        // The relay's names (`localhost`, `127.0.0.1`, `::1`) in any case, with or without a
        // port, and names that are not quite them.
        const OURS: &[&str] = &["localhost", "LOCALHOST", "LocalHost:7443", "127.0.0.1", "127.0.0.1:9", "[::1]:7443"];
        const THEIRS: &[&str] =
            &["evil.example", "localhost.evil.example", "localhos", "localhost-", "127.0.0.2", "[::2]"];
        let mut rng = Rng(0x5eed);
        let (mut granted, mut refused) = (0, 0);
        for case in 0..20_000 {
            let scope = arbitrary_path(&mut rng);
            let address = address_near(&mut rng, &scope);
            let ours = rng.below(4) != 0;
            let host = if ours { rng.pick(OURS) } else { rng.pick(THEIRS) };
            let scheme = rng.pick(&["sb", "http", "wss", "quic"]);
            let (key, secret, key_scope) = if rng.below(4) == 0 {
                ("ab-only", "ab-only-key", &["a", "b"][..])
            } else {
                ("root", "root-key", &[][..])
            };
            let right = if rng.below(2) == 0 { Right::Send } else { Right::Listen };
            let t = token(&format!("{scheme}://{host}/{scope}"), key, secret, NOW + 60);
            let got = p.authorize(Some(&t), right, &address, NOW);
            let segments = scope_segments(&scope);
            let covered = segments.as_deref().is_some_and(|s| below(s, &address) && below(key_scope, &address));
            let why = format!("case {case}: token for {scheme}://{host}/{scope:?} by {key}, address {address:?}");
            match (ours && covered, got) {
                (true, Ok(grant)) => {
                    assert_eq!(grant.key.as_deref(), Some(key), "{why}");
                    granted += 1;
                }
                (false, Err(denied)) => {
                    let reason = if segments.is_none() { AuthFailure::Malformed } else { AuthFailure::OutOfScope };
                    assert_eq!(denied.reason, reason, "{why}");
                    refused += 1;
                }
                (expected, got) => {
                    panic!("{why}: expected {}, got {got:?}", if expected { "a grant" } else { "a refusal" })
                }
            }
        }
        // Neither outcome is rare, so the property is not checked vacuously.
        assert!(granted > 3_000 && refused > 3_000, "{granted} granted, {refused} refused");
    }
}
