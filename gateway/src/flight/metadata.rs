//! Metadata calls (catalogs, schemas, tables, table types, SQL info): the
//! FlightInfo's ticket is the command itself, answered at DoGet from the
//! current lake and showing only the workspaces the caller sees.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, ProstMessageExt};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use futures::TryStreamExt;
use prost::Message;
use tarn_common::{TarnError, CATALOG};
use tonic::{Request, Response, Status};

use super::{BoxStream, TarnFlightSql};

impl TarnFlightSql {
    /// FlightInfo for a metadata command: its result schema, and the
    /// command itself as the ticket (metadata is computed at `DoGet`).
    pub(super) async fn metadata_info<C: ProstMessageExt>(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: &C,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(request.metadata()).await?;
        let ticket = command.as_any().encode_to_vec();
        let info = self.flight_info(schema, ticket, request.into_inner())?;
        Ok(Response::new(info))
    }

    /// A one-batch metadata result.
    pub(super) fn batch_response<E: std::fmt::Display>(
        &self,
        built: Result<RecordBatch, E>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let batch = built
            .map_err(|e| TarnError::internal(format!("cannot build the metadata batch: {e}")))?;
        Ok(Response::new(self.batch_stream(batch.schema(), batch)))
    }

    fn batch_stream(
        &self,
        schema: Arc<Schema>,
        batch: RecordBatch,
    ) -> BoxStream<arrow_flight::FlightData> {
        let s = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { Ok(batch) }))
            .map_err(|e| TarnError::internal(format!("cannot encode the result: {e}")).to_status());
        Box::pin(s)
    }

    /// The workspaces the caller sees, as schemas of the `tarn` catalog.
    pub(super) async fn list_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let session = self.session(request.metadata()).await?;
        let names = self.sessions.refresh_all().await?;
        let mut b = query.into_builder();
        for n in names.into_iter().filter(|n| session.grants.sees(n)) {
            b.append(CATALOG, n);
        }
        self.batch_response(b.build())
    }

    /// The tables of the workspaces the caller sees, with their schemas
    /// when asked.
    pub(super) async fn list_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let session = self.session(request.metadata()).await?;
        let names = self.sessions.refresh_all().await?;
        let mut b = tables_builder(&query);
        let lake = self.sessions.lake();
        for ws_name in names.into_iter().filter(|n| session.grants.sees(n)) {
            let ws = lake
                .workspace(&ws_name)
                .await
                .map_err(|e| Status::from(e.to_tarn()))?;
            for t in ws.cached_table_names() {
                let schema = if query.include_schema {
                    match ws.table(&t).await {
                        Ok(table) => datafusion::catalog::TableProvider::schema(table.as_ref())
                            .as_ref()
                            .clone(),
                        Err(_) => continue, // dropped between listing and reading
                    }
                } else {
                    Schema::empty()
                };
                b.append(CATALOG, &ws_name, &t, "TABLE", &schema)
                    .map_err(|e| TarnError::internal(format!("cannot list table '{t}': {e}")))?;
            }
        }
        self.batch_response(b.build())
    }
}

pub(super) fn tables_builder(
    q: &CommandGetTables,
) -> arrow_flight::sql::metadata::GetTablesBuilder {
    arrow_flight::sql::metadata::GetTablesBuilder::new(
        q.catalog.clone(),
        q.db_schema_filter_pattern.clone(),
        q.table_name_filter_pattern.clone(),
        q.table_types.clone(),
        q.include_schema,
    )
}
