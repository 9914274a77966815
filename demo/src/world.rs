//! The simulated world built from the options: every person with their home, phone and
//! workstation, and every computer with its names and addresses.

use std::collections::HashSet;

use crate::catalog::finance_files;
use crate::incidents::SPRAY_OFFSET;
use crate::org::{HomeCity, CITIES, DEPARTMENTS, FIRST_NAMES, LAST_NAMES, NAMED};
use crate::rng::Rng;
use crate::time::{DAY, HOUR};
use crate::DemoOptions;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MobileOs {
    Ios,
    Android,
}

pub(crate) struct User {
    pub(crate) upn: String,
    pub(crate) sam: String,
    pub(crate) display: String,
    pub(crate) id: String,
    pub(crate) dept: &'static str,
    pub(crate) title: Option<&'static str>,
    pub(crate) city: Option<&'static HomeCity>,
    pub(crate) home_ip: String,
    pub(crate) mobile: Option<MobileOs>,
    pub(crate) wks: usize,
    pub(crate) remote_prob: f64,
    pub(crate) extra_signins: u64,
    pub(crate) enabled: bool,
    pub(crate) service: bool,
    pub(crate) admin: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Workstation,
    DomainController,
    FileServer,
    Server,
}

pub(crate) struct Computer {
    pub(crate) name: String,
    pub(crate) fqdn: String,
    pub(crate) device_name: String,
    pub(crate) ip: String,
    pub(crate) mde_id: String,
    pub(crate) aad_id: String,
    pub(crate) kind: Kind,
}

pub(crate) struct World {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) users: Vec<User>,
    pub(crate) computers: Vec<Computer>,
    pub(crate) dcs: [usize; 2],
    pub(crate) fs01: usize,
    pub(crate) app01: usize,
    pub(crate) app02: usize,
    pub(crate) sql01: usize,
    pub(crate) web01: usize,
    pub(crate) bkp01: usize,
    pub(crate) finance: Vec<String>,
}

