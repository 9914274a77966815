//! The attacks planted on top of the ordinary activity: what they are ([`INCIDENTS`]),
//! when they start, where the attackers come from, and the sign-in they all share.

mod hosts;
mod identity;

use crate::catalog::{App, CLIENT_BROWSER, SFA, UA_FIREFOX};
use crate::org::{place, Place};
use crate::rows::SigninRow;
use crate::sim::Sim;
use crate::time::{DAY, HOUR, MIN};

/// An attack planted in the demo data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// Short identifier.
    pub name: &'static str,
    /// What happened, with the exact users, addresses, computers and (default-option) times.
    pub description: &'static str,
    /// The table holding the evidence.
    pub table: &'static str,
}

/// The planted incidents, so tests and docs can name what the demo contains.
///
/// Times are given for the default options (`end` = 2026-11-01T00:00:00Z, `days` ≥ 8); they
/// are fixed offsets before `end`, so they move with it. Users, addresses and computers do
/// not depend on any option.
pub const INCIDENTS: &[Incident] = &[
    Incident {
        name: "password_spray",
        description: "Password spray from 185.220.101.47 (DE, Frankfurt am Main; UserAgent \
            BAV2ROPC, ClientAppUsed 'Other clients'): one attempt against each of 60 distinct \
            contoso.com users between 2026-10-24 02:10 and 02:57 UTC, all ResultType 50126 \
            except a single success (ResultType 0) for lynne.robbins@contoso.com.",
        table: "SigninLogs",
    },
    Incident {
        name: "brute_force_success",
        description: "Brute force against megan.bowen@contoso.com from 45.155.205.99 (NL, \
            Amsterdam): 36 failures (ResultType 50126) from 2026-10-27 04:05 to 04:23 UTC, then \
            a success (ResultType 0, RiskLevelDuringSignIn high) at 04:24 UTC from the same \
            address, followed by sign-ins to Exchange Online (04:27) and My Signins (04:29).",
        table: "SigninLogs",
    },
    Incident {
        name: "mfa_registration_after_brute_force",
        description: "Right after the brute force, megan.bowen@contoso.com starts (04:30 UTC) \
            and completes (04:31 UTC, 'User registered security info') a new Authenticator \
            registration on 2026-10-27, initiated from 45.155.205.99.",
        table: "AuditLogs",
    },
    Incident {
        name: "impossible_travel",
        description: "alex.wilber@contoso.com (home Seattle, US) signs in successfully from \
            his home address in Seattle (US) at 2026-10-29 16:20 UTC, then 40 minutes later, \
            at 17:00 UTC, from 95.165.28.14 in Moscow (RU), and again at 17:04 UTC.",
        table: "SigninLogs",
    },
    Incident {
        name: "lateral_movement",
        description: "On workstation WKS-1023 (10.10.1.33, user nestor.wilke) an encoded \
            PowerShell (12:53 UTC) and an LSASS dump with a renamed ProcDump (12:56) precede \
            explicit-credential logons (4648) as CONTOSO\\svc-sqlbackup on 2026-10-30, then \
            4624 network logons (LogonType 3, NTLM) from 10.10.1.33 on SRV-APP01 (13:07), \
            SRV-SQL01 (13:14), SRV-WEB01 (13:22) and DC01 (13:31), and an RDP logon (LogonType \
            10) on SRV-APP02 (13:39), each with 4672 special privileges and follow-up 4688 \
            processes. svc-sqlbackup normally only logs on to SRV-BKP01 and SRV-SQL01 \
            around 01:00 UTC.",
        table: "SecurityEvent",
    },
    Incident {
        name: "lateral_movement_network",
        description: "The network side of the lateral movement: wks-1023.contoso.com \
            (10.10.1.33) fetches a payload with powershell.exe from 194.165.16.78:443 at 12:53 \
            UTC, then connects with powershell.exe to port 445 of SRV-APP01 (10.0.1.31), \
            SRV-SQL01 (10.0.1.41), SRV-WEB01 (10.0.1.51) and DC01 (10.0.0.10), fails on WinRM \
            5985, and with mstsc.exe to port 3389 of SRV-APP02 (10.0.1.32) between 13:04 and \
            13:39 UTC on 2026-10-30; the servers log the matching InboundConnectionAccepted.",
        table: "DeviceNetworkEvents",
    },
    Incident {
        name: "finance_share_access",
        description: "CONTOSO\\joni.sherman (Sales, workstation WKS-1031 / 10.10.1.41), who \
            never used the Finance share before, runs robocopy and reads the share \\\\*\\Finance \
            on FS01.contoso.com from 2026-10-31 02:14 to 02:41 UTC: one 5140 and a 5145 for \
            each of 135 distinct files (Payroll, Budget, M&A, Board, ...). Normally only \
            Finance users (e.g. patti.fernandez, lidia.holloway, diego.siciliani) touch it.",
        table: "SecurityEvent",
    },
];

