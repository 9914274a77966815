//! Signed bearer tokens.
//!
//! A token is `tarn.<claims>.<signature>`: the claims are base64url JSON
//! (`sub` the user, `iat` and `exp` in seconds since the epoch), the
//! signature an HMAC-SHA256 over `tarn.<claims>` with the deployment's key.
//! Any gateway holding the key verifies a token without shared state, and
//! `tarn token` mints one offline. The claims also carry the user's roles
//! per workspace and the operator flag ([`crate::roles::Grants`]); a token
//! minted before roles existed carries none.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, TarnError};

const PREFIX: &str = "tarn.";
/// Shortest key accepted, in bytes: HMAC-SHA256 wants at least its output.
const MIN_KEY_BYTES: usize = 32;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Roles per workspace, and the operator flag.
    #[serde(default, flatten)]
    pub grants: crate::roles::Grants,
}

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds something other than a base64 key of 32+ bytes.
    #[error("key file {path} does not hold a base64 key of at least {MIN_KEY_BYTES} bytes; create one with `tarn token --key-file {path} --create-key`")]
    Invalid {
        /// The file.
        path: String,
    },
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// It does not start with the expected prefix.
    NoPrefix,
    /// It has no `.signature` part.
    NoSignature,
    /// Its signature is not base64url.
    SignatureNotBase64,
    /// It was signed with another key (or changed).
    OtherKey,
    /// Its body is not the JSON expected.
    Unreadable,
}

/// A deployment's signing key.
pub struct TokenKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKey {
    /// A key from raw secret bytes.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Reads a key file (base64 text of the secret).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: shown.clone(),
            source,
        })?;
        // URL-safe (what Tarn writes) or standard base64 (what `openssl
        // rand -base64` and Helm's `randBytes` write).
        let text = text.trim().trim_end_matches('=');
        let secret = B64
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .ok()
            .filter(|s| s.len() >= MIN_KEY_BYTES)
            .ok_or(KeyError::Invalid { path: shown })?;
        Ok(Self::from_secret(&secret))
    }

    /// Reads the key file, creating it with a fresh random key (readable by
    /// its owner only) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::load(path);
        }
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut secret = [0u8; MIN_KEY_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| io(std::io::Error::other("no system randomness")))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(path) {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, format!("{}\n", B64.encode(secret)).as_bytes())
                    .map_err(io)?;
                Ok(Self::from_secret(&secret))
            }
            // Someone else created it meanwhile: theirs wins.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io(e)),
        }
    }

    /// An HMAC-SHA256 tag of `message` under this key.
    pub fn tag(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, message).as_ref().to_vec()
    }

    /// Whether `tag` is this key's tag of `message` (in constant time).
    pub fn check_tag(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, message, tag).is_ok()
    }

    /// A token for `user` with `grants`, valid for `ttl` from now.
    pub fn mint(&self, user: &str, ttl: Duration, grants: crate::roles::Grants) -> String {
        let iat = now_secs();
        self.sign(&Claims {
            sub: user.to_string(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            grants,
        })
    }

    /// Signs `claims` as a token.
    pub fn sign(&self, claims: &Claims) -> String {
        self.seal(PREFIX, claims)
    }

    /// `value` as `<prefix><base64url JSON>.<base64url HMAC>`: the form of
    /// tokens and of every other signed value Tarn hands out.
    pub fn seal<T: Serialize>(&self, prefix: &str, value: &T) -> String {
        let body = B64.encode(serde_json::to_vec(value).unwrap_or_default());
        let signed = format!("{prefix}{body}");
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", B64.encode(tag.as_ref()))
    }

    /// Reads what [`TokenKey::seal`] made with this key and `prefix`.
    pub fn open<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        sealed: &str,
    ) -> Result<T, Unsealed> {
        let rest = sealed.strip_prefix(prefix).ok_or(Unsealed::NoPrefix)?;
        let (body, sig) = rest.split_once('.').ok_or(Unsealed::NoSignature)?;
        let sig = B64.decode(sig).map_err(|_| Unsealed::SignatureNotBase64)?;
        hmac::verify(&self.key, format!("{prefix}{body}").as_bytes(), &sig)
            .map_err(|_| Unsealed::OtherKey)?;
        B64.decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Unsealed::Unreadable)
    }

    /// Checks a token's signature and age: it must not be past its `exp`,
    /// nor older than `max_lifetime` (the gateway's credential lifetime,
    /// which caps tokens minted with a longer expiry).
    pub fn verify(
        &self,
        token: &str,
        max_lifetime: Duration,
        now: u64,
    ) -> Result<Claims, TarnError> {
        let claims: Claims = self.open(PREFIX, token).map_err(|u| {
            let why = match u {
                Unsealed::NoPrefix => "it does not start with 'tarn.'",
                Unsealed::NoSignature => "it has no signature part",
                Unsealed::SignatureNotBase64 => "its signature is not base64url",
                Unsealed::OtherKey => "it was not signed with this deployment's key",
                Unsealed::Unreadable => "its claims are not readable",
            };
            TarnError::new(
                ErrorCode::InvalidToken,
                format!("the token is not valid: {why}"),
            )
        })?;
        let cap = claims.iat.saturating_add(max_lifetime.as_secs());
        let ends = claims.exp.min(cap);
        if now >= ends {
            let why = if claims.exp <= cap {
                format!("expired {} ago", human(now - claims.exp))
            } else {
                format!(
                    "was issued {} ago and credentials last at most {}",
                    human(now - claims.iat),
                    human(max_lifetime.as_secs())
                )
            };
            return Err(TarnError::new(
                ErrorCode::CredentialsExpired,
                format!("the token of '{}' {why}", claims.sub),
            )
            .with_fix(format!(
                "mint a new token (`tarn token --key-file <key> --user {}`) and reconnect with it",
                claims.sub
            )));
        }
        Ok(Claims {
            exp: ends,
            ..claims
        })
    }
}

