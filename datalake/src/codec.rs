//! Logical codec that carries [`LakeTable`]s from the gateway to the
//! coordinator inside Ballista's logical plans.
//!
//! A table travels as its pinned snapshot (version and file list), so the
//! coordinator plans exactly what the gateway resolved without touching the
//! Delta log again. Everything else is delegated to Ballista's own codec.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::table::{LakeTable, LakeTableSpec};

/// Prefix marking an encoded [`LakeTable`], so decoding never confuses it
/// with a table Ballista's codec encoded.
const MAGIC: &[u8] = b"TARNLAKE1:";

/// Prefix marking an encoded [`crate::series::SeriesTable`].
const SERIES: &[u8] = b"TARNSERIES1:";

/// Tarn's logical extension codec.
#[derive(Debug, Default)]
pub struct LakeLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LakeLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(MAGIC) {
            Some(body) => {
                let spec: LakeTableSpec = serde_json::from_slice(body).map_err(|e| {
                    DataFusionError::Internal(format!("corrupt lake table in plan: {e}"))
                })?;
                Ok(Arc::new(LakeTable::new(spec)))
            }
            None => match buf.strip_prefix(SERIES) {
                Some(body) => Ok(Arc::new(crate::series::SeriesTable::decode(body, ctx)?)),
                None => self
                    .inner
                    .try_decode_table_provider(buf, table_ref, schema, ctx),
            },
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(table) = any.downcast_ref::<LakeTable>() {
            buf.extend_from_slice(MAGIC);
            serde_json::to_writer(&mut *buf, table.spec())
                .map_err(|e| DataFusionError::Internal(format!("cannot encode lake table: {e}")))?;
            return Ok(());
        }
        if let Some(series) = any.downcast_ref::<crate::series::SeriesTable>() {
            buf.extend_from_slice(SERIES);
            buf.extend_from_slice(&series.encode()?);
            return Ok(());
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        // KQL's functions travel by name; every node knows them.
        match tarn_kql::functions::udf(name) {
            Some(f) => Ok(f),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}
