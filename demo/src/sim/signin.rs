//! A person's cloud sign-ins for a day: desktop, browser and phone apps, with the odd
//! wrong password, MFA prompt, lockout and Conditional Access block.

use super::Sim;
use crate::catalog::{
    AppKind, APPS, APP_OUTLOOK_MOBILE, APP_TEAMS, CLIENT_BROWSER, CLIENT_MODERN, MFA, SFA,
    UA_ANDROID, UA_CHROME, UA_DESKTOP, UA_EDGE, UA_IOS,
};
use crate::org::HomeCity;
use crate::rng::Rng;
use crate::rows::SigninRow;
use crate::time::{HOUR, MIN, SEC};
use crate::world::MobileOs;

impl<'w> Sim<'w> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn signin_day(
        &mut self,
        u: usize,
        city: &'static HomeCity,
        day_start: i64,
        day_end: i64,
        workday: bool,
        egress: &str,
    ) {
        let w = self.w;
        let user = &w.users[u];
        let n = if workday {
            3 + user.extra_signins + self.rng.below(4)
        } else {
            1 + self.rng.below(2)
        };
        let mut times = Vec::with_capacity(n as usize);
        times.push(day_start + self.rng.range(0, 5 * MIN));
        for _ in 1..n {
            times.push(self.rng.range(day_start, day_end + 2 * HOUR));
        }
        times.sort_unstable();
        let lockout_day = self.rng.chance(0.002);
        for (i, &ts) in times.iter().enumerate() {
            let after_hours = ts > day_end;
            let mobile = user
                .mobile
                .filter(|_| after_hours || self.rng.chance(if workday { 0.15 } else { 0.5 }));
            let (app, ip, ua, device, client) = match mobile {
                Some(os) => {
                    let app = if self.rng.chance(0.6) {
                        &APP_OUTLOOK_MOBILE
                    } else {
                        &APPS[APP_TEAMS]
                    };
                    let ip = if egress == city.office_ip && !after_hours {
                        egress.to_string()
                    } else {
                        format!(
                            "{}.{}.{}",
                            city.mobile,
                            self.rng.range(1, 255),
                            self.rng.range(1, 255)
                        )
                    };
                    let (ua, device) = match os {
                        MobileOs::Ios => (
                            UA_IOS,
                            r#"{"deviceId":"","operatingSystem":"Ios 18.0","browser":"Mobile Safari","isCompliant":false,"isManaged":false}"#,
                        ),
                        MobileOs::Android => (
                            UA_ANDROID,
                            r#"{"deviceId":"","operatingSystem":"Android 14","browser":"Chrome Mobile 130.0.0","isCompliant":false,"isManaged":false}"#,
                        ),
                    };
                    (app, ip, ua, device.to_string(), CLIENT_MODERN)
                }
                None => {
                    let weights: Vec<u32> = APPS
                        .iter()
                        .map(|a| {
                            if a.technical && !matches!(user.dept, "IT" | "Engineering") {
                                0
                            } else {
                                a.weight
                            }
                        })
                        .collect();
                    let app = &APPS[self.rng.weighted(&weights)];
                    let ip = if after_hours {
                        user.home_ip.clone()
                    } else {
                        egress.to_string()
                    };
                    let c = &w.computers[user.wks];
                    let (ua, browser, client) = match app.kind {
                        AppKind::Browser => {
                            if self.rng.chance(0.8) {
                                (UA_EDGE, "Edge 130.0.0", CLIENT_BROWSER)
                            } else {
                                (UA_CHROME, "Chrome 130.0.0", CLIENT_BROWSER)
                            }
                        }
                        _ => (UA_DESKTOP, "Rich Client 5.2.4.0", CLIENT_MODERN),
                    };
                    let device = format!(
                        r#"{{"deviceId":"{}","displayName":"{}","operatingSystem":"Windows10","browser":"{}","isCompliant":true,"isManaged":true,"trustType":"Hybrid Azure AD joined"}}"#,
                        c.aad_id, c.name, browser
                    );
                    (app, ip, ua, device, client)
                }
            };
            let first = i == 0;
            let auth = if first || (mobile.is_some() && self.rng.chance(0.3)) {
                MFA
            } else {
                SFA
            };
            let interactive = first || app.kind == AppKind::Browser || !self.rng.chance(0.2);
            let risk = if self.rng.chance(0.004) {
                "low"
            } else {
                "none"
            };
            let place = &city.place;
            let row =
                |rng: &mut Rng, ts: i64, result: &'static str, ca: &'static str, auth| SigninRow {
                    ts,
                    user: u,
                    app,
                    ip: ip.clone(),
                    place,
                    result,
                    client,
                    user_agent: ua,
                    device: device.clone(),
                    ca_status: ca,
                    risk,
                    interactive,
                    auth,
                    correlation: rng.guid(),
                };

            if first && lockout_day {
                for k in 0..4 {
                    let r = row(
                        &mut self.rng,
                        ts - (20 - 2 * k) * MIN,
                        "50126",
                        "notApplied",
                        SFA,
                    );
                    self.push_signin(r);
                }
                let r = row(&mut self.rng, ts - 12 * MIN, "50053", "notApplied", SFA);
                self.push_signin(r);
                self.audit_self_service_reset(u, ts - 5 * MIN, ip.clone());
            } else if self.rng.chance(0.02) {
                let t = ts - self.rng.range(30 * SEC, 90 * SEC);
                let r = row(&mut self.rng, t, "50126", "notApplied", SFA);
                self.push_signin(r);
            }
            if first && self.rng.chance(0.25) {
                let r = row(&mut self.rng, ts - 40 * SEC, "50074", "notApplied", SFA);
                self.push_signin(r);
            }
            if client == CLIENT_BROWSER && self.rng.chance(0.01) {
                let r = row(&mut self.rng, ts - 10 * SEC, "50140", "notApplied", auth);
                self.push_signin(r);
            }
            let r = if mobile.is_some() && self.rng.chance(0.005) {
                row(&mut self.rng, ts, "53003", "failure", auth)
            } else {
                row(&mut self.rng, ts, "0", "success", auth)
            };
            self.push_signin(r);
        }
    }
}
