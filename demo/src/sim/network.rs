//! Network connections as Defender for Endpoint records them: between internal computers
//! (with the inbound side) and out to the internet.

use super::Sim;
use crate::catalog::Endpoint;
use crate::rows::NetRow;
use crate::world::Kind;

impl<'w> Sim<'w> {
    /// An outbound connection from `from` to an internal computer, and the inbound side.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        &mut self,
        ts: i64,
        from: usize,
        to: usize,
        port: i32,
        process: &'static str,
        account: &str,
        cmd: &str,
    ) {
        let w = self.w;
        let local_port = self.rng.ephemeral_port();
        self.push_net(NetRow {
            ts,
            computer: from,
            action: "ConnectionSuccess",
            remote_ip: w.computers[to].ip.clone(),
            remote_port: port,
            remote_url: None,
            local_port,
            protocol: "Tcp",
            process,
            account: Some(account.to_string()),
            command_line: if cmd.is_empty() {
                None
            } else {
                Some(cmd.to_string())
            },
        });
        let (in_process, in_account, in_cmd) = match port {
            3389 => (
                "svchost.exe",
                "network service",
                Some("svchost.exe -k termsvcs -s TermService"),
            ),
            445 => ("ntoskrnl.exe", "system", None),
            _ => (
                "lsass.exe",
                "system",
                Some(r"C:\Windows\system32\lsass.exe"),
            ),
        };
        // Domain controllers see so much traffic that only a sample is kept, as in practice.
        if port != 445
            && port != 3389
            && w.computers[to].kind == Kind::DomainController
            && !self.rng.chance(0.3)
        {
            return;
        }
        self.push_net(NetRow {
            ts,
            computer: to,
            action: "InboundConnectionAccepted",
            remote_ip: w.computers[from].ip.clone(),
            remote_port: local_port,
            remote_url: None,
            local_port: port,
            protocol: "Tcp",
            process: in_process,
            account: Some(in_account.to_string()),
            command_line: in_cmd.map(str::to_string),
        });
    }

    pub(crate) fn outbound(
        &mut self,
        ts: i64,
        computer: usize,
        e: &Endpoint,
        user: &str,
        failed: bool,
    ) {
        let local_port = self.rng.ephemeral_port();
        self.push_net(NetRow {
            ts,
            computer,
            action: if failed {
                "ConnectionFailed"
            } else {
                "ConnectionSuccess"
            },
            remote_ip: e.ip.to_string(),
            remote_port: e.port,
            remote_url: Some(e.url),
            local_port,
            protocol: "Tcp",
            process: e.process,
            account: Some(e.account.unwrap_or(user).to_string()),
            command_line: Some(e.cmd.to_string()),
        });
    }
}
