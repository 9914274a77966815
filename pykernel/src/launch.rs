//! Starting a kernel process: `ipykernel` from the kernel environment, in
//! a bubblewrap sandbox with no network, its own process, IPC and user
//! namespaces, a file system made of the system's read-only parts, the
//! kernel environment and the kernel's own directory — nothing of the
//! lake, the state directory, the keys or other kernels. When the gateway
//! runs as root, each kernel also runs as its own unprivileged uid, so its
//! process limit is its own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::connection::ConnectionInfo;
use crate::Error;
use tarn_common::supervisor::Supervisor;

/// Where the kernel finds its directory inside the sandbox.
pub const KERNEL_HOME: &str = "/home/kernel";

/// How kernels are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// bubblewrap (`bwrap`): namespaces and a constructed file system.
    Bubblewrap,
    /// No confinement: for development on machines without bubblewrap.
    /// The kernel can read what the gateway's user can.
    Unconfined,
}

/// What starting kernels needs.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The kernel environment's interpreter (`ipykernel` installed in it).
    pub python: PathBuf,
    /// Each kernel gets a directory under this one (short: Unix socket
    /// paths are at most 107 bytes).
    pub root: PathBuf,
    /// How kernels are confined.
    pub sandbox: Sandbox,
    /// When the gateway runs as root, kernels run as uids from here on.
    pub uid_base: u32,
    /// Processes and threads a kernel may have at once.
    pub max_processes: u64,
    /// Files made visible read-only inside the sandbox: (host path, path
    /// inside). The gateway's lake socket is one.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Environment variables of every kernel.
    pub env: Vec<(String, String)>,
}

/// A started kernel process.
pub struct Spawned {
    /// The sandbox (or the interpreter, unconfined).
    pub child: tokio::process::Child,
    /// The kernel's directory on the host.
    pub dir: PathBuf,
    /// Its connection, with the socket prefix as the kernel sees it.
    pub info: ConnectionInfo,
    /// The socket prefix on the host.
    pub host_prefix: PathBuf,
    /// The uid it runs as (the gateway's own when not root).
    pub uid: u32,
}

/// Starts kernel processes on this host.
pub struct ProcessLauncher {
    opts: LaunchOptions,
    tasks: Supervisor,
    /// Read-only trees the interpreter needs (its environment and base).
    prefixes: Vec<PathBuf>,
    next_uid: AtomicU32,
    root_user: bool,
}

/// Kernel uids are taken from this many after `uid_base`, round robin.
const UID_RANGE: u32 = 50_000;

