//! KQL against SQL over a small in-memory table: each query's answer must
//! equal its hand-written SQL form's (the lake-wide corpus is in
//! `tests/kql/`).

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

fn ctx() -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "TimeGenerated",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("UserPrincipalName", DataType::Utf8, false),
        Field::new("IPAddress", DataType::Utf8, true),
        Field::new("ResultType", DataType::Utf8, false),
        Field::new("AppDisplayName", DataType::Utf8, true),
        Field::new("LocationDetails", DataType::Utf8, true),
        Field::new("Port", DataType::Int32, true),
    ]));
    let hour = 3_600_000_000i64;
    let base = 1_793_000_000_000_000i64; // 2026-10-26
    let users = [
        "alice@contoso.com",
        "bob@contoso.com",
        "Carol@Contoso.com",
        "alice@contoso.com",
        "dave@fabrikam.com",
        "bob@contoso.com",
    ];
    let ips = [
        Some("10.0.0.1"),
        Some("10.0.0.2"),
        None,
        Some("10.0.0.1"),
        Some("192.168.1.9"),
        Some("10.0.0.2"),
    ];
    let results = ["0", "50126", "0", "50126", "50053", "50126"];
    let apps = [
        Some("Azure Portal"),
        Some("Office 365 Exchange Online"),
        Some("azure portal"),
        None,
        Some("Admin Center"),
        Some("Office 365"),
    ];
    let locs = [
        Some(r#"{"city":"Oslo","countryOrRegion":"NO","geo":{"lat":59.9}}"#),
        Some(r#"{"city":"Paris","countryOrRegion":"FR"}"#),
        None,
        Some(r#"{"city":"Oslo","countryOrRegion":"NO"}"#),
        Some(r#"{"city":"Lagos","countryOrRegion":"NG"}"#),
        Some(r#"{"city":"Paris","countryOrRegion":"FR"}"#),
    ];
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..6).map(|i| base + i * hour))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(users)),
            Arc::new(StringArray::from(ips.to_vec())),
            Arc::new(StringArray::from_iter_values(results)),
            Arc::new(StringArray::from(apps.to_vec())),
            Arc::new(StringArray::from(locs.to_vec())),
            Arc::new(Int32Array::from(vec![
                Some(443),
                Some(80),
                None,
                Some(443),
                Some(3389),
                Some(80),
            ])),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table(
        datafusion::common::TableReference::bare("SigninLogs"),
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

async fn kql(ctx: &SessionContext, q: &str) -> Result<Vec<RecordBatch>, String> {
    let script = crate::parse(q).map_err(|e| e.to_string())?;
    let state = ctx.state();
    let plan = crate::plan(&script, &state, &crate::Options { now: None })
        .await
        .map_err(|e| e.to_string())?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| e.to_string())?;
    df.collect().await.map_err(|e| e.to_string())
}

async fn sql(ctx: &SessionContext, q: &str) -> Vec<RecordBatch> {
    ctx.sql(q).await.unwrap().collect().await.unwrap()
}

/// The result as sorted lines (names first), so row order does not count.
fn lines(batches: &[RecordBatch], ordered: bool) -> Vec<String> {
    let text = pretty_format_batches(batches).unwrap().to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if !ordered && lines.len() > 4 {
        let body = &mut lines[3..];
        let n = body.len() - 1;
        body[..n].sort();
    }
    lines
}

async fn same(k: &str, s: &str) {
    let ctx = ctx();
    let got = kql(&ctx, k).await.unwrap_or_else(|e| panic!("{k}\n{e}"));
    let want = sql(&ctx, s).await;
    assert!(
        !want.is_empty() && want.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
        "the SQL answers nothing: {s}"
    );
    assert_eq!(
        lines(&got, false),
        lines(&want, false),
        "\nKQL: {k}\nSQL: {s}"
    );
}

#[tokio::test]
async fn where_project_and_renames() {
    same(
        "SigninLogs | where ResultType != '0' | project User = UserPrincipalName, IPAddress",
        "SELECT \"UserPrincipalName\" AS \"User\", \"IPAddress\" FROM \"SigninLogs\" WHERE \"ResultType\" <> '0'",
    )
    .await;
}

#[tokio::test]
async fn case_sensitivity_of_equality_and_has() {
    same(
        "SigninLogs | where AppDisplayName =~ 'AZURE PORTAL' | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\" WHERE lower(\"AppDisplayName\") = 'azure portal'",
    )
    .await;
    same(
        "SigninLogs | where AppDisplayName has 'office' | project UserPrincipalName",
        "SELECT \"UserPrincipalName\" FROM \"SigninLogs\" WHERE \"AppDisplayName\" LIKE 'Office%'",
    )
    .await;
    // A term, not a substring: "Online" has no term "line".
    same(
        "SigninLogs | where AppDisplayName !has 'line' | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\"",
    )
    .await;
}

#[tokio::test]
async fn summarize_names_its_columns_as_kql_does() {
    same(
        "SigninLogs | summarize count(), dcount(IPAddress), Fails = countif(ResultType != '0') by UserPrincipalName",
        "SELECT \"UserPrincipalName\", count(*) AS count_, count(DISTINCT \"IPAddress\") AS \"dcount_IPAddress\", sum(CASE WHEN \"ResultType\" <> '0' THEN 1 ELSE 0 END) AS \"Fails\" FROM \"SigninLogs\" GROUP BY 1",
    )
    .await;
    same(
        "SigninLogs | summarize sum(Port) by bin(TimeGenerated, 2h)",
        "SELECT date_bin(INTERVAL '2 hours', \"TimeGenerated\", TIMESTAMP '1970-01-01T00:00:00Z') AS \"TimeGenerated\", sum(\"Port\") AS \"sum_Port\" FROM \"SigninLogs\" GROUP BY 1",
    )
    .await;
}

#[tokio::test]
async fn arg_max_and_percentile() {
    same(
        "SigninLogs | summarize arg_max(TimeGenerated, IPAddress) by UserPrincipalName",
        "SELECT \"UserPrincipalName\", max(\"TimeGenerated\") AS \"TimeGenerated\", first_value(\"IPAddress\" ORDER BY \"TimeGenerated\" DESC) AS \"IPAddress\" FROM \"SigninLogs\" GROUP BY 1",
    )
    .await;
    same(
        "SigninLogs | summarize percentile(Port, 50)",
        "SELECT 443 AS \"percentile_Port_50\"",
    )
    .await;
}

#[tokio::test]
async fn joins_keep_kql_kinds_and_names() {
    // innerunique: one left row per key.
    same(
        "SigninLogs | project UserPrincipalName, IPAddress | join (SigninLogs | project UserPrincipalName, ResultType) on UserPrincipalName | count",
        "SELECT count(*) AS \"Count\" FROM (SELECT DISTINCT \"UserPrincipalName\" FROM \"SigninLogs\") l JOIN \"SigninLogs\" r USING (\"UserPrincipalName\")",
    )
    .await;
    same(
        "SigninLogs | project UserPrincipalName, IPAddress | join kind=inner (SigninLogs | project UserPrincipalName, ResultType) on UserPrincipalName | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\" l JOIN \"SigninLogs\" r USING (\"UserPrincipalName\")",
    )
    .await;
    same(
        "SigninLogs | where ResultType == '0' | project UserPrincipalName | join kind=leftanti (SigninLogs | where ResultType != '0') on UserPrincipalName",
        "SELECT \"UserPrincipalName\" FROM \"SigninLogs\" l WHERE \"ResultType\" = '0' AND NOT EXISTS (SELECT 1 FROM \"SigninLogs\" r WHERE r.\"ResultType\" <> '0' AND r.\"UserPrincipalName\" = l.\"UserPrincipalName\")",
    )
    .await;
    let ctx = ctx();
    let b = kql(&ctx, "SigninLogs | project UserPrincipalName, IPAddress | join kind=inner (SigninLogs | project UserPrincipalName, IPAddress) on $left.UserPrincipalName == $right.UserPrincipalName | take 1").await.unwrap();
    let names: Vec<String> = b[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "UserPrincipalName",
            "IPAddress",
            "UserPrincipalName1",
            "IPAddress1"
        ]
    );
}

#[tokio::test]
async fn dynamic_values_from_json_text() {
    same(
        "SigninLogs | extend City = tostring(parse_json(LocationDetails).city) | where City == 'Oslo' | project UserPrincipalName",
        "SELECT \"UserPrincipalName\" FROM \"SigninLogs\" WHERE \"LocationDetails\" LIKE '%Oslo%'",
    )
    .await;
    same(
        "SigninLogs | extend Lat = todouble(parse_json(LocationDetails)['geo'].lat) | where isnotnull(Lat) | project Lat",
        "SELECT 59.9 AS \"Lat\"",
    )
    .await;
}

#[tokio::test]
async fn let_sort_top_and_serialize() {
    same(
        "let failures = dynamic(['50126', '50053']);\nSigninLogs | where ResultType in (failures) | top 2 by TimeGenerated asc | project UserPrincipalName",
        "SELECT \"UserPrincipalName\" FROM \"SigninLogs\" WHERE \"ResultType\" IN ('50126','50053') ORDER BY \"TimeGenerated\" LIMIT 2",
    )
    .await;
    let ctx = ctx();
    let b = kql(&ctx, "SigninLogs | sort by TimeGenerated asc | extend n = row_number(), p = prev(Port) | project n, p").await.unwrap();
    let first: Vec<String> = lines(&b, true)[3]
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    assert_eq!(first, ["", "1", "", ""]);
}

#[tokio::test]
async fn mv_expand_parse_and_datatable() {
    same(
        "SigninLogs | summarize Apps = make_set(AppDisplayName) by UserPrincipalName | mv-expand Apps | count",
        "SELECT count(*) AS \"Count\" FROM (SELECT DISTINCT \"UserPrincipalName\", \"AppDisplayName\" FROM \"SigninLogs\" WHERE \"AppDisplayName\" IS NOT NULL)",
    )
    .await;
    same(
        "SigninLogs | parse UserPrincipalName with Name:string '@' Domain:string | summarize count() by Domain",
        "SELECT lower(split_part(\"UserPrincipalName\", '@', 2)) AS \"Domain\", count(*) AS count_ FROM \"SigninLogs\" WHERE \"UserPrincipalName\" NOT LIKE 'Carol%' GROUP BY 1 UNION ALL SELECT 'Contoso.com', 1",
    )
    .await;
    same(
        "datatable(Name:string, N:long)['a', 1, 'b', 2] | where N > 1",
        "SELECT 'b' AS \"Name\", CAST(2 AS BIGINT) AS \"N\"",
    )
    .await;
}

#[tokio::test]
async fn errors_point_at_the_mistake() {
    let ctx = ctx();
    let e = kql(&ctx, "SigninLogs\n| where UserPrincipleName == 'x'")
        .await
        .unwrap_err();
    assert!(
        e.contains("no column 'UserPrincipleName'")
            && e.contains("line 2, column 9")
            && e.contains("did you mean `UserPrincipalName`?"),
        "{e}"
    );
    let e = kql(&ctx, "SigninLog | take 1").await.unwrap_err();
    assert!(e.contains("did you mean `SigninLogs`?"), "{e}");
    let e = kql(&ctx, "SigninLogs | extend x = tolowr(IPAddress)")
        .await
        .unwrap_err();
    assert!(
        e.contains("unknown function 'tolowr'") && e.contains("did you mean `tolower`?"),
        "{e}"
    );
    let e = kql(&ctx, "SigninLogs | where count() > 1")
        .await
        .unwrap_err();
    assert!(e.contains("use it in summarize"), "{e}");
}

#[tokio::test]
async fn range_is_bounded_and_constant() {
    same(
        "range x from 1 to 10 step 3",
        "SELECT * FROM (VALUES (1), (4), (7), (10)) AS t(x)",
    )
    .await;
    let ctx = ctx();
    let e = kql(&ctx, "range x from 1 to 10000000000 step 1")
        .await
        .unwrap_err();
    assert!(e.contains("at most 1000000"), "{e}");
    let e = kql(
        &ctx,
        "SigninLogs | take 1 | join (range x from 1 to Port step 1) on x",
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("must be constants") || e.contains("no column"),
        "{e}"
    );
    let b = kql(
        &ctx,
        "set query_now = datetime(2026-10-26);\nrange t from ago(1d) to now() step 6h | count",
    )
    .await
    .unwrap();
    assert_eq!(lines(&b, true)[3].replace(' ', ""), "|5|");
}

#[tokio::test]
async fn in_a_query() {
    same(
        "SigninLogs | where UserPrincipalName in ((SigninLogs | where ResultType == '50053' | project UserPrincipalName)) | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\" WHERE \"UserPrincipalName\" = 'dave@fabrikam.com'",
    )
    .await;
    same(
        "SigninLogs | where UserPrincipalName !in (SigninLogs | where ResultType == '50053' | project UserPrincipalName) | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\" WHERE \"UserPrincipalName\" <> 'dave@fabrikam.com'",
    )
    .await;
}

/// Whatever a client sends, parsing and planning answer (a plan or an
/// error) and never panic: every prefix of real queries, and the queries
/// with characters swapped in, deleted or duplicated (seeded, so a
/// failure replays).
#[tokio::test]
async fn mangled_queries_get_answers_not_panics() {
    let ctx = ctx();
    let state = ctx.state();
    let queries = [
        "let t = 5m;\nSigninLogs | where TimeGenerated > ago(1d) and AppDisplayName has 'azure' | summarize n = count(), d = dcount(IPAddress) by bin(TimeGenerated, t) | top 3 by n",
        "SigninLogs | extend City = tostring(parse_json(LocationDetails).city), x = split(UserPrincipalName, '@')[1] | join kind=leftouter (SigninLogs | project UserPrincipalName, Port) on $left.UserPrincipalName == $right.UserPrincipalName | project-away Port1",
        "datatable(a:long, b:string)[1, 'x', 2, 'y'] | mv-expand c = pack_array(a, b) | parse b with * 'x' rest:string | serialize r = row_number() | where b in~ ('X') | sort by a desc nulls first",
        "union SigninLogs, (range x from 1 to 3 step 1) | summarize arg_max(x, *), percentiles(Port, 5, 95) by UserPrincipalName | where strlen(UserPrincipalName) between (1 .. 40)",
        "print a = datetime(2026-10-26T01:02:03Z), b = timespan(1.02:03:04), c = dynamic({'k': [1, 2]}), d = case(1 > 2, 'a', 'b'), e = format_datetime(now(), 'yyyy-MM-dd')",
    ];
    let alphabet: Vec<char> = "|()[]{}=!~<>.,;:'\"@*-+/%$ \n0123456789abcdefxyzhas"
        .chars()
        .collect();
    let mut seed: u64 = 0x5eed_cafe;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // The control: the queries as written plan.
    for q in queries {
        let script = crate::parse(q).unwrap_or_else(|e| panic!("{q}\n{e}"));
        if let Err(e) = crate::plan(&script, &state, &crate::Options::default()).await {
            panic!("{q}\n{e}");
        }
    }
    let mut texts: Vec<String> = Vec::new();
    for q in queries {
        let chars: Vec<char> = q.chars().collect();
        for end in 0..=chars.len() {
            texts.push(chars[..end].iter().collect());
        }
        for _ in 0..150 {
            let mut c = chars.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % c.len();
                match next() % 3 {
                    0 => c[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        c.remove(at);
                    }
                    _ => c.insert(at, c[at]),
                }
            }
            texts.push(c.into_iter().collect());
        }
    }
    let mut planned = 0;
    for t in &texts {
        let Ok(script) = crate::parse(t) else {
            continue;
        };
        if crate::plan(&script, &state, &crate::Options::default())
            .await
            .is_ok()
        {
            planned += 1;
        }
    }
    assert!(
        planned >= queries.len(),
        "only {planned} of {} texts planned",
        texts.len()
    );
}

