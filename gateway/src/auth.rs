//! Who is calling: signed bearer tokens on every protocol.
//!
//! Flight SQL sends `authorization: Bearer <token>` (or basic credentials
//! whose password is a token, at handshake), REST sends `Authorization:
//! Bearer <token>`, and Jupyter's gateway client sends `Authorization:
//! token <token>`; websockets may also carry `?token=`. All of them are the
//! same signed tokens (`tarn_common::auth`). In dev mode a request without
//! credentials runs as `anonymous`.

use std::time::Duration;

use tarn_common::auth::{now_secs, TokenKey};
use tarn_common::{ErrorCode, TarnError};

/// The user a dev-mode request without credentials runs as.
pub const ANONYMOUS: &str = "anonymous";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: String,
    /// When the credential stops being accepted (ms since the epoch);
    /// `None` for dev-mode callers without a token.
    pub expires_ms: Option<u64>,
    /// The token itself, when there was one (sessions opened by a token
    /// are found again by it).
    pub token: Option<String>,
    /// Roles per workspace (dev-mode callers own every workspace).
    pub grants: tarn_common::roles::Grants,
}

/// Checks credentials against the deployment's key.
#[derive(Debug)]
pub struct Authenticator {
    key: Option<TokenKey>,
    /// Earlier keys whose tokens are still accepted (key rotation).
    previous: Vec<TokenKey>,
    dev: bool,
    lifetime: Duration,
}

impl Authenticator {
    /// `dev` serves requests without credentials as `anonymous`; tokens
    /// need `key`. Token mode without a key refuses to start.
    pub fn new(mode: &str, key: Option<TokenKey>, lifetime: Duration) -> Result<Self, String> {
        let dev = match mode {
            "dev" => true,
            "token" => false,
            other => return Err(format!("auth must be \"token\" or \"dev\", not {other:?}")),
        };
        if !dev && key.is_none() {
            return Err("authentication needs a signing key: set auth_key_file \
                 (--auth-key-file, TARN_GATEWAY__AUTH_KEY_FILE; create one with \
                 `tarn token --key-file F --create-key`), or run with auth = \"dev\" \
                 on a trusted machine"
                .into());
        }
        Ok(Self {
            key,
            previous: Vec::new(),
            dev,
            lifetime,
        })
    }

    /// Also accepts tokens signed with `keys` (the keys being rotated out).
    pub fn with_previous_keys(mut self, keys: Vec<TokenKey>) -> Self {
        self.previous = keys;
        self
    }

    /// Whether requests without credentials are served.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// The credential lifetime tokens are capped at.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Verifies a bare token.
    pub fn token(&self, token: &str) -> Result<Identity, TarnError> {
        let Some(key) = &self.key else {
            return Err(TarnError::new(
                ErrorCode::InvalidToken,
                "this gateway has no signing key, so it accepts no tokens",
            )
            .with_fix("omit credentials (dev mode), or configure auth_key_file"));
        };
        let now = now_secs();
        // A token another key signed is tried against the keys being
        // rotated out; any other refusal (expired, too old) is final.
        let mut result = key.verify(token, self.lifetime, now);
        let unsigned =
            |r: &Result<_, TarnError>| matches!(r, Err(e) if e.code == ErrorCode::InvalidToken);
        for old in &self.previous {
            if !unsigned(&result) {
                break;
            }
            let r = old.verify(token, self.lifetime, now);
            if !unsigned(&r) {
                result = r;
            }
        }
        let claims = result?;
        Ok(Identity {
            user: claims.sub,
            expires_ms: Some(claims.exp.saturating_mul(1000)),
            token: Some(token.to_string()),
            grants: claims.grants,
        })
    }

