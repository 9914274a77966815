//! The directory's audit trail: synchronisation, token revocations, group changes by the
//! administrators, password changes and security info registrations, devices, app role
//! grants and policy updates.

use super::Sim;
use crate::org::{CITIES, SEATTLE, U_LEE, U_SVC};
use crate::rng::Rng;
use crate::rows::AuditRow;
use crate::time::{is_workday, DAY, HOUR, MIN, SEC};

impl<'w> Sim<'w> {
    pub(crate) fn user_initiator(&self, u: usize, ip: &str) -> String {
        let user = &self.w.users[u];
        format!(
            r#"{{"user":{{"id":"{}","displayName":null,"userPrincipalName":"{}","ipAddress":"{}","roles":[]}}}}"#,
            user.id, user.upn, ip
        )
    }

    pub(crate) fn app_initiator(&mut self, name: &str) -> String {
        format!(
            r#"{{"app":{{"appId":null,"displayName":"{}","servicePrincipalId":"{}","servicePrincipalName":null}}}}"#,
            json_escape(name),
            self.rng.guid()
        )
    }

    pub(crate) fn user_target(&self, u: usize, property: &str, old: &str, new: &str) -> String {
        let user = &self.w.users[u];
        format!(
            r#"[{{"id":"{}","displayName":null,"type":"User","userPrincipalName":"{}","modifiedProperties":[{{"displayName":"{}","oldValue":"{}","newValue":"{}"}}]}}]"#,
            user.id,
            user.upn,
            json_escape(property),
            json_escape(old),
            json_escape(new)
        )
    }

    pub(crate) fn random_person(&mut self) -> usize {
        // Background audit events leave the incident actors alone.
        loop {
            let u = self.rng.range(U_SVC as i64 + 1, self.w.users.len() as i64) as usize;
            if self.w.users[u].enabled {
                return u;
            }
        }
    }

    pub(crate) fn audit_self_service_reset(&mut self, u: usize, ts: i64, ip: String) {
        let initiated_by = self.user_initiator(u, &ip);
        let targets = self.user_target(u, "PasswordChanged", "", "true");
        let correlation = self.rng.guid();
        self.push_audit(AuditRow {
            ts,
            operation: "Reset password (self-service)",
            category: "UserManagement",
            result: "success",
            result_reason: "User successfully reset password",
            service: "Self-service Password Management",
            initiated_by,
            targets,
            correlation,
            identity: self.w.users[u].display.clone(),
        });
    }

