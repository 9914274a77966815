//! A kernel's connection file: where its five channels listen and the key
//! its messages are signed with. A kernel process on the gateway's host
//! listens on Unix sockets in its own directory (ZeroMQ's `ipc`
//! transport), never on a network port: its sandbox has no network at
//! all. A kernel pod listens on TCP ports of its own pod address, which
//! only the gateway may reach (the chart's NetworkPolicy).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The five channels of a Jupyter kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Requests and replies (execute, complete, inspect, …).
    Shell,
    /// Outputs and status, broadcast.
    IoPub,
    /// Input requests from the kernel (`input()`).
    Stdin,
    /// Interrupt and shutdown, beside a busy shell.
    Control,
    /// Echo, to see the kernel is alive.
    Heartbeat,
}

impl Channel {
    /// The name the websocket protocol uses (`channel` field).
    pub fn name(self) -> &'static str {
        match self {
            Channel::Shell => "shell",
            Channel::IoPub => "iopub",
            Channel::Stdin => "stdin",
            Channel::Control => "control",
            Channel::Heartbeat => "hb",
        }
    }

    /// The channel a websocket `channel` field names.
    pub fn from_name(name: &str) -> Option<Channel> {
        Some(match name {
            "shell" => Channel::Shell,
            "iopub" => Channel::IoPub,
            "stdin" => Channel::Stdin,
            "control" => Channel::Control,
            "hb" => Channel::Heartbeat,
            _ => return None,
        })
    }
}

/// The connection file ipykernel reads (`-f`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// `ipc` or `tcp`.
    pub transport: String,
    /// With `ipc`: the socket path prefix (`<ip>-<port>` is each socket);
    /// with `tcp`: the address the kernel listens on.
    pub ip: String,
    /// Shell "port" (a suffix with `ipc`).
    pub shell_port: u16,
    /// IOPub.
    pub iopub_port: u16,
    /// Stdin.
    pub stdin_port: u16,
    /// Control.
    pub control_port: u16,
    /// Heartbeat.
    pub hb_port: u16,
    /// HMAC key (hex of 32 random bytes).
    pub key: String,
    /// `hmac-sha256`.
    pub signature_scheme: String,
    /// The kernelspec.
    pub kernel_name: String,
}

impl ConnectionInfo {
    /// A connection for a kernel whose sockets are `<prefix>-1` … `-5`,
    /// with a fresh random key.
    pub fn ipc(prefix: &Path) -> ConnectionInfo {
        let key: String = (0..2)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        ConnectionInfo {
            transport: "ipc".into(),
            ip: prefix.display().to_string(),
            shell_port: 1,
            iopub_port: 2,
            stdin_port: 3,
            control_port: 4,
            hb_port: 5,
            key,
            signature_scheme: "hmac-sha256".into(),
            kernel_name: "tarn-python".into(),
        }
    }

    /// A connection for a kernel listening on TCP ports `first` …
    /// `first + 4` of `ip`, with a fresh random key.
    pub fn tcp(ip: &str, first: u16) -> ConnectionInfo {
        let mut info = ConnectionInfo::ipc(Path::new(ip));
        info.transport = "tcp".into();
        info.shell_port = first;
        info.iopub_port = first + 1;
        info.stdin_port = first + 2;
        info.control_port = first + 3;
        info.hb_port = first + 4;
        info
    }

    /// Whether the channels are Unix sockets (files that appear when the
    /// kernel listens).
    pub fn is_ipc(&self) -> bool {
        self.transport == "ipc"
    }

    fn port(&self, channel: Channel) -> u16 {
        match channel {
            Channel::Shell => self.shell_port,
            Channel::IoPub => self.iopub_port,
            Channel::Stdin => self.stdin_port,
            Channel::Control => self.control_port,
            Channel::Heartbeat => self.hb_port,
        }
    }

    /// The socket file of `channel`, with the prefix the kernel sees
    /// replaced by `host_prefix` (the same directory outside the sandbox).
    pub fn socket(&self, host_prefix: &Path, channel: Channel) -> PathBuf {
        let name = format!("{}-{}", host_prefix.display(), self.port(channel));
        PathBuf::from(name)
    }

    /// The ZeroMQ endpoint of `channel` from outside the sandbox (with
    /// `tcp`, `host_prefix` is not used: `ip` is the pod's address).
    pub fn endpoint(&self, host_prefix: &Path, channel: Channel) -> String {
        if self.is_ipc() {
            format!("ipc://{}", self.socket(host_prefix, channel).display())
        } else if self.ip.contains(':') {
            format!("tcp://[{}]:{}", self.ip, self.port(channel))
        } else {
            format!("tcp://{}:{}", self.ip, self.port(channel))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_has_its_own_socket_and_keys_differ() {
        let a = ConnectionInfo::ipc(Path::new("/home/kernel/k"));
        let b = ConnectionInfo::ipc(Path::new("/home/kernel/k"));
        assert_ne!(a.key, b.key);
        assert_eq!(a.key.len(), 64);
        let host = Path::new("/var/lib/tarn/kernels/x/k");
        let all: std::collections::HashSet<String> = [
            Channel::Shell,
            Channel::IoPub,
            Channel::Stdin,
            Channel::Control,
            Channel::Heartbeat,
        ]
        .iter()
        .map(|c| a.endpoint(host, *c))
        .collect();
        assert_eq!(all.len(), 5);
        assert!(all.contains("ipc:///var/lib/tarn/kernels/x/k-1"));
        assert_eq!(Channel::from_name("control"), Some(Channel::Control));
        assert_eq!(Channel::from_name("nope"), None);
    }

    #[test]
    fn a_pod_kernel_is_reached_on_five_ports_of_its_address() {
        let t = ConnectionInfo::tcp("10.1.2.3", 52000);
        let host = Path::new("/unused");
        assert_eq!(t.endpoint(host, Channel::Shell), "tcp://10.1.2.3:52000");
        assert_eq!(t.endpoint(host, Channel::Heartbeat), "tcp://10.1.2.3:52004");
        let v6 = ConnectionInfo::tcp("fd00::7", 52000);
        assert_eq!(v6.endpoint(host, Channel::IoPub), "tcp://[fd00::7]:52001");
        assert!(!t.is_ipc());
        assert_ne!(t.key, v6.key);
    }
}
