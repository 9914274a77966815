//! The rows the simulation produces, one type per table family, and the Windows security
//! events built from an account.

use crate::catalog::App;
use crate::org::{Place, DOMAIN};

pub(crate) struct SigninRow {
    pub(crate) ts: i64,
    pub(crate) user: usize,
    pub(crate) app: &'static App,
    pub(crate) ip: String,
    pub(crate) place: &'static Place,
    pub(crate) result: &'static str,
    pub(crate) client: &'static str,
    pub(crate) user_agent: &'static str,
    pub(crate) device: String,
    pub(crate) ca_status: &'static str,
    pub(crate) risk: &'static str,
    pub(crate) interactive: bool,
    pub(crate) auth: &'static str,
    pub(crate) correlation: String,
}

#[derive(Default)]
pub(crate) struct SecRow {
    pub(crate) ts: i64,
    pub(crate) computer: usize,
    pub(crate) event_id: i32,
    pub(crate) account: Option<String>,
    pub(crate) account_type: Option<&'static str>,
    pub(crate) logon_type: Option<i32>,
    pub(crate) ip: Option<String>,
    pub(crate) workstation: Option<String>,
    pub(crate) target_user: Option<String>,
    pub(crate) target_domain: Option<&'static str>,
    pub(crate) subject_user: Option<String>,
    pub(crate) logon_process: Option<&'static str>,
    pub(crate) auth_package: Option<&'static str>,
    pub(crate) share: Option<&'static str>,
    pub(crate) object: Option<String>,
    pub(crate) process: Option<String>,
    pub(crate) command_line: Option<String>,
    pub(crate) status: Option<&'static str>,
    pub(crate) sub_status: Option<&'static str>,
}

pub(crate) struct NetRow {
    pub(crate) ts: i64,
    pub(crate) computer: usize,
    pub(crate) action: &'static str,
    pub(crate) remote_ip: String,
    pub(crate) remote_port: i32,
    pub(crate) remote_url: Option<&'static str>,
    pub(crate) local_port: i32,
    pub(crate) protocol: &'static str,
    pub(crate) process: &'static str,
    pub(crate) account: Option<String>,
    pub(crate) command_line: Option<String>,
}

pub(crate) struct AuditRow {
    pub(crate) ts: i64,
    pub(crate) operation: &'static str,
    pub(crate) category: &'static str,
    pub(crate) result: &'static str,
    pub(crate) result_reason: &'static str,
    pub(crate) service: &'static str,
    pub(crate) initiated_by: String,
    pub(crate) targets: String,
    pub(crate) correlation: String,
    pub(crate) identity: String,
}

/// An account as Windows events name it.
#[derive(Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) domain: &'static str,
    pub(crate) name: &'a str,
    pub(crate) machine: bool,
}

impl<'a> Who<'a> {
    pub(crate) fn user(name: &'a str) -> Self {
        Who {
            domain: DOMAIN,
            name,
            machine: false,
        }
    }
    pub(crate) fn machine(name: &'a str) -> Self {
        Who {
            domain: DOMAIN,
            name,
            machine: true,
        }
    }
    pub(crate) fn system() -> Self {
        Who {
            domain: "NT AUTHORITY",
            name: "SYSTEM",
            machine: true,
        }
    }
    pub(crate) fn account(&self) -> String {
        format!("{}\\{}", self.domain, self.name)
    }
    pub(crate) fn kind(&self) -> &'static str {
        if self.machine {
            "Machine"
        } else {
            "User"
        }
    }
}

pub(crate) fn ev_logon(ts: i64, computer: usize, logon_type: i32, who: Who<'_>) -> SecRow {
    SecRow {
        ts,
        computer,
        event_id: 4624,
        account: Some(who.account()),
        account_type: Some(who.kind()),
        logon_type: Some(logon_type),
        target_user: Some(who.name.to_string()),
        target_domain: Some(who.domain),
        ..SecRow::default()
    }
}

pub(crate) fn ev_logoff(ts: i64, computer: usize, logon_type: i32, who: Who<'_>) -> SecRow {
    SecRow {
        event_id: 4634,
        ..ev_logon(ts, computer, logon_type, who)
    }
}

pub(crate) fn ev_failed(ts: i64, computer: usize, logon_type: i32, who: Who<'_>) -> SecRow {
    SecRow {
        event_id: 4625,
        status: Some("0xc000006d"),
        sub_status: Some("0xc000006a"),
        ..ev_logon(ts, computer, logon_type, who)
    }
}

pub(crate) fn ev_subject(ts: i64, computer: usize, event_id: i32, who: Who<'_>) -> SecRow {
    SecRow {
        ts,
        computer,
        event_id,
        account: Some(who.account()),
        account_type: Some(who.kind()),
        subject_user: Some(who.name.to_string()),
        ..SecRow::default()
    }
}

pub(crate) fn ev_privileges(ts: i64, computer: usize, who: Who<'_>) -> SecRow {
    ev_subject(ts, computer, 4672, who)
}

pub(crate) fn ev_process(ts: i64, computer: usize, who: Who<'_>, path: &str, cmd: &str) -> SecRow {
    SecRow {
        process: Some(path.to_string()),
        command_line: Some(cmd.to_string()),
        ..ev_subject(ts, computer, 4688, who)
    }
}