impl ProcessLauncher {
    /// Checks the interpreter can run ipykernel (and the sandbox tool is
    /// there) and prepares the kernels' root directory.
    pub async fn new(mut opts: LaunchOptions, tasks: Supervisor) -> Result<ProcessLauncher, Error> {
        // The interpreter's directory resolved (the sandbox holds only the
        // environment's own tree), its name not: a virtualenv's `python`
        // is a link whose name tells it where its environment is.
        if let (Some(dir), Some(name)) = (opts.python.parent(), opts.python.file_name()) {
            if let Ok(dir) = std::fs::canonicalize(dir) {
                opts.python = dir.join(name);
            }
        }
        let out = tokio::process::Command::new(&opts.python)
            .args([
                "-c",
                "import sys, ipykernel; print(sys.prefix); print(sys.base_prefix)",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                Error::Environment(format!("cannot run {}: {e}", opts.python.display()))
            })?;
        if !out.status.success() {
            return Err(Error::Environment(format!(
                "{} cannot import ipykernel: {}",
                opts.python.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let prefixes: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .filter(|p| !p.starts_with("/usr"))
            .collect();
        if opts.sandbox == Sandbox::Bubblewrap {
            let ok = tokio::process::Command::new("bwrap")
                .args(["--unshare-all", "--ro-bind", "/", "/", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .await
                .map_err(|e| {
                    Error::Environment(format!(
                        "bubblewrap (bwrap) is needed to confine kernels: {e}; install the `bubblewrap` package"
                    ))
                })?;
            if !ok.status.success() {
                return Err(Error::Environment(format!(
                    "bubblewrap cannot create a sandbox here: {}",
                    String::from_utf8_lossy(&ok.stderr).trim()
                )));
            }
        }
        std::fs::create_dir_all(&opts.root).map_err(|e| {
            Error::Environment(format!("cannot create {}: {e}", opts.root.display()))
        })?;
        // Kernels (other uids) must pass through it to their own
        // directory, and list nothing.
        let _ = std::fs::set_permissions(&opts.root, std::fs::Permissions::from_mode(0o711));
        let root_user = unsafe { libc::geteuid() } == 0;
        if !root_user {
            tracing::warn!("the gateway does not run as root: kernels run as its own user, so their process limit is shared with it");
        }
        Ok(ProcessLauncher {
            opts,
            tasks,
            prefixes,
            // Gateways sharing a host start at different places.
            next_uid: AtomicU32::new(uuid::Uuid::new_v4().as_u128() as u32 % UID_RANGE),
            root_user,
        })
    }

    /// The options.
    pub fn options(&self) -> &LaunchOptions {
        &self.opts
    }

    /// Where the kernels' background tasks run.
    pub fn tasks(&self) -> &Supervisor {
        &self.tasks
    }

    /// Starts one kernel process in its own new directory.
    pub fn spawn(&self) -> Result<Spawned, Error> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.opts.root.join(&id[..12]);
        std::fs::create_dir(&dir)
            .map_err(|e| Error::Start(format!("cannot create {}: {e}", dir.display())))?;
        let confined = self.opts.sandbox == Sandbox::Bubblewrap;
        let own_uid = self.root_user && confined;
        let uid = if own_uid {
            self.free_uid()
        } else {
            unsafe { libc::geteuid() }
        };
        let inside = match self.opts.sandbox {
            Sandbox::Bubblewrap => PathBuf::from(KERNEL_HOME),
            Sandbox::Unconfined => dir.clone(),
        };
        let info = ConnectionInfo::ipc(&inside.join("k"));
        let file = dir.join("connection.json");
        std::fs::write(&file, serde_json::to_vec(&info).unwrap_or_default())
            .map_err(|e| Error::Start(format!("cannot write {}: {e}", file.display())))?;
        if own_uid {
            chown_tree(&dir, uid)?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Start(e.to_string()))?;
        let argv = self.command(&dir, &inside);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &inside)
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .env("MPLBACKEND", "module://matplotlib_inline.backend_inline")
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if own_uid {
            cmd.uid(uid).gid(uid);
        }
        let nproc = self.opts.max_processes;
        let limit_processes = own_uid;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                if limit_processes {
                    let n = libc::rlimit {
                        rlim_cur: nproc,
                        rlim_max: nproc,
                    };
                    if libc::setrlimit(libc::RLIMIT_NPROC, &n) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // The kernel dies with the gateway.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Start(format!("cannot start {}: {e}", argv[0])))?;
        tracing::debug!(dir = %dir.display(), uid, "kernel process started");
        Ok(Spawned {
            child,
            host_prefix: dir.join("k"),
            dir,
            info,
            uid,
        })
    }

    /// The next kernel uid no process runs as (a uid's process limit
    /// counts all its processes, so kernels never share one).
    fn free_uid(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        let busy: std::collections::HashSet<u32> = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .filter_map(|e| e.metadata().ok().map(|m| m.uid()))
                    .collect()
            })
            .unwrap_or_default();
        loop {
            let uid = self.opts.uid_base + self.next_uid.fetch_add(1, Ordering::SeqCst) % UID_RANGE;
            if !busy.contains(&uid) {
                return uid;
            }
        }
    }

    /// The command line: bwrap's arguments, then the interpreter's.
    fn command(&self, dir: &Path, inside: &Path) -> Vec<String> {
        let python = self.opts.python.display().to_string();
        let kernel = [
            python,
            "-m".into(),
            "ipykernel_launcher".into(),
            "-f".into(),
            inside.join("connection.json").display().to_string(),
        ];
        if self.opts.sandbox == Sandbox::Unconfined {
            return kernel.to_vec();
        }
        let mut a: Vec<String> = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            "/usr",
            "/usr",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Merged-/usr systems link these; others have them as trees.
        for top in ["/bin", "/lib", "/lib64", "/sbin"] {
            match std::fs::read_link(top) {
                Ok(target) => {
                    a.extend(["--symlink".into(), target.display().to_string(), top.into()])
                }
                Err(_) if Path::new(top).exists() => {
                    a.extend(["--ro-bind".into(), top.into(), top.into()])
                }
                Err(_) => {}
            }
        }
        // What programs need of /etc: the loader cache, time zones,
        // certificates and fonts — not passwd, hosts or anything else.
        for etc in [
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/etc/ssl",
            "/etc/ca-certificates",
            "/etc/fonts",
            "/etc/alternatives",
        ] {
            a.extend(["--ro-bind-try".into(), etc.into(), etc.into()]);
        }
        for p in &self.prefixes {
            let p = p.display().to_string();
            a.extend(["--ro-bind".into(), p.clone(), p]);
        }
        for (host, inner) in &self.opts.binds {
            a.extend([
                "--ro-bind".into(),
                host.display().to_string(),
                inner.display().to_string(),
            ]);
        }
        a.extend([
            "--bind".into(),
            dir.display().to_string(),
            inside.display().to_string(),
            "--chdir".into(),
            inside.display().to_string(),
            "--".into(),
        ]);
        a.extend(kernel);
        a
    }
}

fn chown_tree(dir: &Path, uid: u32) -> Result<(), Error> {
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(uid), Some(uid))
            .map_err(|e| Error::Start(format!("cannot hand {} to uid {uid}: {e}", p.display())))
    };
    chown(dir)?;
    for e in std::fs::read_dir(dir).map_err(|e| Error::Start(e.to_string()))? {
        chown(&e.map_err(|e| Error::Start(e.to_string()))?.path())?;
    }
    Ok(())
}
