//! The machines' own day: service logons, scheduled processes and telemetry on the servers,
//! machine-account logons from the workstations, and the nightly SQL backup job.

use super::Sim;
use crate::catalog::{SERVER_PROCESSES, SYSTEM_ENDPOINTS};
use crate::org::U_SVC;
use crate::rows::{ev_logoff, ev_logon, ev_privileges, ev_process, SecRow, Who};
use crate::time::{DAY, HOUR, MIN, SEC};
use crate::world::Kind;

impl<'w> Sim<'w> {
    pub(crate) fn background_day(&mut self, day: i64) {
        let w = self.w;
        let servers: Vec<usize> = w.servers().collect();
        let sys_weights: Vec<u32> = SYSTEM_ENDPOINTS.iter().map(|e| e.weight).collect();
        for &s in &servers {
            let name = &w.computers[s].name;
            let machine = format!("{name}$");
            for h in 0..24 {
                let hour = day + h * HOUR;
                let ts = hour + self.rng.range(0, HOUR);
                self.service_logon(ts, s);
                for _ in 0..self.rng.below(3) {
                    let (path, cmd) = *self.rng.pick(&SERVER_PROCESSES);
                    let t = hour + self.rng.range(0, HOUR);
                    self.push_sec(ev_process(t, s, Who::machine(&machine), path, cmd));
                }
                let e = &SYSTEM_ENDPOINTS[self.rng.weighted(&sys_weights)];
                let t = hour + self.rng.range(0, HOUR);
                self.outbound(t, s, e, "system", false);
            }
        }

        // Workstations: service logons and machine-account Kerberos logons.
        for wks in 0..w.computers.len() {
            if w.computers[wks].kind != Kind::Workstation {
                continue;
            }
            let machine = format!("{}$", w.computers[wks].name);
            for _ in 0..2 {
                let ts = day + self.rng.range(0, DAY);
                self.service_logon(ts, wks);
            }
            for _ in 0..3 {
                let ts = day + self.rng.range(0, DAY);
                let dc = *self.rng.pick(&w.dcs);
                self.kerberos_logon(ts, dc, wks, Who::machine(&machine));
            }
        }

        // The backup service account's nightly job: a service logon on SRV-BKP01 and a
        // network logon from there to SRV-SQL01.
        let svc = Who::user(&w.users[U_SVC].sam);
        let ts = day + HOUR + self.rng.range(0, 5 * MIN);
        let bkp = &w.computers[w.bkp01];
        self.push_sec(SecRow {
            ip: Some("-".into()),
            workstation: Some("-".into()),
            subject_user: Some(format!("{}$", bkp.name)),
            logon_process: Some("Advapi"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\services.exe".into()),
            ..ev_logon(ts, w.bkp01, 5, svc)
        });
        self.push_sec(ev_privileges(ts, w.bkp01, svc));
        let t = ts + self.rng.range(30 * SEC, 2 * MIN);
        self.push_sec(SecRow {
            ip: Some(bkp.ip.clone()),
            workstation: Some("-".into()),
            subject_user: Some("-".into()),
            logon_process: Some("Kerberos"),
            auth_package: Some("Kerberos"),
            process: Some("-".into()),
            ..ev_logon(t, w.sql01, 3, svc)
        });
        self.push_sec(ev_privileges(t, w.sql01, svc));
        self.connect(
            t - SEC,
            w.bkp01,
            w.sql01,
            1433,
            "ContosoBackup.exe",
            "svc-sqlbackup",
            r#""C:\Program Files\Contoso\Backup\ContosoBackup.exe" --job nightly-sql"#,
        );
        let done = t + self.rng.range(25 * MIN, 55 * MIN);
        self.push_sec(ev_logoff(done, w.sql01, 3, svc));
    }

    pub(crate) fn service_logon(&mut self, ts: i64, computer: usize) {
        let name = &self.w.computers[computer].name;
        self.push_sec(SecRow {
            ip: Some("-".into()),
            workstation: Some("-".into()),
            subject_user: Some(format!("{name}$")),
            logon_process: Some("Advapi"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\services.exe".into()),
            ..ev_logon(ts, computer, 5, Who::system())
        });
        self.push_sec(ev_privileges(ts, computer, Who::system()));
    }
}