    pub(crate) fn audit_day(&mut self, day: i64) {
        let w = self.w;
        let workday = is_workday(day);
        let seattle = CITIES[SEATTLE].tz_min * MIN;

        // Directory synchronisation every 30 minutes.
        for slot in 0..48 {
            let cycle = day + slot * 30 * MIN + self.rng.range(0, 90 * SEC);
            for _ in 0..self.rng.below(if workday { 3 } else { 2 }) {
                let u = self.random_person();
                let (prop, old, new) = *self.rng.pick(&[
                    (
                        "LastDirSyncTime",
                        "[\"2026-10-01T00:00:00Z\"]",
                        "[\"2026-10-02T00:00:00Z\"]",
                    ),
                    (
                        "TelephoneNumber",
                        "[\"+1 206 555 0100\"]",
                        "[\"+1 206 555 0199\"]",
                    ),
                    ("Manager", "[]", "[\"Manager changed\"]"),
                    ("JobTitle", "[]", "[\"Title changed\"]"),
                ]);
                let targets = self.user_target(u, prop, old, new);
                let correlation = self.rng.guid();
                let ts = cycle + self.rng.range(0, 30 * SEC);
                self.push_audit(AuditRow {
                    ts,
                    operation: "Update user",
                    category: "UserManagement",
                    result: "success",
                    result_reason: "",
                    service: "Core Directory",
                    initiated_by: r#"{"user":{"id":"0b9f2c1d-7b44-4e3a-9f1c-3a9f2c1d7b44","displayName":null,"userPrincipalName":"Sync_DC01_3a9f2c1d7b44@contoso.onmicrosoft.com","ipAddress":null,"roles":[]}}"#.to_string(),
                    targets,
                    correlation,
                    identity: "On-Premises Directory Synchronization Service Account".to_string(),
                });
            }
        }

        // Token revocations by Microsoft's own services.
        for _ in 0..self.rng.range(2, 7) {
            let u = self.random_person();
            let initiated_by = self.app_initiator("Microsoft Substrate Management");
            let targets = self.user_target(u, "StsRefreshTokensValidFrom", "", "");
            let correlation = self.rng.guid();
            let ts = day + self.rng.range(0, DAY);
            self.push_audit(AuditRow {
                ts,
                operation: "Update user",
                category: "UserManagement",
                result: "success",
                result_reason: "",
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: "Microsoft Substrate Management".to_string(),
            });
        }

        if !workday {
            return;
        }
        let office = |rng: &mut Rng| day - seattle + rng.range(8 * HOUR, 18 * HOUR);

        // Group membership changes by the IT administrators.
        let groups = [
            "Sales Team",
            "VPN Users",
            "Engineering",
            "All Company",
            "M365-E5-Licensed",
            "Finance-FileShare-RW",
            "Project Falcon",
        ];
        for _ in 0..self.rng.range(1, 6) {
            let admin = self.rng.range(0, 2) as usize;
            let u = self.random_person();
            let group = *self.rng.pick(&groups);
            // Only finance people are ever added to the Finance share group.
            if group == "Finance-FileShare-RW" && w.users[u].dept != "Finance" {
                continue;
            }
            let add = self.rng.chance(0.75);
            let initiated_by = self.user_initiator(admin, CITIES[SEATTLE].office_ip);
            let targets = format!(
                r#"[{{"id":"{}","displayName":null,"type":"User","userPrincipalName":"{}","modifiedProperties":[{{"displayName":"Group.DisplayName","oldValue":null,"newValue":"\"{}\""}}]}},{{"id":"{}","displayName":"{}","type":"Group","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                w.users[u].id,
                w.users[u].upn,
                group,
                self.rng.guid(),
                group
            );
            let correlation = self.rng.guid();
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: if add {
                    "Add member to group"
                } else {
                    "Remove member from group"
                },
                category: "GroupManagement",
                result: "success",
                result_reason: "",
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: w.users[admin].display.clone(),
            });
        }

        // People change passwords and register authentication methods.
        for _ in 0..self.rng.range(0, 3) {
            let u = self.random_person();
            let ip = w.users[u].home_ip.clone();
            let initiated_by = self.user_initiator(u, &ip);
            let (op, service, reason, targets) = if self.rng.chance(0.5) {
                (
                    "Change user password",
                    "Core Directory",
                    "",
                    self.user_target(u, "PasswordChanged", "", "true"),
                )
            } else {
                (
                    "User registered security info",
                    "Authentication Methods",
                    "User registered Authenticator App with Notification and Code",
                    self.user_target(
                        u,
                        "StrongAuthenticationMethod",
                        "[]",
                        "[{\"MethodType\":6,\"Default\":true}]",
                    ),
                )
            };
            let correlation = self.rng.guid();
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: op,
                category: "UserManagement",
                result: "success",
                result_reason: reason,
                service,
                initiated_by,
                targets,
                correlation,
                identity: w.users[u].display.clone(),
            });
        }

        // Devices registered, app access granted, the occasional failure.
        if self.rng.chance(0.5) {
            let u = self.random_person();
            let initiated_by = self.app_initiator("Device Registration Service");
            let correlation = self.rng.guid();
            let targets = format!(
                r#"[{{"id":"{}","displayName":"{}-PHONE","type":"Device","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                self.rng.guid(),
                w.users[u].sam.to_uppercase()
            );
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: "Add device",
                category: "Device",
                result: "success",
                result_reason: "",
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: "Device Registration Service".to_string(),
            });
        }
        for _ in 0..self.rng.below(3) {
            let u = self.random_person();
            let app = *self.rng.pick(&[
                "Salesforce",
                "ServiceNow",
                "Workday",
                "Zoom",
                "Adobe Acrobat Sign",
            ]);
            let failed = self.rng.chance(0.05);
            let initiated_by = self.user_initiator(U_LEE, CITIES[SEATTLE].office_ip);
            let targets = format!(
                r#"[{{"id":"{}","displayName":null,"type":"User","userPrincipalName":"{}","modifiedProperties":[]}},{{"id":"{}","displayName":"{}","type":"ServicePrincipal","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                w.users[u].id,
                w.users[u].upn,
                self.rng.guid(),
                app
            );
            let correlation = self.rng.guid();
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: "Add app role assignment grant to user",
                category: "ApplicationManagement",
                result: if failed { "failure" } else { "success" },
                result_reason: if failed {
                    "Microsoft.Online.Workflows.ObjectAlreadyExistsException"
                } else {
                    ""
                },
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: w.users[U_LEE].display.clone(),
            });
        }
        if self.rng.chance(0.08) {
            let initiated_by = self.user_initiator(U_LEE, CITIES[SEATTLE].office_ip);
            let correlation = self.rng.guid();
            let targets = format!(
                r#"[{{"id":"{}","displayName":"Require MFA for all users","type":"Policy","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                self.rng.guid()
            );
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: "Update conditional access policy",
                category: "Policy",
                result: "success",
                result_reason: "",
                service: "Conditional Access",
                initiated_by,
                targets,
                correlation,
                identity: w.users[U_LEE].display.clone(),
            });
        }
    }
}

pub(crate) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
