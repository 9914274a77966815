//! Direct-run reservations the coordinator signs and executors check.
//!
//! A direct run skips Ballista: the gateway hands a plan straight to an
//! executor's Flight port. The executor must not run whatever arrives
//! there, so the coordinator signs each reservation it grants — for one
//! plan (its SHA-256), one executor, one lease, for a short time — with a
//! key that only coordinators and executors hold. The executor runs a plan
//! only with a grant that verifies for that plan and itself, and only once.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

use crate::auth::{TokenKey, Unsealed};
use crate::{ErrorCode, TarnError};

const PREFIX: &str = "rsv.";

/// How long a grant may wait between the coordinator and the executor.
pub const GRANT_TTL: Duration = Duration::from_secs(60);

/// What a grant allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The reservation's id (also in the ticket, and released with it).
    pub reservation_id: String,
    /// The only executor that may run it.
    pub executor_id: String,
    /// The lease whose vCores it holds.
    pub lease_id: String,
    /// SHA-256 of the encoded plan, hex.
    pub plan_sha256: String,
    /// Expiry, milliseconds since the epoch.
    pub exp_ms: u64,
    /// vCores reserved: the run's memory share on the executor follows them.
    #[serde(default)]
    pub vcores: u32,
}

/// SHA-256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Grant {
    /// The grant as a signed string.
    pub fn sign(&self, key: &TokenKey) -> String {
        key.seal(PREFIX, self)
    }

    /// Reads a signed grant, checking its signature only.
    pub fn verify(signed: &str, key: &TokenKey) -> Result<Grant, TarnError> {
        let bad = |why: &str| {
            TarnError::new(
                ErrorCode::ReservationInvalid,
                format!("the direct run's reservation is not valid: {why}"),
            )
        };
        if signed.is_empty() {
            return Err(bad("the ticket carries none"));
        }
        key.open(PREFIX, signed).map_err(|u| {
            bad(match u {
                Unsealed::NoPrefix => "it is not a reservation",
                Unsealed::NoSignature => "it has no signature",
                Unsealed::SignatureNotBase64 => "its signature is not base64url",
                Unsealed::OtherKey => "it was not signed by this cluster's coordinator",
                Unsealed::Unreadable => "its body is not readable",
            })
        })
    }
}

/// An executor's check of the grants it is shown: each must be for this
/// executor and this plan, unexpired, and never seen before.
#[derive(Debug)]
pub struct GrantChecker {
    key: TokenKey,
    executor_id: String,
    /// Reservation ids already used, with their expiry (ms).
    used: Mutex<HashMap<String, u64>>,
}

impl GrantChecker {
    /// A checker for `executor_id` with the cluster's reservation key.
    pub fn new(key: TokenKey, executor_id: impl Into<String>) -> Self {
        Self {
            key,
            executor_id: executor_id.into(),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Admits `plan` under `signed` (for reservation `reservation_id`) once.
    pub fn admit(
        &self,
        signed: &str,
        reservation_id: &str,
        plan: &[u8],
        now_ms: u64,
    ) -> Result<Grant, TarnError> {
        let grant = Grant::verify(signed, &self.key)?;
        let bad = |why: String| {
            TarnError::new(
                ErrorCode::ReservationInvalid,
                format!("the direct run's reservation is not valid: {why}"),
            )
        };
        if grant.reservation_id != reservation_id {
            return Err(bad("it is for another reservation".into()));
        }
        if grant.executor_id != self.executor_id {
            return Err(bad(format!(
                "it is for executor {}, not this one",
                grant.executor_id
            )));
        }
        if now_ms >= grant.exp_ms {
            return Err(bad("it has expired".into()));
        }
        if grant.plan_sha256 != sha256_hex(plan) {
            return Err(bad("it was granted for another plan".into()));
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, exp| *exp > now_ms);
        if used.contains_key(&grant.reservation_id) {
            return Err(bad("it was used already".into()));
        }
        used.insert(grant.reservation_id.clone(), grant.exp_ms);
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(plan: &[u8], exp_ms: u64) -> Grant {
        Grant {
            reservation_id: "direct-1".into(),
            executor_id: "interactive-a".into(),
            lease_id: "lease-1".into(),
            plan_sha256: sha256_hex(plan),
            exp_ms,
            vcores: 1,
        }
    }

    #[test]
    fn a_grant_admits_its_plan_on_its_executor_once() {
        let key = TokenKey::from_secret(&[7u8; 32]);
        let checker = GrantChecker::new(TokenKey::from_secret(&[7u8; 32]), "interactive-a");
        let signed = grant(b"plan", 10_000).sign(&key);
        assert!(checker.admit(&signed, "direct-1", b"plan", 1_000).is_ok());
        let replay = checker
            .admit(&signed, "direct-1", b"plan", 1_001)
            .unwrap_err();
        assert_eq!(replay.code, ErrorCode::ReservationInvalid);
        assert!(replay.message.contains("used already"), "{replay}");
    }

    #[test]
    fn a_grant_refuses_another_plan_executor_key_or_time() {
        let key = TokenKey::from_secret(&[7u8; 32]);
        let signed = grant(b"plan", 10_000).sign(&key);
        let here = || GrantChecker::new(TokenKey::from_secret(&[7u8; 32]), "interactive-a");
        let cases = [
            (
                here().admit(&signed, "direct-1", b"other plan", 1),
                "another plan",
            ),
            (
                here().admit(&signed, "direct-2", b"plan", 1),
                "another reservation",
            ),
            (
                here().admit(&signed, "direct-1", b"plan", 10_000),
                "expired",
            ),
            (
                GrantChecker::new(TokenKey::from_secret(&[7u8; 32]), "interactive-b")
                    .admit(&signed, "direct-1", b"plan", 1),
                "not this one",
            ),
            (
                GrantChecker::new(TokenKey::from_secret(&[8u8; 32]), "interactive-a")
                    .admit(&signed, "direct-1", b"plan", 1),
                "not signed by",
            ),
            (here().admit("", "direct-1", b"plan", 1), "carries none"),
            (
                here().admit("rsv.e30.AAAA", "direct-1", b"plan", 1),
                "not signed by",
            ),
        ];
        for (result, why) in cases {
            let e = result.unwrap_err();
            assert_eq!(e.code, ErrorCode::ReservationInvalid);
            assert!(e.message.contains(why), "{e} should say {why}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever string arrives as a grant, it is refused with the
        /// reservation code, never admitted and never a panic.
        #[test]
        fn arbitrary_grants_are_refused(s in ".{0,200}", tail in "[A-Za-z0-9_.-]{0,120}") {
            let checker = GrantChecker::new(TokenKey::from_secret(&[5u8; 32]), "e");
            for g in [s.clone(), format!("rsv.{tail}"), format!("rsv.{tail}.{s}")] {
                let e = checker.admit(&g, "r", b"p", 0).unwrap_err();
                proptest::prop_assert_eq!(e.code, ErrorCode::ReservationInvalid);
            }
        }
    }
}
