//! Which session a Flight request runs in: the one a handshake opened
//! (its id is then the bearer), or one opened on first use for a token or,
//! in dev mode, for no credentials at all; and what CloseSession ends.

use std::sync::Arc;

use tarn_common::{ErrorCode, TarnError};
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::{TarnFlightSql, LANGUAGE_HEADER, SIZE_HEADER, VCORES_HEADER, WORKSPACE_HEADER};
use crate::lease::LeaseWish;
use crate::session::{Language, Session};

impl TarnFlightSql {
    /// The session a request belongs to: the session id a handshake
    /// returned, or the session of the token (or, in dev mode, of no
    /// credentials at all) it carries.
    pub(super) async fn session(&self, md: &MetadataMap) -> Result<Arc<Session>, Status> {
        let auth = md.get("authorization").and_then(|v| v.to_str().ok());
        if let Some(id) = auth.and_then(session_id_of) {
            return Ok(self.sessions.lookup(id)?);
        }
        if let Some(pass) = auth.and_then(pass_of) {
            return Ok(self.sessions.by_pass(pass)?);
        }
        let who = self.auth.identify(auth, None)?;
        let key = who
            .token
            .clone()
            .unwrap_or_else(|| format!("dev:{}", who.user));
        // One opener per key at a time, without holding up other keys
        // while the coordinator grants (or refuses) a lease.
        let slot = {
            let mut implicit = self.implicit.lock();
            implicit.retain(|_, s| {
                s.try_lock()
                    .map(|g| g.as_ref().is_some_and(|s| self.sessions.is_open(&s.id)))
                    .unwrap_or(true)
            });
            Arc::clone(implicit.entry(key).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref().and_then(|s| self.sessions.get(&s.id)) {
            return Ok(s);
        }
        let s = self.sessions.open(&who, &lease_wish(md)?).await?;
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Flight's CloseSession. A session opened by a handshake belongs to
    /// the client holding its id: it ends, and its vCores return now rather
    /// than after the idle timeout. A shared session — one per token, or the
    /// anonymous one of dev mode — serves every client sending the same
    /// credentials, so one of them leaving must not end it for the others:
    /// only the prepared statements the calling connection created are
    /// closed, and the session ends when idle (or by `DELETE /v1/sessions`).
    pub(super) async fn close_session(
        &self,
        session: &Session,
        md: &MetadataMap,
        peer: Option<std::net::SocketAddr>,
    ) {
        let owned = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(session_id_of)
            .is_some();
        if owned {
            self.sessions.close(&session.id).await;
            self.purge_orphans();
            return;
        }
        let before = self.prepared.len();
        self.prepared
            .retain(|_, p| !(p.session_id == session.id && peer.is_some() && p.peer == peer));
        tracing::info!(
            session = %session.id,
            user = %session.user,
            closed_statements = before.saturating_sub(self.prepared.len()),
            "CloseSession on a shared session: the caller's prepared statements closed, the session stays"
        );
    }

    pub(super) fn workspace(&self, session: &Session, md: &MetadataMap) -> String {
        md.get(WORKSPACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| session.workspace.read().clone())
    }
}

/// Session size a client asks for at handshake: `x-tarn-vcores: N` or
/// `x-tarn-session-size: small|medium|large`.
pub(super) fn lease_wish(md: &MetadataMap) -> Result<LeaseWish, TarnError> {
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let vcores = match get(VCORES_HEADER) {
        None | Some("") => 0,
        Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("{VCORES_HEADER} must be a positive number of vCores, not {v:?}"),
            )
        })?,
    };
    Ok(LeaseWish {
        vcores,
        size: get(SIZE_HEADER).unwrap_or_default().to_string(),
    })
}

/// The session id in a bearer header, if that is what it carries (signed
/// tokens start with `tarn.`; session ids are plain hex).
pub(super) fn session_id_of(header: &str) -> Option<&str> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(value)
}

/// A hosted kernel's credential in a bearer header, if that is what it
/// carries.
pub(super) fn pass_of(header: &str) -> Option<&str> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer") && value.starts_with(crate::session::PASS_PREFIX))
        .then_some(value)
}

/// The `x-tarn-language` header's language (SQL when absent); an unknown
/// name is refused, naming it.
pub(super) fn language_of(md: &MetadataMap) -> Result<Language, TarnError> {
    let Some(v) = md.get(LANGUAGE_HEADER) else {
        return Ok(Language::Sql);
    };
    let name = v.to_str().map_err(|_| {
        TarnError::new(
            ErrorCode::InvalidArgument,
            format!("the {LANGUAGE_HEADER} header is not readable text"),
        )
        .with_fix(format!("send {LANGUAGE_HEADER}: sql (the default) or kql"))
    })?;
    Language::named(Some(name)).map_err(|e| TarnError {
        message: format!("{LANGUAGE_HEADER}: {}", e.message),
        fix: Some(format!(
            "send {LANGUAGE_HEADER}: sql (the default) or kql (ADBC: the option adbc.flight.sql.rpc.call_header.{LANGUAGE_HEADER})"
        )),
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert(LANGUAGE_HEADER, value.parse().unwrap());
        md
    }

    #[test]
    fn the_language_header_picks_sql_or_kql_and_refuses_others_by_name() {
        assert_eq!(language_of(&MetadataMap::new()).unwrap(), Language::Sql);
        assert_eq!(language_of(&with("sql")).unwrap(), Language::Sql);
        assert_eq!(language_of(&with("KQL")).unwrap(), Language::Kql);
        let e = language_of(&with("cobol")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("'cobol'") && e.message.contains(LANGUAGE_HEADER),
            "{e}"
        );
        assert!(e.fix().contains("kql"), "{e:?}");
    }
}
