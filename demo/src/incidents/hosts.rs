//! The attacks on the Windows estate, seen in the security and network events: the lateral
//! movement from WKS-1023 and the insider copying the Finance share.

use super::{FINANCE_OFFSET, LATERAL_OFFSET, PAYLOAD_IP};
use crate::catalog::SHARE_FINANCE;
use crate::org::{DOMAIN, U_JONI, U_NESTOR, U_SVC};
use crate::rows::{
    ev_logoff, ev_logon, ev_privileges, ev_process, ev_subject, NetRow, SecRow, Who,
};
use crate::sim::Sim;
use crate::time::{MIN, SEC};

impl<'w> Sim<'w> {
    pub(crate) fn lateral_movement(&mut self) {
        let w = self.w;
        let t = w.incident_at(LATERAL_OFFSET);
        let nestor = &w.users[U_NESTOR];
        let wks = nestor.wks;
        let src = &w.computers[wks];
        let me = Who::user(&nestor.sam);
        let svc = Who::user(&w.users[U_SVC].sam);
        let ps = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
        let ps_cmd = "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA";

        // Foothold: encoded PowerShell fetches a tool, which dumps LSASS.
        self.push_sec(ev_process(t - 12 * MIN, wks, me, ps, ps_cmd));
        let lp = self.rng.ephemeral_port();
        self.push_net(NetRow {
            ts: t - 12 * MIN + 4 * SEC,
            computer: wks,
            action: "ConnectionSuccess",
            remote_ip: PAYLOAD_IP.to_string(),
            remote_port: 443,
            remote_url: None,
            local_port: lp,
            protocol: "Tcp",
            process: "powershell.exe",
            account: Some(nestor.sam.clone()),
            command_line: Some(ps_cmd.to_string()),
        });
        self.push_sec(ev_process(
            t - 9 * MIN,
            wks,
            me,
            r"C:\Users\Public\pd64.exe",
            r"C:\Users\Public\pd64.exe -accepteula -ma lsass.exe C:\Users\Public\lsass.dmp",
        ));

        // Probing WinRM, which is closed.
        for (i, &s) in [w.sql01, w.bkp01, w.app01].iter().enumerate() {
            let lp = self.rng.ephemeral_port();
            self.push_net(NetRow {
                ts: t - MIN + i as i64 * 3 * SEC,
                computer: wks,
                action: "ConnectionFailed",
                remote_ip: w.computers[s].ip.clone(),
                remote_port: 5985,
                remote_url: None,
                local_port: lp,
                protocol: "Tcp",
                process: "powershell.exe",
                account: Some(nestor.sam.clone()),
                command_line: Some(ps_cmd.to_string()),
            });
        }

        let hops: [(usize, i32, i64, &str, &str); 5] = [
            (
                w.app01,
                3,
                2,
                r"C:\Windows\System32\cmd.exe",
                "cmd.exe /c whoami /all",
            ),
            (
                w.sql01,
                3,
                9,
                r"C:\Windows\System32\cmd.exe",
                r#"cmd.exe /c net group "Domain Admins" /domain"#,
            ),
            (
                w.web01,
                3,
                17,
                r"C:\Windows\System32\nltest.exe",
                "nltest.exe /dclist:contoso.com",
            ),
            (
                w.dcs[0],
                3,
                26,
                r"C:\Windows\System32\ntdsutil.exe",
                r#"ntdsutil.exe "ac i ntds" ifm "create full C:\Windows\Temp\ifm" q q"#,
            ),
            (
                w.app02,
                10,
                34,
                ps,
                r"powershell.exe -c Compress-Archive -Path \\DC01\C$\Windows\Temp\ifm -DestinationPath C:\Windows\Temp\ifm.zip",
            ),
        ];
        for (server, logon_type, minute, path, cmd) in hops {
            let ts = t + minute * MIN;
            let dst = &w.computers[server];
            let (tool, tool_cmd, port) = if logon_type == 10 {
                (
                    r"C:\Windows\System32\mstsc.exe",
                    format!("mstsc.exe /v:{}", dst.name),
                    3389,
                )
            } else {
                (ps, ps_cmd.to_string(), 445)
            };
            self.push_sec(SecRow {
                ip: Some(dst.ip.clone()),
                target_user: Some(svc.name.to_string()),
                target_domain: Some(DOMAIN),
                process: Some(tool.to_string()),
                ..ev_subject(ts - 20 * SEC, wks, 4648, me)
            });
            let (process, account) = if port == 3389 {
                ("mstsc.exe", nestor.sam.as_str())
            } else {
                ("powershell.exe", nestor.sam.as_str())
            };
            self.connect(ts - 5 * SEC, wks, server, port, process, account, &tool_cmd);
            let (lproc, pkg) = if logon_type == 10 {
                ("User32", "Negotiate")
            } else {
                ("NtLmSsp", "NTLM")
            };
            self.push_sec(SecRow {
                ip: Some(src.ip.clone()),
                workstation: Some(src.name.clone()),
                subject_user: Some(if logon_type == 10 {
                    format!("{}$", dst.name)
                } else {
                    "-".to_string()
                }),
                logon_process: Some(lproc),
                auth_package: Some(pkg),
                process: Some(if logon_type == 10 {
                    r"C:\Windows\System32\svchost.exe".to_string()
                } else {
                    "-".to_string()
                }),
                ..ev_logon(ts, server, logon_type, svc)
            });
            self.push_sec(ev_privileges(ts, server, svc));
            self.push_sec(ev_process(ts + 40 * SEC, server, svc, path, cmd));
            let end = ts
                + if logon_type == 10 {
                    21 * MIN
                } else {
                    self.rng.range(3 * MIN, 6 * MIN)
                };
            self.push_sec(ev_logoff(end, server, logon_type, svc));
        }
    }

    pub(crate) fn finance_share(&mut self) {
        let w = self.w;
        let t = w.incident_at(FINANCE_OFFSET);
        let joni = &w.users[U_JONI];
        let who = Who::user(&joni.sam);
        let wks = joni.wks;
        let ip = w.computers[wks].ip.clone();
        let robocopy = r"C:\Windows\System32\Robocopy.exe";
        let cmd = format!(
            r#"robocopy.exe \\FS01\Finance "C:\Users\{}\OneDrive - Contoso\Documents\fin" /E /R:0 /W:0"#,
            joni.sam
        );
        self.push_sec(ev_process(t - 30 * SEC, wks, who, robocopy, &cmd));
        self.kerberos_logon(t - 2 * SEC, w.fs01, wks, who);
        self.connect(t - 3 * SEC, wks, w.fs01, 445, "ntoskrnl.exe", "system", "");
        self.push_sec(SecRow {
            ip: Some(ip.clone()),
            share: Some(SHARE_FINANCE),
            ..ev_subject(t, w.fs01, 5140, who)
        });
        let files = w.finance.clone();
        let step = (27 * MIN) / files.len() as i64;
        for (i, f) in files.into_iter().enumerate() {
            let ts = t + SEC + i as i64 * step + self.rng.range(0, step / 2);
            self.push_sec(SecRow {
                ip: Some(ip.clone()),
                share: Some(SHARE_FINANCE),
                object: Some(f),
                ..ev_subject(ts, w.fs01, 5145, who)
            });
        }
    }
}
