//! The five tables as Arrow record batches: their schemas and how each column is filled
//! from the simulated rows and the world.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::catalog::{activity, result_description};
use crate::org::TENANT_ID;
use crate::rows::{AuditRow, NetRow, SecRow, SigninRow};
use crate::time::{HOUR, SEC};
use crate::world::{User, World};
use crate::DemoError;

pub(crate) const BATCH_ROWS: usize = 65_536;

pub(crate) struct TableData {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) rows: usize,
    pub(crate) batches: Vec<RecordBatch>,
}

pub(crate) fn ts_field() -> Field {
    Field::new(
        "TimeGenerated",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

pub(crate) fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

pub(crate) fn ts_col(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

pub(crate) fn str_col<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(crate) fn opt_col<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

pub(crate) fn int_col(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from_iter(values))
}

pub(crate) fn batches<R>(
    table: &'static str,
    schema: &SchemaRef,
    rows: &[R],
    columns: impl Fn(&[R]) -> Vec<ArrayRef>,
) -> Result<Vec<RecordBatch>, DemoError> {
    rows.chunks(BATCH_ROWS)
        .map(|chunk| {
            RecordBatch::try_new(Arc::clone(schema), columns(chunk)).map_err(|source| {
                DemoError::BuildBatch {
                    table: table.to_string(),
                    source,
                }
            })
        })
        .collect()
}

pub(crate) fn identity_info(w: &World) -> Result<TableData, DemoError> {
    const NAME: &str = "IdentityInfo";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("AccountUPN", false),
        utf8("AccountName", false),
        utf8("AccountDisplayName", true),
        utf8("Department", true),
        utf8("JobTitle", true),
        utf8("Country", true),
        utf8("City", true),
        Field::new("IsAccountEnabled", DataType::Boolean, true),
        utf8("Type", false),
    ]));
    // One snapshot of the directory, taken at the start of the window.
    let rows: Vec<(i64, &User)> = w
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (w.start + 2 * HOUR + i as i64 * SEC, u))
        .collect();
    let batches = batches(NAME, &schema, &rows, |c| {
        vec![
            ts_col(c.iter().map(|r| r.0)),
            str_col(c.iter().map(|r| r.1.upn.as_str())),
            str_col(c.iter().map(|r| r.1.sam.as_str())),
            opt_col(c.iter().map(|r| Some(r.1.display.as_str()))),
            opt_col(c.iter().map(|r| Some(r.1.dept))),
            opt_col(c.iter().map(|r| r.1.title)),
            opt_col(c.iter().map(|r| r.1.city.map(|c| c.place.country))),
            opt_col(c.iter().map(|r| r.1.city.map(|c| c.place.city))),
            Arc::new(BooleanArray::from_iter(c.iter().map(|r| Some(r.1.enabled)))),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: directory snapshot of contoso.com accounts",
        rows: rows.len(),
        batches,
    })
}

pub(crate) fn signin_logs(w: &World, rows: &[SigninRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "SigninLogs";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("TenantId", false),
        utf8("UserPrincipalName", false),
        utf8("UserDisplayName", true),
        utf8("UserId", false),
        utf8("AppDisplayName", true),
        utf8("AppId", true),
        utf8("IPAddress", true),
        utf8("Location", true),
        utf8("LocationDetails", true),
        utf8("ResultType", false),
        utf8("ResultDescription", true),
        utf8("ClientAppUsed", true),
        utf8("UserAgent", true),
        utf8("DeviceDetail", true),
        utf8("ConditionalAccessStatus", true),
        utf8("RiskLevelDuringSignIn", true),
        Field::new("IsInteractive", DataType::Boolean, true),
        utf8("AuthenticationRequirement", true),
        utf8("CorrelationId", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        let users = || c.iter().map(|r| &w.users[r.user]);
        let details: Vec<String> = c.iter().map(|r| r.place.details_json()).collect();
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|_| TENANT_ID)),
            str_col(users().map(|u| u.upn.as_str())),
            opt_col(users().map(|u| Some(u.display.as_str()))),
            str_col(users().map(|u| u.id.as_str())),
            opt_col(c.iter().map(|r| Some(r.app.name))),
            opt_col(c.iter().map(|r| Some(r.app.id))),
            opt_col(c.iter().map(|r| Some(r.ip.as_str()))),
            opt_col(c.iter().map(|r| Some(r.place.country))),
            opt_col(details.iter().map(|d| Some(d.as_str()))),
            str_col(c.iter().map(|r| r.result)),
            opt_col(c.iter().map(|r| result_description(r.result))),
            opt_col(c.iter().map(|r| Some(r.client))),
            opt_col(c.iter().map(|r| Some(r.user_agent))),
            opt_col(c.iter().map(|r| Some(r.device.as_str()))),
            opt_col(c.iter().map(|r| Some(r.ca_status))),
            opt_col(c.iter().map(|r| Some(r.risk))),
            Arc::new(BooleanArray::from_iter(
                c.iter().map(|r| Some(r.interactive)),
            )),
            opt_col(c.iter().map(|r| Some(r.auth))),
            opt_col(c.iter().map(|r| Some(r.correlation.as_str()))),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Microsoft Entra ID sign-ins of contoso.com",
        rows: rows.len(),
        batches,
    })
}

