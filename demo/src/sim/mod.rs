//! The simulation of ordinary activity: each calendar day, every person's workstation
//! session and cloud sign-ins, the servers' and workstations' background work, and the
//! directory's audit trail. The incidents are planted on top by [`crate::incidents`].

mod directory;
mod network;
mod servers;
mod signin;
mod workstation;

use crate::rng::Rng;
use crate::rows::{AuditRow, NetRow, SecRow, SigninRow};
use crate::time::DAY;
use crate::world::World;

pub(crate) struct Sim<'w> {
    pub(crate) w: &'w World,
    pub(crate) rng: Rng,
    pub(crate) signins: Vec<SigninRow>,
    pub(crate) sec: Vec<SecRow>,
    pub(crate) net: Vec<NetRow>,
    pub(crate) audit: Vec<AuditRow>,
}

impl<'w> Sim<'w> {
    pub(crate) fn in_window(&self, ts: i64) -> bool {
        ts >= self.w.start && ts < self.w.end
    }

    pub(crate) fn push_signin(&mut self, row: SigninRow) {
        if self.in_window(row.ts) {
            self.signins.push(row);
        }
    }

    pub(crate) fn push_sec(&mut self, row: SecRow) {
        if self.in_window(row.ts) {
            self.sec.push(row);
        }
    }

    pub(crate) fn push_net(&mut self, row: NetRow) {
        if self.in_window(row.ts) {
            self.net.push(row);
        }
    }

    pub(crate) fn push_audit(&mut self, row: AuditRow) {
        if self.in_window(row.ts) {
            self.audit.push(row);
        }
    }

    /// Calendar days (UTC midnights) whose activity can fall into the window.
    pub(crate) fn days(&self) -> Vec<i64> {
        let first = self.w.start.div_euclid(DAY) * DAY - DAY;
        let mut days = Vec::new();
        let mut d = first;
        while d < self.w.end + DAY {
            days.push(d);
            d += DAY;
        }
        days
    }

    pub(crate) fn run(&mut self) {
        let days = self.days();
        for &day in &days {
            for u in 0..self.w.users.len() {
                self.user_day(u, day);
            }
            self.background_day(day);
            self.audit_day(day);
        }
    }
}