impl World {
    pub(crate) fn build(opts: &DemoOptions) -> World {
        let mut rng = Rng::new(opts.seed, 1);
        let end = opts.end.timestamp_micros();
        let start = end - i64::from(opts.days) * DAY;

        // Computers: workstations first, then the servers in a fixed order.
        let n_wks = ((32.0 * opts.scale).round() as usize).max(32);
        let mut computers = Vec::with_capacity(n_wks + 8);
        for i in 0..n_wks {
            let name = format!("WKS-{}", 1001 + i);
            let ip = format!("10.10.{}.{}", 1 + i / 200, 11 + i % 200);
            computers.push(new_computer(&mut rng, name, ip, Kind::Workstation));
        }
        let servers: [(&str, &str, Kind); 8] = [
            ("DC01", "10.0.0.10", Kind::DomainController),
            ("DC02", "10.0.0.11", Kind::DomainController),
            ("FS01", "10.0.1.20", Kind::FileServer),
            ("SRV-APP01", "10.0.1.31", Kind::Server),
            ("SRV-APP02", "10.0.1.32", Kind::Server),
            ("SRV-SQL01", "10.0.1.41", Kind::Server),
            ("SRV-WEB01", "10.0.1.51", Kind::Server),
            ("SRV-BKP01", "10.0.1.61", Kind::Server),
        ];
        for (name, ip, kind) in servers {
            computers.push(new_computer(
                &mut rng,
                name.to_string(),
                ip.to_string(),
                kind,
            ));
        }

        // People: the named ones, the service account, then random employees.
        let n_users = ((200.0 * opts.scale).round() as usize).max(80);
        let mut users = Vec::with_capacity(n_users + 1);
        let mut taken = HashSet::new();
        for n in &NAMED {
            let local = format!("{}.{}", n.first, n.last).to_lowercase();
            taken.insert(local.clone());
            let city = &CITIES[n.city];
            users.push(User {
                upn: format!("{local}@contoso.com"),
                sam: local,
                display: format!("{} {}", n.first, n.last),
                id: rng.guid(),
                dept: n.dept,
                title: Some(n.title),
                city: Some(city),
                home_ip: residential_ip(&mut rng, city),
                mobile: Some(if rng.chance(0.6) {
                    MobileOs::Ios
                } else {
                    MobileOs::Android
                }),
                wks: n.wks,
                remote_prob: 0.3,
                extra_signins: 3,
                enabled: true,
                service: false,
                admin: n.dept == "IT",
            });
        }
        users.push(User {
            upn: "svc-sqlbackup@contoso.com".to_string(),
            sam: "svc-sqlbackup".to_string(),
            display: "SQL Backup Service".to_string(),
            id: rng.guid(),
            dept: "IT",
            title: None,
            city: None,
            home_ip: String::new(),
            mobile: None,
            wks: 0,
            remote_prob: 0.0,
            extra_signins: 0,
            enabled: true,
            service: true,
            admin: false,
        });
        let city_weights: Vec<u32> = CITIES.iter().map(|c| c.weight).collect();
        let dept_weights: Vec<u32> = DEPARTMENTS.iter().map(|d| d.weight).collect();
        // The incident actors' workstations are theirs alone; everyone else shares the rest.
        let reserved: HashSet<usize> = NAMED.iter().map(|n| n.wks).collect();
        let shared: Vec<usize> = (0..n_wks).filter(|i| !reserved.contains(i)).collect();
        let mut next_wks = 0usize;
        while users.len() < n_users + 1 {
            let first = *rng.pick(&FIRST_NAMES);
            let last = *rng.pick(&LAST_NAMES);
            let base = format!("{first}.{last}").to_lowercase();
            let mut local = base.clone();
            let mut k = 2;
            while taken.contains(&local) {
                local = format!("{base}{k}");
                k += 1;
            }
            taken.insert(local.clone());
            let city = &CITIES[rng.weighted(&city_weights)];
            let dept = &DEPARTMENTS[rng.weighted(&dept_weights)];
            let mobile = match rng.below(10) {
                0..=4 => Some(MobileOs::Ios),
                5..=7 => Some(MobileOs::Android),
                _ => None,
            };
            users.push(User {
                upn: format!("{local}@contoso.com"),
                sam: local,
                display: format!("{first} {last}"),
                id: rng.guid(),
                dept: dept.name,
                title: Some(*rng.pick(dept.titles)),
                city: Some(city),
                home_ip: residential_ip(&mut rng, city),
                mobile,
                wks: shared[next_wks % shared.len()],
                remote_prob: 0.15 + 0.5 * rng.unit(),
                extra_signins: rng.below(5),
                enabled: !rng.chance(0.03),
                service: false,
                admin: dept.name == "IT",
            });
            next_wks += 1;
        }

        World {
            start,
            end,
            users,
            computers,
            dcs: [n_wks, n_wks + 1],
            fs01: n_wks + 2,
            app01: n_wks + 3,
            app02: n_wks + 4,
            sql01: n_wks + 5,
            web01: n_wks + 6,
            bkp01: n_wks + 7,
            finance: finance_files(),
        }
    }

    pub(crate) fn servers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.computers.len()).filter(|c| self.computers[*c].kind != Kind::Workstation)
    }

    /// When an incident starting `offset` before `end` happens, squeezed into short windows.
    pub(crate) fn incident_at(&self, offset: i64) -> i64 {
        let room = self.end - self.start - 2 * HOUR;
        if offset <= room {
            self.end - offset
        } else {
            self.end - ((i128::from(offset) * i128::from(room)) / i128::from(SPRAY_OFFSET)) as i64
        }
    }
}

pub(crate) fn new_computer(rng: &mut Rng, name: String, ip: String, kind: Kind) -> Computer {
    let fqdn = format!("{name}.contoso.com");
    Computer {
        device_name: fqdn.to_lowercase(),
        fqdn,
        name,
        ip,
        mde_id: rng.hex40(),
        aad_id: rng.guid(),
        kind,
    }
}

pub(crate) fn residential_ip(rng: &mut Rng, city: &HomeCity) -> String {
    format!("{}.{}.{}", city.isp, 1 + rng.below(254), 1 + rng.below(254))
}