/// The deepest expressions the parser accepts plan on a test thread's
/// stack (2 MiB, an unoptimised build): the parser's limits keep the
/// planner's recursion within it.
#[tokio::test]
async fn the_deepest_accepted_expressions_plan() {
    let ctx = ctx();
    let state = ctx.state();
    let chain = format!("print x = 1{}", " + 1".repeat(255));
    let nested = format!("print x = {}1{}", "(".repeat(60), " + 1)".repeat(60));
    let calls = format!("print x = {}1{}", "abs(".repeat(60), ")".repeat(60));
    for q in [chain, nested, calls] {
        let script = crate::parse(&q).unwrap_or_else(|e| panic!("{e}"));
        crate::plan(&script, &state, &crate::Options::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let deep_tree = format!(
        "print x = {}1{}",
        "(".repeat(40),
        format!("{})", " + 1".repeat(10)).repeat(40)
    );
    let Err(e) = crate::parse(&deep_tree) else {
        panic!("an expression 440 operations deep was accepted");
    };
    assert!(e.message.contains("operations deep"), "{e}");
}

/// What review found: lets that rebind their own name, lets that double
/// at every step, and KQL's answers for bins of negative numbers, week
/// boundaries, nulls compared from the left, dynamic numbers and
/// `between (t .. span)`.
#[tokio::test]
async fn lets_rebinding_and_kql_arithmetic() {
    let ctx = ctx();
    let one = |b: &[RecordBatch]| lines(b, true)[3].replace([' ', '|'], "");
    let b = kql(
        &ctx,
        "let n = 10; let n = n * 2; range x from 1 to n step 1 | count",
    )
    .await
    .unwrap();
    assert_eq!(one(&b), "20");
    let b = kql(&ctx, "let x = 1; let x = x + 1; print x")
        .await
        .unwrap();
    assert_eq!(one(&b), "2");
    let mut lets = String::from("let a0 = 1;");
    for i in 1..=20 {
        lets.push_str(&format!(" let a{i} = a{} + a{};", i - 1, i - 1));
    }
    let e = kql(&ctx, &format!("{lets} print x = a20"))
        .await
        .unwrap_err();
    assert!(e.contains("grows past"), "{e}");
    let b = kql(&ctx, "print x = bin(-7, 5)").await.unwrap();
    assert_eq!(one(&b), "-10");
    let b = kql(
        &ctx,
        "print w = datetime_diff('week', datetime(2017-10-29 00:00), datetime(2017-09-30 23:59))",
    )
    .await
    .unwrap();
    assert_eq!(one(&b), "5");
    same(
        "SigninLogs | where '10.0.0.1' != IPAddress | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\" WHERE \"IPAddress\" IS NULL OR \"IPAddress\" <> '10.0.0.1'",
    )
    .await;
    same(
        "SigninLogs | where parse_json(LocationDetails).geo.lat > 50 | count",
        "SELECT 1 AS \"Count\"",
    )
    .await;
    same(
        "SigninLogs | where TimeGenerated between (datetime(2026-10-26T07:00:00Z) .. 2h) | count",
        "SELECT count(*) AS \"Count\" FROM \"SigninLogs\" WHERE \"TimeGenerated\" BETWEEN TIMESTAMP '2026-10-26T07:00:00Z' AND TIMESTAMP '2026-10-26T09:00:00Z'",
    )
    .await;
}