    /// The caller of a request, from its `Authorization` header (if any)
    /// and a `token` query parameter (websockets, whose browser clients
    /// cannot set headers).
    pub fn identify(
        &self,
        header: Option<&str>,
        query_token: Option<&str>,
    ) -> Result<Identity, TarnError> {
        if let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) {
            let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
            let value = value.trim();
            return match scheme.to_ascii_lowercase().as_str() {
                "bearer" | "token" => self.token(value),
                "basic" => self.basic(value),
                _ => Err(TarnError::new(
                    ErrorCode::Unauthenticated,
                    format!("the authorization scheme {scheme:?} is not supported"),
                )
                .with_fix("send `Authorization: Bearer <token>`")),
            };
        }
        if let Some(t) = query_token.filter(|t| !t.is_empty()) {
            return self.token(t);
        }
        if self.dev {
            return Ok(Identity {
                user: ANONYMOUS.into(),
                expires_ms: None,
                token: None,
                grants: tarn_common::roles::Grants::owner_everywhere(),
            });
        }
        Err(TarnError::new(
            ErrorCode::Unauthenticated,
            "this request carries no credentials",
        )
        .with_fix(
            "send `Authorization: Bearer <token>` with a token from `tarn token --user <name>` \
             (Flight SQL: the bearer header, or basic credentials with the token as password)",
        ))
    }

    /// Basic credentials: in token mode the password is a token naming
    /// the same user; in dev mode any user name is accepted.
    fn basic(&self, b64: &str) -> Result<Identity, TarnError> {
        use base64::Engine;
        let bad = || {
            TarnError::new(
                ErrorCode::Unauthenticated,
                "the basic credentials are not base64 of `user:password`",
            )
        };
        // Clients differ on padding and alphabet; accept them all.
        let trimmed = b64.trim().trim_end_matches('=');
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        if password.starts_with("tarn.") {
            let id = self.token(password)?;
            if !user.is_empty() && user != id.user {
                return Err(TarnError::new(
                    ErrorCode::Unauthenticated,
                    format!(
                        "the user name {user:?} does not match the token's user {:?}",
                        id.user
                    ),
                )
                .with_fix("use the token's user name, or leave the user name empty"));
            }
            return Ok(id);
        }
        if self.dev {
            return Ok(Identity {
                user: if user.is_empty() { ANONYMOUS } else { user }.to_string(),
                expires_ms: None,
                token: None,
                grants: tarn_common::roles::Grants::owner_everywhere(),
            });
        }
        Err(TarnError::new(
            ErrorCode::Unauthenticated,
            format!("user {user:?} sent a password that is not a Tarn token"),
        )
        .with_fix("send a token from `tarn token --user <name>` as the password"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn tokens_of_a_key_being_rotated_out_are_still_accepted() {
        let (old, new, other) = (
            TokenKey::from_secret(&[1; 32]),
            TokenKey::from_secret(&[2; 32]),
            TokenKey::from_secret(&[3; 32]),
        );
        let hour = Duration::from_secs(3600);
        let by_old = old.mint("alice", hour, Default::default());
        let by_new = new.mint("bob", hour, Default::default());
        let by_other = other.mint("mallory", hour, Default::default());
        let bearer = |t: &str| format!("Bearer {t}");
        // Control: without the old key, its tokens are refused.
        let a = Authenticator::new("token", Some(TokenKey::from_secret(&[2; 32])), hour).unwrap();
        assert_eq!(
            a.identify(Some(&bearer(&by_old)), None).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        let a = a.with_previous_keys(vec![TokenKey::from_secret(&[1; 32])]);
        assert_eq!(
            a.identify(Some(&bearer(&by_old)), None).unwrap().user,
            "alice"
        );
        assert_eq!(
            a.identify(Some(&bearer(&by_new)), None).unwrap().user,
            "bob"
        );
        assert_eq!(
            a.identify(Some(&bearer(&by_other)), None).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        // An old key's expired token stays expired.
        let expired = old.sign(&tarn_common::auth::Claims {
            sub: "alice".into(),
            iat: now_secs() - 7200,
            exp: now_secs() - 3600,
            grants: Default::default(),
        });
        assert_eq!(
            a.identify(Some(&bearer(&expired)), None).unwrap_err().code,
            ErrorCode::CredentialsExpired
        );
    }

    #[test]
    fn token_mode_needs_credentials_and_a_key() {
        assert!(Authenticator::new("token", None, Duration::from_secs(60)).is_err());
        let key = TokenKey::from_secret(&[1; 32]);
        let t = key.mint("alice", Duration::from_secs(60), Default::default());
        let a = Authenticator::new("token", Some(key), Duration::from_secs(3600)).unwrap();
        let e = a.identify(None, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        assert_eq!(
            a.identify(Some(&format!("Bearer {t}")), None).unwrap().user,
            "alice"
        );
        assert_eq!(
            a.identify(Some(&format!("token {t}")), None).unwrap().user,
            "alice"
        );
        assert_eq!(a.identify(None, Some(&t)).unwrap().user, "alice");
        assert_eq!(
            a.identify(Some(&basic(&format!("alice:{t}"))), None)
                .unwrap()
                .user,
            "alice"
        );
        assert_eq!(
            a.identify(Some(&basic(&format!("bob:{t}"))), None)
                .unwrap_err()
                .code,
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            a.identify(Some(&basic("alice:secret")), None)
                .unwrap_err()
                .code,
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            a.identify(Some("Bearer tarn.x.y"), None).unwrap_err().code,
            ErrorCode::InvalidToken
        );
    }

    #[test]
    fn dev_mode_serves_anonymous_and_named_users() {
        let a = Authenticator::new("dev", None, Duration::from_secs(3600)).unwrap();
        assert_eq!(a.identify(None, None).unwrap().user, ANONYMOUS);
        assert_eq!(
            a.identify(Some(&basic("dana:")), None).unwrap().user,
            "dana"
        );
        assert!(Authenticator::new("open", None, Duration::from_secs(1)).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn header() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,120}",
                ("(Bearer|bearer|token|Basic|Digest)", ".{0,80}")
                    .prop_map(|(s, v)| format!("{s} {v}")),
                prop::collection::vec(any::<u8>(), 0..60).prop_map(|b| {
                    use base64::Engine;
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(b)
                    )
                }),
                ".{0,40}".prop_map(|v| format!("Bearer tarn.{v}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Whatever a client puts in `Authorization` or `?token=`, the
            /// answer is a coded refusal (token mode), never a panic.
            #[test]
            fn any_credential_text_gets_a_coded_answer(h in header(), q in ".{0,60}") {
                let key = TokenKey::from_secret(&[1; 32]);
                let a = Authenticator::new("token", Some(key), Duration::from_secs(3600)).unwrap();
                for (header, query) in [(Some(h.as_str()), None), (None, Some(q.as_str())), (Some(h.as_str()), Some(q.as_str()))] {
                    match a.identify(header, query) {
                        Ok(id) => prop_assert!(false, "accepted {:?} as {}", (header, query), id.user),
                        Err(e) => prop_assert!(
                            matches!(e.code, ErrorCode::Unauthenticated | ErrorCode::InvalidToken),
                            "{:?}", e.code
                        ),
                    }
                }
            }
        }
    }
}