/// `90` → `1m30s`.
pub fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_minted_token_verifies_and_names_its_user() {
        let key = TokenKey::from_secret(&[7; 32]);
        let t = key.mint("alice", HOUR, Default::default());
        let c = key.verify(&t, HOUR, now_secs()).expect("valid");
        assert_eq!(c.sub, "alice");
        // Roles travel signed, and tokens without them still verify.
        let g = crate::roles::Grants::parse_specs(["soc=contributor"], true).unwrap();
        let t = key.mint("alice", HOUR, g.clone());
        assert_eq!(key.verify(&t, HOUR, now_secs()).unwrap().grants, g);
    }

    #[test]
    fn key_files_in_either_base64_alphabet_load_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        // Bytes whose encodings differ between the alphabets (+/ vs -_).
        let secret: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(37) ^ 0xfb).collect();
        use base64::engine::general_purpose::STANDARD;
        let (url, std) = (B64.encode(&secret), STANDARD.encode(&secret));
        assert_ne!(url.trim_end_matches('='), std.trim_end_matches('='));
        let load = |text: &str| {
            let p = dir.path().join("k");
            std::fs::write(&p, text).unwrap();
            TokenKey::load(&p)
        };
        let t = load(&url).unwrap().mint("a", HOUR, Default::default());
        load(&format!("{std}\n"))
            .unwrap()
            .verify(&t, HOUR, now_secs())
            .unwrap();
        // Too short, or not base64 at all, is still refused.
        assert!(load(&STANDARD.encode([1u8; 16])).is_err());
        assert!(load("not a key!").is_err());
    }

    #[test]
    fn another_key_or_a_changed_claim_is_refused() {
        let key = TokenKey::from_secret(&[7; 32]);
        let other = TokenKey::from_secret(&[8; 32]);
        let t = key.mint("alice", HOUR, Default::default());
        let e = other.verify(&t, HOUR, now_secs()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidToken);
        // Swap in claims naming someone else, keeping alice's signature.
        let forged_body = B64.encode(
            serde_json::to_vec(&Claims {
                sub: "mallory".into(),
                iat: now_secs(),
                exp: now_secs() + 3600,
                grants: Default::default(),
            })
            .unwrap(),
        );
        let sig = t.rsplit_once('.').unwrap().1;
        let forged = format!("tarn.{forged_body}.{sig}");
        assert_eq!(
            key.verify(&forged, HOUR, now_secs()).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        assert_eq!(
            key.verify("garbage", HOUR, now_secs()).unwrap_err().code,
            ErrorCode::InvalidToken
        );
    }

    #[test]
    fn expiry_and_the_lifetime_cap_both_end_a_token() {
        let key = TokenKey::from_secret(&[7; 32]);
        let now = now_secs();
        let t = key.sign(&Claims {
            sub: "bob".into(),
            iat: now - 100,
            exp: now - 10,
            grants: Default::default(),
        });
        let e = key.verify(&t, HOUR, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::CredentialsExpired);
        assert!(e.message.contains("expired 10s ago"), "{}", e.message);
        // Minted for a day, but the gateway accepts credentials for an hour.
        let t = key.sign(&Claims {
            sub: "bob".into(),
            iat: now - 3700,
            exp: now + 86_400,
            grants: Default::default(),
        });
        let e = key.verify(&t, HOUR, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::CredentialsExpired);
        assert!(e.message.contains("at most 1h"), "{}", e.message);
        let ok = key.verify(&t, 2 * HOUR, now).expect("within two hours");
        assert_eq!(ok.exp, now - 3700 + 7200);
    }

    #[test]
    fn key_files_are_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/gateway.key");
        let a = TokenKey::load_or_create(&path).unwrap();
        let b = TokenKey::load(&path).unwrap();
        let t = a.mint("carol", HOUR, Default::default());
        assert!(b.verify(&t, HOUR, now_secs()).is_ok());
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            TokenKey::load(&path),
            Err(KeyError::Invalid { .. })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const SECRET: [u8; 32] = [7; 32];

        fn key() -> TokenKey {
            TokenKey::from_secret(&SECRET)
        }

        fn valid() -> String {
            key().mint(
                "alice",
                HOUR,
                crate::roles::Grants::parse_specs(["soc=owner", "*=reader"], false).unwrap(),
            )
        }

        /// Signs `body` (already base64) as this deployment would.
        fn signed(body: &str) -> String {
            let k = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);
            let tag = hmac::sign(&k, format!("{PREFIX}{body}").as_bytes());
            format!("{PREFIX}{body}.{}", B64.encode(tag.as_ref()))
        }

        fn role() -> impl Strategy<Value = crate::roles::Role> {
            prop_oneof![
                Just(crate::roles::Role::Reader),
                Just(crate::roles::Role::Contributor),
                Just(crate::roles::Role::Owner),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_text_is_refused_with_a_code(text in ".{0,300}") {
                let e = key().verify(&text, HOUR, now_secs()).unwrap_err();
                prop_assert_eq!(e.code, ErrorCode::InvalidToken);
            }

            #[test]
            fn arbitrary_bytes_are_refused_with_a_code(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let text = String::from_utf8_lossy(&bytes);
                let e = key().verify(&text, HOUR, now_secs()).unwrap_err();
                prop_assert_eq!(e.code, ErrorCode::InvalidToken);
            }

            /// A real token with one character changed, dropped or added,
            /// or cut short: refused, never accepted as something else.
            #[test]
            fn a_damaged_token_is_refused(at in any::<prop::sample::Index>(), c in any::<char>(), how in 0..4u8) {
                let t = valid();
                let mut chars: Vec<char> = t.chars().collect();
                let i = at.index(chars.len());
                match how {
                    0 if chars[i] != c => chars[i] = c,
                    0 => chars[i] = if c == 'A' { 'B' } else { 'A' },
                    1 => { chars.remove(i); }
                    2 => chars.insert(i, c),
                    _ => chars.truncate(i),
                }
                let damaged: String = chars.into_iter().collect();
                let e = key().verify(&damaged, HOUR, now_secs()).unwrap_err();
                prop_assert_eq!(e.code, ErrorCode::InvalidToken);
            }

            /// Correctly signed claims that are not claims (any bytes,
            /// any JSON of the wrong shape): a coded refusal.
            #[test]
            fn signed_nonsense_claims_are_refused(
                body in prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| B64.encode(b)),
                    "[a-zA-Z0-9_-]{0,64}",
                    ".{0,40}".prop_map(|s| B64.encode(format!("{{\"sub\": {s:?}}}"))),
                    any::<i64>().prop_map(|n| B64.encode(format!("{{\"sub\":\"a\",\"iat\":{n},\"exp\":\"x\"}}"))),
                ],
            ) {
                let e = key().verify(&signed(&body), HOUR, now_secs()).unwrap_err();
                prop_assert_eq!(e.code, ErrorCode::InvalidToken);
            }

            /// Any user, lifetime and roles survive minting and checking.
            #[test]
            fn a_valid_token_round_trips(
                user in ".{1,40}",
                ttl in 1u64..1_000_000,
                roles in prop::collection::btree_map("[a-z*][a-z0-9_]{0,10}", role(), 0..4),
                operator in any::<bool>(),
            ) {
                let grants = crate::roles::Grants { roles, operator };
                let now = now_secs();
                let t = key().mint(&user, Duration::from_secs(ttl), grants.clone());
                let c = key().verify(&t, Duration::from_secs(2_000_000), now).unwrap();
                prop_assert_eq!(&c.sub, &user);
                prop_assert_eq!(&c.grants, &grants);
                prop_assert!(c.exp >= now + ttl && c.exp <= now + ttl + 2);
                // Past its expiry it is refused with the expiry code.
                let e = key().verify(&t, Duration::from_secs(2_000_000), c.exp).unwrap_err();
                prop_assert_eq!(e.code, ErrorCode::CredentialsExpired);
            }
        }
    }
}
