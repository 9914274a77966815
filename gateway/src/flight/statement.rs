//! Statements: GetFlightInfo plans one and hands out a ticket carrying
//! what DoGet needs to run it (a planned read is kept a little while, so
//! its DoGet need not plan it again); DoGet runs it and streams batches as
//! executors produce them; a cancel finds the caller's runs by ticket.

use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{Any, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use prost::Message;
use tarn_common::TarnError;
use tonic::{Response, Status};

use super::{BoxStream, PlannedRead, StatementTicket, TarnFlightSql, PLAN_REUSE};
use crate::query::new_query_id;
use crate::session::{bind_parameters, Session};

impl TarnFlightSql {
    pub(super) async fn statement_info(
        &self,
        session: &Session,
        t: StatementTicket,
        params: Option<RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned = self
            .sessions
            .plan_in(
                session,
                &session.grants,
                &t.workspace,
                &t.sql,
                t.language.into(),
                &t.query_id,
            )
            .await?;
        // A read's plan (a prepared statement's with the parameters bound
        // now, which are the ones its DoGet must run with) waits for the
        // DoGet: each GetFlightInfo has its own query id.
        let reusable = matches!(planned.effect, crate::write::Effect::Nothing);
        let plan = bind_parameters(planned.plan, params.as_ref())?;
        let schema = plan.schema().as_arrow().clone();
        if reusable {
            if self.planned.len() >= 1024 {
                self.planned.retain(|_, p| p.at.elapsed() < PLAN_REUSE);
            }
            self.planned.insert(
                t.query_id.clone(),
                PlannedRead {
                    session_id: session.id.clone(),
                    plan,
                    at: std::time::Instant::now(),
                },
            );
        }
        let handle = serde_json::to_vec(&t)
            .map_err(|e| TarnError::internal(format!("cannot encode the statement handle: {e}")))?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec();
        Ok(Response::new(
            self.flight_info(&schema, ticket, descriptor)?,
        ))
    }

    /// Plans and runs a ticketed statement, streaming batches as executors
    /// produce them.
    pub(super) async fn run(
        &self,
        session: &Session,
        t: StatementTicket,
    ) -> Result<BoxStream<arrow_flight::FlightData>, Status> {
        // Each DoGet is its own run with a server-made id (the Ballista job
        // name): a replayed or forged ticket can never share or cancel
        // someone else's job.
        let reuse = self
            .planned
            .remove(&t.query_id)
            .map(|(_, p)| p)
            .filter(|p| p.session_id == session.id && p.at.elapsed() < PLAN_REUSE);
        // A prepared statement closed since its GetFlightInfo is refused
        // either way.
        let params = match &t.prepared {
            Some(h) => self
                .prepared(h.as_bytes(), session)?
                .1
                .params
                .lock()
                .clone(),
            None => None,
        };
        let q = match reuse {
            Some(p) => {
                let run_id = new_query_id();
                let state = self.sessions.run_state(session, &t.workspace, &run_id);
                self.queries
                    .start_planned(
                        session,
                        crate::session::Planned {
                            plan: p.plan,
                            state,
                            effect: crate::write::Effect::Nothing,
                        },
                        run_id,
                        &t.query_id,
                    )
                    .await?
            }
            None => {
                self.queries
                    .start_in(
                        session,
                        &session.grants,
                        &t.workspace,
                        &t.sql,
                        t.language.into(),
                        params.as_ref(),
                        &t.query_id,
                    )
                    .await?
            }
        };
        tracing::debug!(run_id = %q.run_id, "streaming results");
        // A direct run's messages go out as the executor encoded them.
        let flight = q.stream.into_flight(q.schema).map_err(Status::from);
        Ok(Box::pin(flight))
    }

    /// Cancels the caller's runs of a ticket: their streams end with
    /// `CANCELLED` and their Ballista jobs are cancelled on the executors
    /// at once, whether or not the client still reads.
    pub(super) fn cancel(&self, ticket: &[u8], session: &Session) -> bool {
        let Some(t) = Any::decode(ticket)
            .ok()
            .and_then(|a| a.unpack::<TicketStatementQuery>().ok().flatten())
            .and_then(|t| serde_json::from_slice::<StatementTicket>(&t.statement_handle).ok())
        else {
            return false;
        };
        self.queries.cancel_ticket(&t.query_id, &session.id)
    }
}