pub(crate) fn audit_logs(rows: &[AuditRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "AuditLogs";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("OperationName", false),
        utf8("Category", true),
        utf8("Result", true),
        utf8("ResultReason", true),
        utf8("ActivityDisplayName", true),
        utf8("LoggedByService", true),
        utf8("InitiatedBy", true),
        utf8("TargetResources", true),
        utf8("CorrelationId", true),
        utf8("Identity", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|r| r.operation)),
            opt_col(c.iter().map(|r| Some(r.category))),
            opt_col(c.iter().map(|r| Some(r.result))),
            opt_col(c.iter().map(|r| Some(r.result_reason))),
            opt_col(c.iter().map(|r| Some(r.operation))),
            opt_col(c.iter().map(|r| Some(r.service))),
            opt_col(c.iter().map(|r| Some(r.initiated_by.as_str()))),
            opt_col(c.iter().map(|r| Some(r.targets.as_str()))),
            opt_col(c.iter().map(|r| Some(r.correlation.as_str()))),
            opt_col(c.iter().map(|r| Some(r.identity.as_str()))),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Microsoft Entra ID directory audit events of contoso.com",
        rows: rows.len(),
        batches,
    })
}

pub(crate) fn security_event(w: &World, rows: &[SecRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "SecurityEvent";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("Computer", false),
        Field::new("EventID", DataType::Int32, false),
        utf8("Activity", true),
        utf8("Account", true),
        utf8("AccountType", true),
        Field::new("LogonType", DataType::Int32, true),
        utf8("IpAddress", true),
        utf8("WorkstationName", true),
        utf8("TargetUserName", true),
        utf8("TargetDomainName", true),
        utf8("SubjectUserName", true),
        utf8("LogonProcessName", true),
        utf8("AuthenticationPackageName", true),
        utf8("ShareName", true),
        utf8("ObjectName", true),
        utf8("ProcessName", true),
        utf8("CommandLine", true),
        utf8("Status", true),
        utf8("SubStatus", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|r| w.computers[r.computer].fqdn.as_str())),
            int_col(c.iter().map(|r| Some(r.event_id))),
            opt_col(c.iter().map(|r| Some(activity(r.event_id)))),
            opt_col(c.iter().map(|r| r.account.as_deref())),
            opt_col(c.iter().map(|r| r.account_type)),
            int_col(c.iter().map(|r| r.logon_type)),
            opt_col(c.iter().map(|r| r.ip.as_deref())),
            opt_col(c.iter().map(|r| r.workstation.as_deref())),
            opt_col(c.iter().map(|r| r.target_user.as_deref())),
            opt_col(c.iter().map(|r| r.target_domain)),
            opt_col(c.iter().map(|r| r.subject_user.as_deref())),
            opt_col(c.iter().map(|r| r.logon_process)),
            opt_col(c.iter().map(|r| r.auth_package)),
            opt_col(c.iter().map(|r| r.share)),
            opt_col(c.iter().map(|r| r.object.as_deref())),
            opt_col(c.iter().map(|r| r.process.as_deref())),
            opt_col(c.iter().map(|r| r.command_line.as_deref())),
            opt_col(c.iter().map(|r| r.status)),
            opt_col(c.iter().map(|r| r.sub_status)),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Windows security events of contoso.com computers",
        rows: rows.len(),
        batches,
    })
}

pub(crate) fn device_network_events(w: &World, rows: &[NetRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "DeviceNetworkEvents";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("DeviceId", false),
        utf8("DeviceName", false),
        utf8("ActionType", false),
        utf8("RemoteIP", true),
        Field::new("RemotePort", DataType::Int32, true),
        utf8("RemoteUrl", true),
        utf8("LocalIP", true),
        Field::new("LocalPort", DataType::Int32, true),
        utf8("Protocol", true),
        utf8("InitiatingProcessFileName", true),
        utf8("InitiatingProcessAccountName", true),
        utf8("InitiatingProcessCommandLine", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        let comp = |r: &NetRow| &w.computers[r.computer];
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|r| comp(r).mde_id.as_str())),
            str_col(c.iter().map(|r| comp(r).device_name.as_str())),
            str_col(c.iter().map(|r| r.action)),
            opt_col(c.iter().map(|r| Some(r.remote_ip.as_str()))),
            int_col(c.iter().map(|r| Some(r.remote_port))),
            opt_col(c.iter().map(|r| r.remote_url)),
            opt_col(c.iter().map(|r| Some(comp(r).ip.as_str()))),
            int_col(c.iter().map(|r| Some(r.local_port))),
            opt_col(c.iter().map(|r| Some(r.protocol))),
            opt_col(c.iter().map(|r| Some(r.process))),
            opt_col(c.iter().map(|r| r.account.as_deref())),
            opt_col(c.iter().map(|r| r.command_line.as_deref())),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Microsoft Defender for Endpoint network events of contoso.com devices",
        rows: rows.len(),
        batches,
    })
}
