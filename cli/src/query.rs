//! `tarn kql …` and `tarn sql …`: one query against a gateway over Flight
//! SQL, its result printed as a table, CSV or JSON lines.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use clap::{Args, ValueEnum};
use futures::TryStreamExt;
use tarn_common::TarnError;

/// The header naming a request's query language.
const LANGUAGE_HEADER: &str = "x-tarn-language";

/// How a result is printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// A query and where to send it.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The query; leave it out to read it from `--file` or standard input.
    query: Option<String>,
    /// Read the query from this file (`-` for standard input).
    #[arg(short = 'f', long = "file", conflicts_with = "query")]
    file: Option<PathBuf>,
    /// The gateway's Flight SQL address (`host:port` or `grpc://host:port`).
    #[arg(long, env = "TARN_GATEWAY_FLIGHT", default_value = "127.0.0.1:50060")]
    flight: String,
    /// A bearer token (`tarn token`); none in dev mode.
    #[arg(long, env = "TARN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The workspace unqualified table names resolve in (default: the
    /// session's, `demo` on a standalone).
    #[arg(long)]
    workspace: Option<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// The query language a subcommand sends.
#[derive(Debug, Clone, Copy)]
pub enum Language {
    /// `tarn sql`.
    Sql,
    /// `tarn kql`.
    Kql,
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Sql => "sql",
            Language::Kql => "kql",
        }
    }
}

/// Runs the query and prints its result; a refusal is an error naming its
/// code, cause and fix.
pub async fn run(args: QueryArgs, language: Language) -> anyhow::Result<()> {
    let text = query_text(&args)?;
    let batches = match fetch(&args, language, &text).await? {
        Ok(b) => b,
        Err(e) => {
            // The server's refusal, as it is: code, cause and fix.
            eprintln!(
                "{} {}: {}\n  fix: {}",
                e.code,
                e.code.name(),
                e.message,
                e.fix()
            );
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    print(&mut out, &batches, args.format)?;
    out.flush()?;
    Ok(())
}

/// The query from the argument, the file, or standard input.
fn query_text(args: &QueryArgs) -> anyhow::Result<String> {
    let text = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => read_stdin()?,
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the query from {}", f.display()))?,
        (None, None) => read_stdin()?,
    };
    if text.trim().is_empty() {
        bail!("the query is empty: give it as an argument, with -f FILE, or on standard input");
    }
    Ok(text)
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the query from standard input")?;
    Ok(s)
}

/// Runs `text` in `language`: every batch, or the server's refusal.
async fn fetch(
    args: &QueryArgs,
    language: Language,
    text: &str,
) -> anyhow::Result<Result<Vec<RecordBatch>, TarnError>> {
    let addr = args
        .flight
        .trim_start_matches("grpc://")
        .trim_start_matches("http://");
    if addr.starts_with("grpc+tls://") || addr.starts_with("https://") {
        bail!("--flight {addr}: this command speaks plain gRPC; give the gateway's host:port");
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .with_context(|| format!("--flight {addr:?} is not host:port"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the gateway's Flight SQL port at {addr}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_header(LANGUAGE_HEADER, language.name());
    if let Some(ws) = &args.workspace {
        client.set_header("x-tarn-workspace", ws);
    }
    if let Some(t) = &args.token {
        client.set_token(t.trim().to_string());
    }
    let info = match client.execute(text.to_string(), None).await {
        Ok(i) => i,
        Err(e) => return Ok(Err(refusal(e))),
    };
    let mut out = Vec::new();
    for ep in info.endpoint {
        let Some(ticket) = ep.ticket else { continue };
        let stream = match client.do_get(ticket).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(refusal(e))),
        };
        match stream.try_collect::<Vec<_>>().await {
            Ok(b) => out.extend(b),
            Err(e) => return Ok(Err(refusal(e))),
        }
    }
    Ok(Ok(out))
}

/// A client error as the server's coded error.
fn refusal(e: FlightError) -> TarnError {
    match e {
        FlightError::Tonic(s) => TarnError::from_status(&s),
        other => TarnError::from_status(&tonic::Status::unknown(other.to_string())),
    }
}

/// Writes the batches in `format`.
fn print(out: &mut impl Write, batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let shown = arrow::util::pretty::pretty_format_batches(batches)?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(out, "{shown}")?;
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ResultType", DataType::Utf8, false),
            Field::new("count_", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["0", "50126"])),
                Arc::new(Int64Array::from(vec![10, 3])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn results_print_as_a_table_csv_or_json_lines() {
        let mut out = Vec::new();
        print(&mut out, &[batch()], Format::Table).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("| ResultType | count_ |"), "{text}");
        assert!(text.trim_end().ends_with("(2 rows)"), "{text}");
        let mut out = Vec::new();
        print(&mut out, &[batch()], Format::Csv).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ResultType,count_\n0,10\n50126,3\n"
        );
        let mut out = Vec::new();
        print(&mut out, &[batch()], Format::Json).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ResultType\":\"0\",\"count_\":10}\n{\"ResultType\":\"50126\",\"count_\":3}\n"
        );
    }
}
