//! The identity attacks, seen in the sign-in and audit logs: the password spray, the brute
//! force followed by a new MFA registration, and the impossible travel.

use super::{
    BRUTE_IP, BRUTE_OFFSET, PLACE_BRUTE, PLACE_SPRAY, PLACE_TRAVEL, SPRAY_IP, SPRAY_OFFSET,
    TRAVEL_IP, TRAVEL_OFFSET,
};
use crate::catalog::{
    APPS, APP_EXCHANGE, APP_MY_SIGNINS, APP_OFFICEHOME, APP_SHAREPOINT, APP_TEAMS, CLIENT_MODERN,
    CLIENT_OTHER, MFA, UA_CHROME, UA_DESKTOP, UA_ROPC,
};
use crate::org::{CITIES, SEATTLE, U_ALEX, U_LYNNE, U_MEGAN};
use crate::rows::{AuditRow, SigninRow};
use crate::sim::Sim;
use crate::time::{MIN, SEC};

impl<'w> Sim<'w> {
    pub(crate) fn password_spray(&mut self) {
        let w = self.w;
        let start = w.incident_at(SPRAY_OFFSET);
        let mut candidates: Vec<usize> = (0..w.users.len())
            .filter(|&u| u != U_LYNNE && w.users[u].enabled && !w.users[u].service)
            .collect();
        // Fisher-Yates, then the first 59 and Lynne somewhere among them.
        for i in (1..candidates.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            candidates.swap(i, j);
        }
        candidates.truncate(59);
        let at = self.rng.below(60) as usize;
        candidates.insert(at, U_LYNNE);
        for (i, &u) in candidates.iter().enumerate() {
            let ts = start + i as i64 * 47 * SEC + self.rng.range(0, 20 * SEC);
            let success = u == U_LYNNE;
            let row = self.attacker_signin(
                ts,
                u,
                &APPS[APP_EXCHANGE],
                if success { "0" } else { "50126" },
            );
            self.push_signin(SigninRow {
                ip: SPRAY_IP.to_string(),
                place: &PLACE_SPRAY,
                client: CLIENT_OTHER,
                user_agent: UA_ROPC,
                device: r#"{"deviceId":"","operatingSystem":"","browser":""}"#.to_string(),
                risk: if success { "medium" } else { "none" },
                ..row
            });
        }
    }

    pub(crate) fn brute_force(&mut self) {
        let w = self.w;
        let start = w.incident_at(BRUTE_OFFSET);
        for i in 0..36 {
            let ts = start + i * 30 * SEC + self.rng.range(0, 10 * SEC);
            let row = self.attacker_signin(ts, U_MEGAN, &APPS[APP_OFFICEHOME], "50126");
            self.push_signin(SigninRow {
                ip: BRUTE_IP.to_string(),
                place: &PLACE_BRUTE,
                ..row
            });
        }
        for (offset, app) in [
            (19, &APPS[APP_OFFICEHOME]),
            (22, &APPS[APP_EXCHANGE]),
            (24, &APP_MY_SIGNINS),
        ] {
            let row = self.attacker_signin(start + offset * MIN + 12 * SEC, U_MEGAN, app, "0");
            self.push_signin(SigninRow {
                ip: BRUTE_IP.to_string(),
                place: &PLACE_BRUTE,
                risk: "high",
                ..row
            });
        }
        // The attacker registers their own authenticator.
        let correlation = self.rng.guid();
        for (offset, op, reason) in [
            (
                25,
                "User started security info registration",
                "User started the registration for Authenticator App with Notification and Code",
            ),
            (
                26,
                "User registered security info",
                "User registered Authenticator App with Notification and Code",
            ),
        ] {
            let initiated_by = self.user_initiator(U_MEGAN, BRUTE_IP);
            let targets = self.user_target(
                U_MEGAN,
                "StrongAuthenticationMethod",
                "[]",
                "[{\"MethodType\":6,\"Default\":true}]",
            );
            self.push_audit(AuditRow {
                ts: start + offset * MIN + 5 * SEC,
                operation: op,
                category: "UserManagement",
                result: "success",
                result_reason: reason,
                service: "Authentication Methods",
                initiated_by,
                targets,
                correlation: correlation.clone(),
                identity: w.users[U_MEGAN].display.clone(),
            });
        }
    }

    pub(crate) fn impossible_travel(&mut self) {
        let w = self.w;
        let start = w.incident_at(TRAVEL_OFFSET);
        let alex = &w.users[U_ALEX];
        let c = &w.computers[alex.wks];
        let home = self.attacker_signin(start, U_ALEX, &APPS[APP_TEAMS], "0");
        self.push_signin(SigninRow {
            ip: alex.home_ip.clone(),
            place: &CITIES[SEATTLE].place,
            client: CLIENT_MODERN,
            user_agent: UA_DESKTOP,
            device: format!(
                r#"{{"deviceId":"{}","displayName":"{}","operatingSystem":"Windows10","browser":"Rich Client 5.2.4.0","isCompliant":true,"isManaged":true,"trustType":"Hybrid Azure AD joined"}}"#,
                c.aad_id, c.name
            ),
            ca_status: "success",
            auth: MFA,
            ..home
        });
        for (offset, app) in [(40, &APPS[APP_EXCHANGE]), (44, &APPS[APP_SHAREPOINT])] {
            let row = self.attacker_signin(start + offset * MIN, U_ALEX, app, "0");
            self.push_signin(SigninRow {
                ip: TRAVEL_IP.to_string(),
                place: &PLACE_TRAVEL,
                user_agent: UA_CHROME,
                device:
                    r#"{"deviceId":"","operatingSystem":"Windows10","browser":"Chrome 130.0.0"}"#
                        .to_string(),
                ca_status: "success",
                risk: "medium",
                ..row
            });
        }
    }
}
