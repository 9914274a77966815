//! A person's day at their workstation: logon, applications, screen unlocks, Kerberos
//! logons on the domain controllers, file server sessions, web traffic, administrators'
//! RDP sessions on servers, and logoff.

use super::Sim;
use crate::catalog::{
    department_share, ADMIN_PROCESSES, ENGINEER_PROCESSES, SHARED_FILES, SHARE_FINANCE,
    SHARE_SHARED, SHARE_USERS, STARTUP_PROCESSES, SYSTEM_ENDPOINTS, USER_ENDPOINTS, USER_PROCESSES,
};
use crate::org::DOMAIN;
use crate::rows::{
    ev_failed, ev_logoff, ev_logon, ev_privileges, ev_process, ev_subject, SecRow, Who,
};
use crate::time::{is_workday, HOUR, MIN, SEC};

impl<'w> Sim<'w> {
    pub(crate) fn user_day(&mut self, u: usize, day: i64) {
        let w = self.w;
        let user = &w.users[u];
        let Some(city) = user.city else { return };
        if !user.enabled || user.service {
            return;
        }
        let workday = is_workday(day);
        if !self.rng.chance(if workday { 0.94 } else { 0.10 }) {
            return;
        }
        let local_midnight = day - city.tz_min * MIN;
        let r = &mut self.rng;
        let in_office = workday && !r.chance(user.remote_prob);
        let (start_min, len_min) = if workday {
            (7 * 60 + 15 + r.range(0, 135), 6 * 60 + 30 + r.range(0, 210))
        } else {
            (9 * 60 + r.range(0, 9 * 60), 20 + r.range(0, 140))
        };
        let day_start = local_midnight + start_min * MIN + r.range(0, 60) * SEC;
        let day_end = day_start + len_min * MIN;
        let egress = if in_office {
            city.office_ip
        } else {
            user.home_ip.as_str()
        };
        self.workstation_day(u, day_start, day_end, workday);
        self.signin_day(u, city, day_start, day_end, workday, egress);
    }