/// Incident start times, as offsets before `end`.
pub(crate) const SPRAY_OFFSET: i64 = 7 * DAY + 21 * HOUR + 50 * MIN;
pub(crate) const BRUTE_OFFSET: i64 = 4 * DAY + 19 * HOUR + 55 * MIN;
pub(crate) const TRAVEL_OFFSET: i64 = 2 * DAY + 7 * HOUR + 40 * MIN;
pub(crate) const LATERAL_OFFSET: i64 = DAY + 10 * HOUR + 55 * MIN;
pub(crate) const FINANCE_OFFSET: i64 = 21 * HOUR + 46 * MIN;

/// Where the attackers' sign-ins come from.
pub(crate) static PLACE_SPRAY: Place = place("Frankfurt am Main", "Hessen", "DE", 50.1109, 8.6821);
pub(crate) static PLACE_BRUTE: Place = place("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041);
pub(crate) static PLACE_TRAVEL: Place = place("Moscow", "Moscow", "RU", 55.7558, 37.6173);

/// The attackers' addresses (the last one serves the lateral movement's payload).
pub(crate) const SPRAY_IP: &str = "185.220.101.47";
pub(crate) const BRUTE_IP: &str = "45.155.205.99";
pub(crate) const TRAVEL_IP: &str = "95.165.28.14";
pub(crate) const PAYLOAD_IP: &str = "194.165.16.78";

impl<'w> Sim<'w> {
    pub(crate) fn incidents(&mut self) {
        self.password_spray();
        self.brute_force();
        self.impossible_travel();
        self.lateral_movement();
        self.finance_share();
    }

    pub(crate) fn attacker_signin(
        &mut self,
        ts: i64,
        u: usize,
        app: &'static App,
        result: &'static str,
    ) -> SigninRow {
        SigninRow {
            ts,
            user: u,
            app,
            ip: String::new(),
            place: &PLACE_SPRAY,
            result,
            client: CLIENT_BROWSER,
            user_agent: UA_FIREFOX,
            device: r#"{"deviceId":"","operatingSystem":"Windows10","browser":"Firefox 128.0"}"#
                .to_string(),
            ca_status: "notApplied",
            risk: "none",
            interactive: true,
            auth: SFA,
            correlation: self.rng.guid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_tables;
    use crate::catalog::finance_files;
    use crate::test_util::{column, small, table};
    use arrow::array::AsArray;
    use std::collections::BTreeSet;

    #[test]
    fn demo_incidents_are_planted() {
        let tables = build_tables(&small()).expect("builds");

        // Rows are time-ordered.
        for t in &tables {
            let ts: Vec<i64> = t
                .batches
                .iter()
                .flat_map(|b| {
                    let col = b
                        .column(0)
                        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                    col.values().to_vec()
                })
                .collect();
            assert!(
                ts.windows(2).all(|w| w[0] <= w[1]),
                "{} is time-ordered",
                t.name
            );
        }

        let signins = table(&tables, "SigninLogs");
        let ip = column(signins, "IPAddress");
        let upn = column(signins, "UserPrincipalName");
        let result = column(signins, "ResultType");
        let location = column(signins, "Location");
        let ts = column(signins, "TimeGenerated");

        // 1. Password spray.
        let sprayed: Vec<usize> = (0..ip.len())
            .filter(|&i| ip[i].as_deref() == Some(SPRAY_IP))
            .collect();
        let users: BTreeSet<_> = sprayed.iter().map(|&i| upn[i].clone()).collect();
        assert_eq!(users.len(), 60);
        let ok: Vec<_> = sprayed
            .iter()
            .filter(|&&i| result[i].as_deref() == Some("0"))
            .collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(upn[*ok[0]].as_deref(), Some("lynne.robbins@contoso.com"));
        assert!(sprayed
            .iter()
            .all(|&i| matches!(result[i].as_deref(), Some("0" | "50126"))));

        // 2. Brute force then success.
        let brute: Vec<usize> = (0..ip.len())
            .filter(|&i| ip[i].as_deref() == Some(BRUTE_IP))
            .collect();
        assert!(brute
            .iter()
            .all(|&i| upn[i].as_deref() == Some("megan.bowen@contoso.com")));
        let fails = brute
            .iter()
            .filter(|&&i| result[i].as_deref() == Some("50126"))
            .count();
        assert_eq!(fails, 36);
        let first_ok = brute
            .iter()
            .position(|&i| result[i].as_deref() == Some("0"))
            .expect("success");
        assert_eq!(first_ok, 36, "the success comes after all failures");

        // 3. Impossible travel: US then RU 40 minutes later.
        let alex: Vec<usize> = (0..upn.len())
            .filter(|&i| {
                upn[i].as_deref() == Some("alex.wilber@contoso.com")
                    && result[i].as_deref() == Some("0")
            })
            .collect();
        let ru = alex
            .iter()
            .position(|&i| location[i].as_deref() == Some("RU"))
            .expect("RU sign-in");
        assert!(ru > 0);
        assert_eq!(location[alex[ru - 1]].as_deref(), Some("US"));
        assert!(ts[alex[ru - 1]] < ts[alex[ru]]);

        // 4. Lateral movement.
        let sec = table(&tables, "SecurityEvent");
        let computer = column(sec, "Computer");
        let event = column(sec, "EventID");
        let account = column(sec, "Account");
        let logon_type = column(sec, "LogonType");
        let source = column(sec, "IpAddress");
        let svc = Some(r"CONTOSO\svc-sqlbackup".to_string());
        let hops: BTreeSet<_> = (0..event.len())
            .filter(|&i| {
                event[i].as_deref() == Some("4624")
                    && account[i] == svc
                    && source[i].as_deref() == Some("10.10.1.33")
            })
            .map(|i| {
                (
                    computer[i].clone().unwrap_or_default(),
                    logon_type[i].clone().unwrap_or_default(),
                )
            })
            .collect();
        let expected: BTreeSet<_> = [
            ("SRV-APP01.contoso.com", "3"),
            ("SRV-SQL01.contoso.com", "3"),
            ("SRV-WEB01.contoso.com", "3"),
            ("DC01.contoso.com", "3"),
            ("SRV-APP02.contoso.com", "10"),
        ]
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
        assert_eq!(hops, expected);
        assert!((0..event.len()).any(|i| event[i].as_deref() == Some("4648")
            && computer[i].as_deref() == Some("WKS-1023.contoso.com")
            && column(sec, "TargetUserName")[i].as_deref() == Some("svc-sqlbackup")));

        // 5. Finance share: joni.sherman never touched it before the incident.
        let share = column(sec, "ShareName");
        let object = column(sec, "ObjectName");
        let sec_ts = column(sec, "TimeGenerated");
        let joni = Some(r"CONTOSO\joni.sherman".to_string());
        let finance: Vec<usize> = (0..share.len())
            .filter(|&i| share[i].as_deref() == Some(r"\\*\Finance"))
            .collect();
        let joni_rows: Vec<usize> = finance
            .iter()
            .copied()
            .filter(|&i| account[i] == joni)
            .collect();
        let files: BTreeSet<_> = joni_rows
            .iter()
            .filter(|&&i| event[i].as_deref() == Some("5145"))
            .map(|&i| object[i].clone())
            .collect();
        assert_eq!(files.len(), 135);
        assert_eq!(finance_files().len(), 135);
        let first_joni = joni_rows
            .iter()
            .map(|&i| sec_ts[i].clone())
            .min()
            .expect("joni rows");
        assert!(joni_rows
            .iter()
            .all(|&i| computer[i].as_deref() == Some("FS01.contoso.com")));
        assert!(first_joni >= sec_ts[*finance.first().expect("finance rows")]);
        let others: BTreeSet<_> = finance
            .iter()
            .filter(|&&i| account[i] != joni)
            .map(|&i| account[i].clone())
            .collect();
        assert!(!others.is_empty(), "finance people use the share normally");

        // Network side of the lateral movement.
        let net = table(&tables, "DeviceNetworkEvents");
        let device = column(net, "DeviceName");
        let remote = column(net, "RemoteIP");
        let port = column(net, "RemotePort");
        let process = column(net, "InitiatingProcessFileName");
        let smb: BTreeSet<_> = (0..device.len())
            .filter(|&i| {
                device[i].as_deref() == Some("wks-1023.contoso.com")
                    && process[i].as_deref() == Some("powershell.exe")
                    && port[i].as_deref() == Some("445")
            })
            .map(|i| remote[i].clone().unwrap_or_default())
            .collect();
        assert_eq!(smb.len(), 4);
        assert!(
            (0..device.len()).any(|i| device[i].as_deref() == Some("srv-app02.contoso.com")
                && column(net, "ActionType")[i].as_deref() == Some("InboundConnectionAccepted")
                && remote[i].as_deref() == Some("10.10.1.33"))
        );

        // MFA registration after the brute force.
        let audit = table(&tables, "AuditLogs");
        let op = column(audit, "OperationName");
        let init = column(audit, "InitiatedBy");
        assert!((0..op.len()).any(
            |i| op[i].as_deref() == Some("User registered security info")
                && init[i]
                    .as_deref()
                    .is_some_and(|s| s.contains(BRUTE_IP) && s.contains("megan.bowen"))
        ));
    }
}
