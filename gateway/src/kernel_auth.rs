//! Who sent a kernel message, and what it may do.
//!
//! A kernel is started by one credential but used by whichever credentials
//! reach it later: a websocket opened with another token of the same user,
//! the same user's REST calls. Each message acts with the credential that
//! sent it, never with the kernel's alone: its grants are the meet of the
//! two (per workspace, the lower role), and it is refused once that
//! credential has expired, even if the kernel's own is still valid.

use tarn_common::roles::Grants;
use tarn_common::{ErrorCode, TarnError};

use crate::auth::Identity;

/// The credential a kernel message arrived with, reduced to what the
/// kernel needs to authorise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The user (the same as the kernel's, or dev mode's anonymous).
    pub user: String,
    /// What the message may do: the sender's grants met with the kernel's.
    pub grants: Grants,
    /// When the sender's credential stops being accepted (ms since the
    /// epoch); `None` for dev-mode callers without a token.
    pub expires_ms: Option<u64>,
}

impl Sender {
    /// The sender `who` acting on a kernel started with `kernel_grants`.
    pub fn new(who: &Identity, kernel_grants: &Grants) -> Self {
        Self {
            user: who.user.clone(),
            grants: who.grants.meet(kernel_grants),
            expires_ms: who.expires_ms,
        }
    }

    /// Whether the credential has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|exp| now_ms >= exp)
    }

    /// Refuses once the credential has expired (TARN-2202), with the way
    /// back: a fresh token on a new websocket.
    pub fn check(&self, now_ms: u64) -> Result<(), TarnError> {
        if !self.expired_at(now_ms) {
            return Ok(());
        }
        Err(TarnError::new(
            ErrorCode::CredentialsExpired,
            format!(
                "the credential of '{}' that sent this message has expired",
                self.user
            ),
        )
        .with_fix(format!(
            "mint a new token (`tarn token --key-file <key> --user {}`) and reconnect the notebook with it; the kernel is running",
            self.user
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(specs: &[&str], expires_ms: Option<u64>) -> Identity {
        Identity {
            user: "dora".into(),
            expires_ms,
            token: Some("t".into()),
            grants: Grants::parse_specs(specs.iter().copied(), false).unwrap(),
        }
    }

    #[test]
    fn a_downgraded_credential_acts_with_its_own_lower_role() {
        let kernel = Grants::parse_specs(["*=owner"], false).unwrap();
        let s = Sender::new(&who(&["*=reader"], None), &kernel);
        let e = s
            .grants
            .require("demo", tarn_common::roles::Role::Owner, "deleting a table")
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDenied);
        // A wider credential does not widen the kernel either.
        let narrow = Grants::parse_specs(["demo=reader"], false).unwrap();
        let s = Sender::new(&who(&["*=owner"], None), &narrow);
        assert!(!s.grants.sees("hr"));
    }

    #[test]
    fn an_expired_credential_is_refused_with_2202() {
        let s = Sender::new(&who(&["*=owner"], Some(1_000)), &Grants::owner_everywhere());
        assert!(s.check(999).is_ok());
        let e = s.check(1_000).unwrap_err();
        assert_eq!(e.code, ErrorCode::CredentialsExpired);
        assert!(e.fix().contains("tarn token"), "{}", e.fix());
        // Dev mode's anonymous callers have no credential to expire.
        let anon = Sender::new(&who(&["*=owner"], None), &Grants::owner_everywhere());
        assert!(anon.check(u64::MAX).is_ok());
    }
}