    pub(crate) fn workstation_day(
        &mut self,
        u: usize,
        day_start: i64,
        day_end: i64,
        workday: bool,
    ) {
        let w = self.w;
        let user = &w.users[u];
        let wks = user.wks;
        let c = &w.computers[wks];
        let who = Who::user(&user.sam);
        let machine = format!("{}$", c.name);
        let t0 = day_start - self.rng.range(MIN, 4 * MIN);

        if self.rng.chance(0.05) {
            let ts = t0 - self.rng.range(10 * SEC, 40 * SEC);
            self.push_sec(SecRow {
                ip: Some("127.0.0.1".into()),
                workstation: Some(c.name.clone()),
                subject_user: Some(machine.clone()),
                logon_process: Some("User32"),
                auth_package: Some("Negotiate"),
                process: Some(r"C:\Windows\System32\svchost.exe".into()),
                ..ev_failed(ts, wks, 2, who)
            });
        }
        self.push_sec(SecRow {
            ip: Some("127.0.0.1".into()),
            workstation: Some(c.name.clone()),
            subject_user: Some(machine.clone()),
            logon_process: Some("User32"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\svchost.exe".into()),
            ..ev_logon(t0, wks, 2, who)
        });
        if user.admin {
            self.push_sec(ev_privileges(t0, wks, who));
        }
        for (i, (path, cmd)) in STARTUP_PROCESSES.iter().enumerate() {
            let ts = t0 + (3 + 15 * i as i64) * SEC + self.rng.range(0, 10 * SEC);
            self.push_sec(ev_process(ts, wks, who, path, cmd));
        }

        // Applications started through the day.
        let n_proc = self.rng.range(3, 11);
        for _ in 0..n_proc {
            let ts = self.rng.range(t0, day_end);
            let (path, cmd) = match (user.dept, self.rng.below(3)) {
                ("Engineering", 0) => *self.rng.pick(&ENGINEER_PROCESSES),
                ("IT", 0) => *self.rng.pick(&ADMIN_PROCESSES),
                _ => *self.rng.pick(&USER_PROCESSES),
            };
            let path = path.replace("{u}", &user.sam);
            let cmd = cmd.replace("{u}", &user.sam);
            self.push_sec(ev_process(ts, wks, who, &path, &cmd));
        }

        // Screen unlocks.
        for _ in 0..self.rng.below(4) {
            let ts = self.rng.range(t0 + HOUR, day_end);
            self.push_sec(SecRow {
                ip: Some("127.0.0.1".into()),
                workstation: Some(c.name.clone()),
                subject_user: Some(machine.clone()),
                logon_process: Some("User32"),
                auth_package: Some("Negotiate"),
                process: Some(r"C:\Windows\System32\svchost.exe".into()),
                ..ev_logon(ts, wks, 7, who)
            });
        }

        // Kerberos network logons on the domain controllers.
        for _ in 0..self.rng.range(2, 6) {
            let ts = self.rng.range(t0, day_end);
            let dc = *self.rng.pick(&w.dcs);
            self.kerberos_logon(ts, dc, wks, who);
            let port = if self.rng.chance(0.5) { 88 } else { 389 };
            self.connect(
                ts - SEC,
                wks,
                dc,
                port,
                "lsass.exe",
                "system",
                r"C:\Windows\system32\lsass.exe",
            );
        }

        // File server sessions.
        let sessions = if workday {
            self.rng.range(1, 4)
        } else {
            self.rng.range(0, 2)
        };
        for _ in 0..sessions {
            let ts = self.rng.range(t0, day_end);
            self.file_session(u, ts);
        }

        // Web and cloud traffic.
        let weights: Vec<u32> = USER_ENDPOINTS.iter().map(|e| e.weight).collect();
        for _ in 0..self.rng.range(6, 16) {
            let ts = self.rng.range(t0, day_end + 30 * MIN);
            let e = &USER_ENDPOINTS[self.rng.weighted(&weights)];
            let failed = self.rng.chance(0.02);
            self.outbound(ts, wks, e, &user.sam, failed);
        }
        let mut ts = t0 + self.rng.range(0, HOUR);
        while ts < day_end {
            self.outbound(ts, wks, &SYSTEM_ENDPOINTS[2], &user.sam, false);
            ts += self.rng.range(90 * MIN, 150 * MIN);
        }

        // Administrators work on servers over RDP.
        if user.admin && workday && self.rng.chance(0.4) {
            let servers: Vec<usize> = w.servers().collect();
            let server = *self.rng.pick(&servers);
            let ts = self.rng.range(t0 + HOUR, day_end - HOUR);
            self.admin_rdp(u, server, ts);
        }

        let off = day_end + self.rng.range(MIN, 10 * MIN);
        self.push_sec(ev_logoff(off, wks, 2, who));
    }

    pub(crate) fn kerberos_logon(&mut self, ts: i64, target: usize, source: usize, who: Who<'_>) {
        let src = &self.w.computers[source];
        self.push_sec(SecRow {
            ip: Some(src.ip.clone()),
            workstation: Some("-".into()),
            subject_user: Some("-".into()),
            logon_process: Some("Kerberos"),
            auth_package: Some("Kerberos"),
            process: Some("-".into()),
            ..ev_logon(ts, target, 3, who)
        });
        let off = ts + self.rng.range(SEC, 20 * SEC);
        self.push_sec(ev_logoff(off, target, 3, who));
    }

    pub(crate) fn file_session(&mut self, u: usize, ts: i64) {
        let w = self.w;
        let user = &w.users[u];
        let who = Who::user(&user.sam);
        let wks = user.wks;
        let fs = w.fs01;
        let ip = w.computers[wks].ip.clone();
        let share = match self.rng.below(10) {
            0..=3 => department_share(user.dept),
            4..=7 => SHARE_SHARED,
            _ => SHARE_USERS,
        };
        self.kerberos_logon(ts, fs, wks, who);
        self.connect(ts - SEC, wks, fs, 445, "ntoskrnl.exe", "system", "");
        self.push_sec(SecRow {
            ip: Some(ip.clone()),
            share: Some(share),
            ..ev_subject(ts + SEC, fs, 5140, who)
        });
        let mut t = ts + 2 * SEC;
        for _ in 0..self.rng.range(1, 6) {
            let object = if share == SHARE_FINANCE {
                self.rng.pick(&w.finance).clone()
            } else if share == SHARE_SHARED {
                (*self.rng.pick(&SHARED_FILES)).to_string()
            } else if share == SHARE_USERS {
                format!(
                    r"{}\Documents\Notes_{}.docx",
                    user.sam,
                    self.rng.range(1, 40)
                )
            } else {
                format!(
                    r"Team\Weekly_Update_2026-W{:02}.docx",
                    self.rng.range(30, 45)
                )
            };
            self.push_sec(SecRow {
                ip: Some(ip.clone()),
                share: Some(share),
                object: Some(object),
                ..ev_subject(t, fs, 5145, who)
            });
            t += self.rng.range(2 * SEC, 90 * SEC);
        }
    }

    pub(crate) fn admin_rdp(&mut self, u: usize, server: usize, ts: i64) {
        let w = self.w;
        let user = &w.users[u];
        let who = Who::user(&user.sam);
        let wks = user.wks;
        let (src, dst) = (&w.computers[wks], &w.computers[server]);
        let mstsc = r"C:\Windows\System32\mstsc.exe";
        self.push_sec(ev_process(
            ts - 20 * SEC,
            wks,
            who,
            mstsc,
            &format!("\"{mstsc}\" /v:{}", dst.name),
        ));
        self.push_sec(SecRow {
            ip: Some(dst.ip.clone()),
            target_user: Some(user.sam.clone()),
            target_domain: Some(DOMAIN),
            process: Some(r"C:\Windows\System32\lsass.exe".into()),
            ..ev_subject(ts - 5 * SEC, wks, 4648, who)
        });
        self.connect(
            ts - 2 * SEC,
            wks,
            server,
            3389,
            "mstsc.exe",
            &user.sam,
            &format!("\"mstsc.exe\" /v:{}", dst.name),
        );
        self.push_sec(SecRow {
            ip: Some(src.ip.clone()),
            workstation: Some(src.name.clone()),
            subject_user: Some(format!("{}$", dst.name)),
            logon_process: Some("User32"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\svchost.exe".into()),
            ..ev_logon(ts, server, 10, who)
        });
        self.push_sec(ev_privileges(ts, server, who));
        let mut t = ts + MIN;
        for _ in 0..self.rng.range(1, 4) {
            let (path, cmd) = *self.rng.pick(&ADMIN_PROCESSES);
            self.push_sec(ev_process(t, server, who, path, cmd));
            t += self.rng.range(MIN, 10 * MIN);
        }
        let off = t + self.rng.range(5 * MIN, 40 * MIN);
        self.push_sec(ev_logoff(off, server, 10, who));
    }
}
