//! `tarn job …`: jobs over the gateway's REST API.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the gateway is and who is asking.
#[derive(Args, Debug)]
pub struct Connection {
    /// The gateway's HTTP address (`host:port` or `http://host:port`).
    #[arg(
        long,
        env = "TARN_GATEWAY_HTTP",
        default_value = "127.0.0.1:8060",
        global = true
    )]
    gateway: String,
    /// A bearer token (`tarn token`); none in dev mode.
    #[arg(long, env = "TARN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

/// What a job does and when: the flags `create` and `update` share.
#[derive(Args, Debug, Default)]
pub struct Definition {
    /// A `.sql` script to run (a `.kql` file runs as KQL).
    #[arg(long)]
    sql: Option<PathBuf>,
    /// A `.kql` file: one KQL query to run.
    #[arg(long)]
    kql: Option<PathBuf>,
    /// A `.ipynb` notebook (kernel `tarn-sql`, `tarn-kql` or `tarn-python`)
    /// whose code cells run in order.
    #[arg(long)]
    notebook: Option<PathBuf>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// A parameter default `name=value` (numbers, true/false and null are
    /// typed; anything else is text); repeat for several.
    #[arg(long = "param")]
    params: Vec<String>,
    /// Run every interval (`15m`, `1h`).
    #[arg(long)]
    every: Option<String>,
    /// Run daily at `HH:MM`.
    #[arg(long)]
    daily: Option<String>,
    /// Run on a cron expression (`0 */2 * * *`).
    #[arg(long)]
    cron: Option<String>,
    /// The schedule's IANA time zone (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Named size (`small`, `medium`, `large`).
    #[arg(long)]
    size: Option<String>,
    /// vCores from the job pool (instead of a size).
    #[arg(long)]
    vcores: Option<u32>,
    /// Stop a run after this long (`30m`; default and cap: the operator's).
    #[arg(long)]
    timeout: Option<String>,
    /// Tries in all when a run fails on something another try may not meet.
    #[arg(long)]
    attempts: Option<u32>,
}

/// The job verbs.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Creates a job (checked now against the catalog as you).
    Create {
        /// Its name, unique in the workspace.
        #[arg(long)]
        name: String,
        /// The workspace it runs in.
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        def: Definition,
    },
    /// Changes a job (only what is given).
    Update {
        /// The job id.
        id: String,
        #[command(flatten)]
        def: Definition,
        /// Turn its schedule off (`false`) or on again.
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Jobs you can see.
    List,
    /// One job, its definition and next fire.
    Show {
        /// The job id.
        id: String,
    },
    /// Runs a job now.
    Run {
        /// The job id.
        id: String,
        /// A parameter value `name=value` for this run; repeat for several.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Follow the run to its end (exit status 1 unless it succeeds).
        #[arg(long)]
        wait: bool,
    },
    /// A job's runs, newest first.
    Runs {
        /// The job id.
        id: String,
    },
    /// A run's log.
    Logs {
        /// The run id.
        run: String,
    },
    /// A run's executed notebook.
    Output {
        /// The run id.
        run: String,
        /// Write it here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cancels a queued or running run.
    Cancel {
        /// The run id.
        run: String,
    },
    /// Gives a job fresh credentials (your current roles).
    Renew {
        /// The job id.
        id: String,
    },
    /// Deletes a job and its history.
    Delete {
        /// The job id.
        id: String,
    },
}

struct Api {
    addr: String,
    token: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        tarn_common::http::request_as(&self.addr, method, path, self.token.as_deref(), &body)
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.addr))
    }

    /// A call whose answer must be a success; an error shows its code,
    /// message and fix.
    async fn json(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, text) = self.call(method, path, body).await?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let e = &v["error"];
            let code = e["code"]
                .as_u64()
                .map(|c| format!("TARN-{c} "))
                .unwrap_or_default();
            let name = e["name"]
                .as_str()
                .map(|n| format!("{n}: "))
                .unwrap_or_default();
            let msg = e["message"].as_str().unwrap_or(text.as_str());
            let fix = e["fix"]
                .as_str()
                .map(|f| format!("\n  fix: {f}"))
                .unwrap_or_default();
            bail!("{code}{name}{msg}{fix}");
        }
        Ok(v)
    }
}

