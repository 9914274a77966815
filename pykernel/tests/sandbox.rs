//! A real ipykernel in its sandbox: it runs code, and it cannot reach
//! what a kernel must not.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tarn_common::supervisor::Supervisor;
use tarn_pykernel::{Channel, Event, HostedKernel, LaunchOptions, Launcher, Sandbox};

fn python() -> PathBuf {
    let p = std::env::var_os("TARN_KERNEL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.kernel-env/bin/python")
        });
    assert!(
        p.exists(),
        "no kernel environment at {}: run dev/setup.sh --kernels",
        p.display()
    );
    p
}

async fn launcher(root: &std::path::Path, sandbox: Sandbox) -> Launcher {
    Launcher::new(
        LaunchOptions {
            python: python(),
            root: root.to_path_buf(),
            sandbox,
            uid_base: 2_100_000,
            max_processes: 64,
            binds: vec![],
            env: vec![],
        },
        Supervisor::new(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("launcher")
}

/// Runs `code`; returns the text of its result or error, and its stream output.
async fn run(
    k: &HostedKernel,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    code: &str,
) -> (String, String) {
    let req = k.conn.request(
        "execute_request",
        json!({"code": code, "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
    );
    k.conn.send(Channel::Shell, &req).await.unwrap();
    let (mut result, mut streams) = (String::new(), String::new());
    // Done when both the reply (shell) and the idle status (iopub, after
    // every output) have arrived: the two channels are not ordered.
    let (mut replied, mut idle) = (false, false);
    while !(replied && idle) {
        let ev = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("an answer within 60 s")
            .expect("events");
        let Event::Message(ch, m) = ev else {
            panic!("{ev:?}")
        };
        if m.parent_header.get("msg_id").and_then(Value::as_str) != Some(req.msg_id()) {
            continue;
        }
        match (ch, m.msg_type()) {
            (Channel::IoPub, "execute_result") => {
                result = m.content["data"]["text/plain"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            }
            (Channel::IoPub, "error") => {
                result = format!(
                    "{}: {}",
                    m.content["ename"].as_str().unwrap_or(""),
                    m.content["evalue"].as_str().unwrap_or("")
                )
            }
            (Channel::IoPub, "stream") => {
                streams.push_str(m.content["text"].as_str().unwrap_or(""))
            }
            (Channel::Shell, "execute_reply") => replied = true,
            (Channel::IoPub, "status") if m.content["execution_state"] == "idle" => idle = true,
            _ => {}
        }
    }
    (result, streams)
}

/// What a kernel tries: (what, code).
fn probes(
    secret: &std::path::Path,
    other: &std::path::Path,
    port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("read a file outside", format!("open({:?}).read()", secret.display().to_string())),
        ("list another kernel", format!("import os; os.listdir({:?})", other.display().to_string())),
        ("reach a loopback port", format!("import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); 'connected'")),
        ("fork without bound", "import subprocess\nps = []\ntry:\n    for _ in range(300):\n        ps.append(subprocess.Popen(['sleep', '30']))\nexcept OSError as e:\n    pass\nfinally:\n    [p.kill() for p in ps]\nlen(ps)".to_string()),
        ("outgrow its memory", "b = bytearray(4 << 30); len(b)".to_string()),
    ]
}

async fn try_all(
    k: &HostedKernel,
    ev: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    probes: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (what, code) in probes {
        let (r, _) = run(k, ev, code).await;
        out.push((*what, r));
    }
    out
}

#[tokio::test]
async fn a_sandboxed_kernel_runs_code_and_cannot_reach_what_it_must_not() {
    let root = tempfile::Builder::new()
        .prefix("tk")
        .tempdir_in("/tmp")
        .unwrap();
    // A secret beside the kernels, as the lake and the state directory are.
    let secret = tempfile::Builder::new()
        .prefix("secret")
        .tempdir_in("/tmp")
        .unwrap();
    let secret_file = secret.path().join("token.key");
    std::fs::write(&secret_file, "do not read").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let l = launcher(&root.path().join("k"), Sandbox::Bubblewrap).await;
    let a = HostedKernel::start(&l, Duration::from_secs(60))
        .await
        .expect("kernel a");
    let b = HostedKernel::start(&l, Duration::from_secs(60))
        .await
        .expect("kernel b");
    a.limit_memory(3 << 30, Duration::from_secs(30))
        .await
        .expect("limit");
    let mut ev = a.take_events().unwrap();

    // The kernel runs code and has its own directory.
    let (r, _) = run(&a, &mut ev, "1 + 1").await;
    assert_eq!(r, "2");
    let (r, _) = run(
        &a,
        &mut ev,
        "import os; open('mine.txt','w').write('x'); sorted(os.listdir('.'))",
    )
    .await;
    assert!(r.contains("mine.txt"), "{r}");

    let probes = probes(&secret_file, &b.dir, port);
    let seen = try_all(&a, &mut ev, &probes).await;
    let get = |what: &str| seen.iter().find(|(w, _)| *w == what).unwrap().1.clone();
    assert!(
        get("read a file outside").starts_with("FileNotFoundError"),
        "{seen:?}"
    );
    let other = get("list another kernel");
    assert!(
        other.starts_with("FileNotFoundError") || other.starts_with("PermissionError"),
        "{seen:?}"
    );
    assert!(
        get("reach a loopback port").starts_with("ConnectionRefusedError")
            || get("reach a loopback port").starts_with("OSError"),
        "{seen:?}"
    );
    let forked: usize = get("fork without bound").parse().unwrap_or(usize::MAX);
    assert!(forked < 64, "forked {forked} processes: {seen:?}");
    assert!(
        get("outgrow its memory").starts_with("MemoryError"),
        "{seen:?}"
    );

    // Control: the same probes from an unconfined kernel (no sandbox, no
    // limits) succeed, so it is the sandbox that refused them.
    let croot = tempfile::Builder::new()
        .prefix("tc")
        .tempdir_in("/tmp")
        .unwrap();
    let lc = launcher(&croot.path().join("k"), Sandbox::Unconfined).await;
    let c = HostedKernel::start(&lc, Duration::from_secs(60))
        .await
        .expect("kernel c");
    let mut cev = c.take_events().unwrap();
    let seen = try_all(&c, &mut cev, &probes).await;
    let get = |what: &str| seen.iter().find(|(w, _)| *w == what).unwrap().1.clone();
    assert_eq!(get("read a file outside"), "'do not read'", "{seen:?}");
    assert!(get("list another kernel").starts_with('['), "{seen:?}");
    assert_eq!(get("reach a loopback port"), "'connected'", "{seen:?}");
    assert_eq!(get("fork without bound"), "300", "{seen:?}");
    assert_eq!(
        get("outgrow its memory"),
        (4u64 << 30).to_string(),
        "{seen:?}"
    );

    // A kernel that exits says why.
    let req = a.conn.request(
        "execute_request",
        json!({"code": "import os; os._exit(3)", "silent": false}),
    );
    a.conn.send(Channel::Shell, &req).await.unwrap();
    let why = tokio::time::timeout(Duration::from_secs(30), a.exited())
        .await
        .expect("exit");
    assert!(why.contains("status 3"), "{why}");
    drop(listener);
}
