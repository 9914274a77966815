//! Flight SQL metadata: catalogs, workspaces, tables with schemas, types,
//! SqlInfo, and the HTTP health endpoints.

use arrow::array::{Array, BinaryArray, StringArray};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use tarn_tests::{fetch, Cluster};

fn strings(batches: &[arrow::record_batch::RecordBatch], col: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(col)
            .unwrap_or_else(|| panic!("column {col} missing"))
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("a string column");
        out.extend((0..a.len()).map(|i| a.value(i).to_string()));
    }
    out
}

#[tokio::test]
async fn catalogs_workspaces_tables_and_info() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;

    let info = c.get_catalogs().await?;
    let catalogs = strings(&fetch(&mut c, info).await?, "catalog_name");
    assert_eq!(catalogs, vec!["tarn"]);

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("tarn".into()),
            db_schema_filter_pattern: None,
        })
        .await?;
    let schemas = strings(&fetch(&mut c, info).await?, "db_schema_name");
    assert_eq!(schemas, vec!["demo"]);

    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("tarn".into()),
            db_schema_filter_pattern: Some("demo".into()),
            table_name_filter_pattern: Some("S%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await?;
    let batches = fetch(&mut c, info).await?;
    let names = strings(&batches, "table_name");
    assert_eq!(
        names,
        vec!["SecurityEvent", "SigninLogs"],
        "LIKE-style filter applies"
    );
    // The schema travels as IPC bytes and names the public columns.
    let b = &batches[0];
    let schemas = b
        .column_by_name("table_schema")
        .expect("include_schema adds table_schema")
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("binary");
    let signin_idx = names
        .iter()
        .position(|n| n == "SigninLogs")
        .expect("SigninLogs listed");
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(schemas.value(signin_idx))?;
    for col in [
        "TimeGenerated",
        "UserPrincipalName",
        "IPAddress",
        "ResultType",
        "Location",
        "AppDisplayName",
    ] {
        assert!(schema.field_with_name(col).is_ok(), "SigninLogs has {col}");
    }

    let info = c.get_table_types().await?;
    assert_eq!(
        strings(&fetch(&mut c, info).await?, "table_type"),
        vec!["TABLE"]
    );

    let info = c.get_sql_info(vec![SqlInfo::FlightSqlServerName]).await?;
    let batches = fetch(&mut c, info).await?;
    assert_eq!(tarn_tests::rows(&batches), 1);
    let dump = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    assert!(dump.contains("Tarn"), "server name reported: {dump}");

    let (status, body) = cluster.http_get("/healthz").await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = cluster.http_get("/readyz").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"interactive_executors\":1"), "{body}");
    Ok(())
}