/// `name=value` with the value typed as JSON when it reads as a number,
/// boolean or null, else text.
fn parse_params(items: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for p in items {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param {p:?} is not name=value");
        };
        let typed = match serde_json::from_str::<Value>(v) {
            Ok(j @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => j,
            _ => Value::String(v.to_string()),
        };
        out.insert(k.trim().to_string(), typed);
    }
    Ok(out)
}

fn definition_json(d: Definition) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    // A script is SQL or KQL by its extension (`--sql q.kql` runs as KQL).
    let is_kql = |p: &PathBuf| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("kql") || e.eq_ignore_ascii_case("csl"))
    };
    let mut work: Option<(&str, Value)> = None;
    let mut give = |field: &'static str, v: Value| -> anyhow::Result<()> {
        if let Some((other, _)) = work.replace((field, v)) {
            bail!("give one of --sql, --kql and --notebook (both {other} and {field} were given)");
        }
        Ok(())
    };
    if let Some(p) = &d.sql {
        give(if is_kql(p) { "kql" } else { "sql" }, json!(read(p)?))?;
    }
    if let Some(p) = &d.kql {
        give("kql", json!(read(p)?))?;
    }
    if let Some(p) = &d.notebook {
        let text = read(p)?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
        give("notebook", doc)?;
    }
    if let Some((field, v)) = work {
        // The other kinds of work are cleared, so an update can switch.
        for other in ["sql", "kql", "notebook"] {
            m.insert(other.into(), Value::Null);
        }
        m.insert(field.into(), v);
    }
    if let Some(v) = d.description {
        m.insert("description".into(), json!(v));
    }
    if !d.params.is_empty() {
        m.insert("parameters".into(), json!(parse_params(&d.params)?));
    }
    let when = [("every", d.every), ("daily", d.daily), ("cron", d.cron)];
    let given: Vec<(&str, String)> = when
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    if given.len() > 1 {
        bail!("give one of --every, --daily, --cron");
    }
    if let Some((k, v)) = given.into_iter().next() {
        let mut s = json!({ k: v });
        if let Some(tz) = d.timezone {
            s["timezone"] = json!(tz);
        }
        m.insert("schedule".into(), s);
    }
    if let Some(v) = d.size {
        m.insert("size".into(), json!(v));
    }
    if let Some(v) = d.vcores {
        m.insert("vcores".into(), json!(v));
    }
    if let Some(v) = d.timeout {
        m.insert("timeout".into(), json!(v));
    }
    if let Some(v) = d.attempts {
        m.insert("retry".into(), json!({"attempts": v}));
    }
    Ok(m)
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs one `tarn job` verb.
pub async fn run(conn: Connection, cmd: JobCommand) -> anyhow::Result<()> {
    let addr = conn
        .gateway
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let api = Api {
        addr,
        token: conn.token,
    };
    match cmd {
        JobCommand::Create {
            name,
            workspace,
            def,
        } => {
            let mut body = definition_json(def)?;
            body.insert("name".into(), json!(name));
            body.insert("workspace".into(), json!(workspace));
            let j = api
                .json("POST", "/v1/jobs", Some(&Value::Object(body)))
                .await?;
            println!("{}", j["id"].as_str().unwrap_or_default());
        }
        JobCommand::Update { id, def, enabled } => {
            let mut body = definition_json(def)?;
            if let Some(e) = enabled {
                body.insert("enabled".into(), json!(e));
            }
            print(
                &api.json(
                    "PATCH",
                    &format!("/v1/jobs/{id}"),
                    Some(&Value::Object(body)),
                )
                .await?,
            );
        }
        JobCommand::List => {
            let v = api.json("GET", "/v1/jobs", None).await?;
            println!(
                "{:<34} {:<24} {:<12} {:<10} NEXT FIRE",
                "ID", "NAME", "WORKSPACE", "OWNER"
            );
            for j in v["jobs"].as_array().cloned().unwrap_or_default() {
                let next = j["next_fire_unix_ms"]
                    .as_i64()
                    .filter(|n| *n > 0)
                    .map(when)
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<34} {:<24} {:<12} {:<10} {next}",
                    j["id"].as_str().unwrap_or_default(),
                    j["spec"]["name"].as_str().unwrap_or_default(),
                    j["spec"]["workspace"].as_str().unwrap_or_default(),
                    j["owner"].as_str().unwrap_or_default(),
                );
            }
        }
        JobCommand::Show { id } => print(&api.json("GET", &format!("/v1/jobs/{id}"), None).await?),
        JobCommand::Run { id, params, wait } => {
            let body = json!({"parameters": parse_params(&params)?});
            let r = api
                .json("POST", &format!("/v1/jobs/{id}/runs"), Some(&body))
                .await?;
            let run = r["run_id"].as_str().unwrap_or_default().to_string();
            if !wait {
                println!("{run}");
                return Ok(());
            }
            follow(&api, &run).await?;
        }
        JobCommand::Runs { id } => {
            let v = api
                .json("GET", &format!("/v1/jobs/{id}/runs"), None)
                .await?;
            println!(
                "{:<34} {:<10} {:<9} {:<8} {:<22} MESSAGE",
                "RUN", "STATUS", "TRIGGER", "ATTEMPT", "STARTED"
            );
            for r in v["runs"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<34} {:<10} {:<9} {:<8} {:<22} {}",
                    r["run_id"].as_str().unwrap_or_default(),
                    r["status"].as_str().unwrap_or_default(),
                    r["trigger"].as_str().unwrap_or_default(),
                    r["attempt"],
                    r["started_unix_ms"]
                        .as_i64()
                        .filter(|n| *n > 0)
                        .map(when)
                        .unwrap_or_else(|| "-".into()),
                    r["message"].as_str().unwrap_or_default(),
                );
            }
        }
        JobCommand::Logs { run } => {
            let (status, text) = api
                .call("GET", &format!("/v1/job-runs/{run}/log"), None)
                .await?;
            if status >= 400 {
                api.json("GET", &format!("/v1/job-runs/{run}/log"), None)
                    .await?;
            }
            print!("{text}");
        }
        JobCommand::Output { run, out } => {
            let v = api
                .json("GET", &format!("/v1/job-runs/{run}/output"), None)
                .await?;
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            match out {
                Some(p) => std::fs::write(&p, text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => println!("{text}"),
            }
        }
        JobCommand::Cancel { run } => print(
            &api.json("DELETE", &format!("/v1/job-runs/{run}"), None)
                .await?,
        ),
        JobCommand::Renew { id } => {
            let j = api
                .json("POST", &format!("/v1/jobs/{id}/renew"), None)
                .await?;
            println!(
                "credentials renewed until {}",
                j["credential_expires_unix_ms"]
                    .as_i64()
                    .map(when)
                    .unwrap_or_default()
            );
        }
        JobCommand::Delete { id } => {
            let (status, text) = api.call("DELETE", &format!("/v1/jobs/{id}"), None).await?;
            if status >= 400 {
                api.json("DELETE", &format!("/v1/jobs/{id}"), None).await?;
                bail!("{text}");
            }
        }
    }
    Ok(())
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Shows a run's progress on one line until it ends: its place in the
/// queue, then statement i of n; exits non-zero unless it succeeded.
async fn follow(api: &Api, run: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    let r = loop {
        let r = api
            .json("GET", &format!("/v1/job-runs/{run}"), None)
            .await?;
        let status = r["status"].as_str().unwrap_or_default().to_string();
        let line = match status.as_str() {
            "queued" => format!("queued, position {}", r["queue_position"]),
            "running" => {
                let done = r["result"]["statements"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0);
                let total = r["result"]["statements_total"].as_u64().unwrap_or(0);
                let width = 30usize;
                let filled = if total > 0 {
                    (done * width) / total as usize
                } else {
                    0
                };
                let cur = &r["result"]["current"];
                let stages = if cur.is_object() {
                    format!(
                        " · stages {}/{} · tasks {}/{}",
                        cur["stages_done"],
                        cur["stages_total"],
                        cur["tasks_done"],
                        cur["tasks_total"]
                    )
                } else {
                    String::new()
                };
                format!(
                    "running [{}{}] statement {} of {}{stages}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    (done + 1).min(total.max(1) as usize),
                    if total > 0 {
                        total.to_string()
                    } else {
                        "?".into()
                    }
                )
            }
            _ => break r,
        };
        if line != last {
            eprint!("\r{line:<90}");
            let _ = std::io::stderr().flush();
            last = line;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!();
    let status = r["status"].as_str().unwrap_or_default();
    println!("{run} {status}");
    for t in r["result"]["tables"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        println!(
            "  wrote {} rows to {} (version {})",
            t["rows"],
            t["table"].as_str().unwrap_or_default(),
            t["version"]
        );
    }
    if status != "succeeded" {
        bail!(
            "the run {status}: {}",
            r["message"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
