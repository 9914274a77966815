//! Kernels as pods: in Kubernetes, where a gateway pod cannot build a
//! bubblewrap sandbox, each kernel is a pod of its own, made from a
//! template the Helm chart ships (its security context, resources and
//! image), as Jupyter Enterprise Gateway does.
//!
//! The gateway speaks to the API server directly (a few REST calls: create,
//! read and delete a pod, list its own), with the service account's token
//! re-read for each call because projected tokens rotate. A kernel pod
//! listens on five TCP ports of its own address; the chart's
//! NetworkPolicy lets only gateway pods reach them, and lets the kernel
//! reach only the gateway's Flight SQL port, where it is its user's
//! session and nothing more. Kernel pods are owned by the gateway's pod, so
//! Kubernetes deletes them with it; the ones a restarted gateway container
//! left behind are deleted when it starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::connection::ConnectionInfo;
use crate::Error;
use tarn_common::supervisor::Supervisor;

/// The label naming the gateway a kernel pod belongs to.
pub const GATEWAY_LABEL: &str = "tarn.io/kernel-of";

/// The environment variable a kernel pod finds its connection file in.
pub const CONNECTION_ENV: &str = "TARN_KERNEL_CONNECTION";

/// What making kernel pods needs.
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// The API server, e.g. `https://10.96.0.1:443`.
    pub api: String,
    /// The service account token (re-read for every call); a missing file
    /// sends no credential.
    pub token_file: PathBuf,
    /// The API server's CA certificate (PEM); `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The namespace kernel pods are made in.
    pub namespace: String,
    /// The pod every kernel is made from: its first container runs the
    /// kernel (`python -m tarn_provider.pod`).
    pub template: Value,
    /// The first of the five ports a kernel listens on.
    pub first_port: u16,
    /// Kernel pods run as uids from here on (one per kernel, so a uid's
    /// process limit is the kernel's own).
    pub uid_base: u32,
    /// Processes and threads one kernel may run at once.
    pub max_processes: u64,
    /// Environment variables of every kernel.
    pub env: Vec<(String, String)>,
    /// The gateway's own pod name: kernel pods are owned by that pod and
    /// labelled with it. Empty: not in a pod (kernel pods are labelled with
    /// a random name and not owned).
    pub owner: String,
}

/// A kernel pod that is running.
pub struct PodSpawned {
    /// Its name.
    pub name: String,
    /// Its connection, with the pod's address.
    pub info: ConnectionInfo,
    /// The uid it runs as.
    pub uid: u32,
}

/// Makes and watches kernel pods.
#[derive(Clone)]
pub struct PodLauncher {
    inner: Arc<Inner>,
}

struct Inner {
    opts: PodOptions,
    http: reqwest::Client,
    tasks: Supervisor,
    /// The label value and owner reference every kernel pod gets.
    gateway: String,
    owner_ref: Option<Value>,
}

/// Kernel uids are taken from this many after `uid_base`.
const UID_RANGE: u32 = 50_000;

impl PodLauncher {
    /// Checks the template and the API server (reachable, and the
    /// gateway's account may list pods), finds the gateway's own pod to
    /// own kernel pods, and deletes the kernel pods an earlier run of this
    /// gateway left behind.
    pub async fn new(opts: PodOptions, tasks: Supervisor) -> Result<PodLauncher, Error> {
        let env = |m: String| Error::Environment(m);
        if opts.template.get("kind").and_then(Value::as_str) != Some("Pod") {
            return Err(env(
                "the kernel pod template is not a Pod (kind: Pod)".into()
            ));
        }
        if opts.template["spec"]["containers"]
            .as_array()
            .is_none_or(|c| c.is_empty())
        {
            return Err(env(
                "the kernel pod template has no container (spec.containers)".into(),
            ));
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                env(format!(
                    "cannot read the API server's CA {}: {e}",
                    ca.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| env(format!("{} is not a PEM certificate: {e}", ca.display())))?;
            http = http
                .add_root_certificate(cert)
                .tls_built_in_root_certs(false);
        }
        let http = http
            .build()
            .map_err(|e| env(format!("cannot make an HTTP client: {e}")))?;
        let gateway = if opts.owner.is_empty() {
            format!(
                "gateway-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        } else {
            opts.owner.clone()
        };
        let mut launcher = Inner {
            opts,
            http,
            tasks,
            gateway,
            owner_ref: None,
        };
        if !launcher.opts.owner.is_empty() {
            let me = launcher
                .call(
                    reqwest::Method::GET,
                    &launcher.pod_url(&launcher.opts.owner),
                    None,
                )
                .await?;
            let (status, body) = me;
            if status != 200 {
                return Err(env(format!(
                    "cannot read the gateway's own pod {:?}: {}",
                    launcher.opts.owner,
                    api_message(status, &body)
                )));
            }
            let uid = body["metadata"]["uid"].as_str().unwrap_or_default();
            launcher.owner_ref = Some(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "name": launcher.opts.owner,
                "uid": uid,
            }));
        }
        let launcher = PodLauncher {
            inner: Arc::new(launcher),
        };
        let left = launcher.inner.list_mine().await?;
        for name in left {
            tracing::info!(pod = %name, "deleting a kernel pod an earlier run of this gateway left");
            launcher.inner.delete(&name).await;
        }
        Ok(launcher)
    }

    /// Where the pods' background tasks run.
    pub fn tasks(&self) -> &Supervisor {
        &self.inner.tasks
    }

    /// Makes a kernel pod and waits (up to `wait`) until it runs and has
    /// an address; a pod that does not get there is deleted.
    pub async fn create(&self, wait: Duration) -> Result<PodSpawned, Error> {
        let s = &self.inner;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = s.opts.template["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("tarn-kernel");
        let name = format!("{prefix}-{}", &id[..12]);
        let uid = s.opts.uid_base + (uuid::Uuid::new_v4().as_u128() as u32) % UID_RANGE;
        let info = ConnectionInfo::tcp("0.0.0.0", s.opts.first_port);
        let body = s.pod(&name, uid, &info);
        let (status, answer) = s
            .call(reqwest::Method::POST, &s.pods_url(), Some(&body))
            .await?;
        if status != 201 && status != 200 {
            return Err(Error::Start(format!(
                "the API server refused the kernel pod: {}",
                api_message(status, &answer)
            )));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let last = match s.call(reqwest::Method::GET, &s.pod_url(&name), None).await {
                Ok((200, pod)) => {
                    let phase = pod["status"]["phase"].as_str().unwrap_or("");
                    let ip = pod["status"]["podIP"].as_str().unwrap_or("");
                    if phase == "Running" && !ip.is_empty() {
                        let mut info = info;
                        info.ip = ip.to_string();
                        tracing::debug!(pod = %name, %ip, uid, "kernel pod running");
                        return Ok(PodSpawned { name, info, uid });
                    }
                    if let Some(why) = ended(&pod) {
                        s.delete(&name).await;
                        return Err(Error::Start(why));
                    }
                    waiting(&pod)
                }
                Ok((status, body)) => api_message(status, &body),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                s.delete(&name).await;
                return Err(Error::Start(format!(
                    "the kernel pod {name} was not running within {wait:?} ({last})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Watches a kernel pod until it ends, is deleted, or `kill` is
    /// cancelled (then deletes it); says why it ended.
    pub async fn watch(&self, name: &str, kill: CancellationToken) -> String {
        let s = &self.inner;
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = kill.cancelled() => {
                    s.delete(name).await;
                    return "the kernel was shut down".into();
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match s.call(reqwest::Method::GET, &s.pod_url(name), None).await {
                Ok((200, pod)) => {
                    failures = 0;
                    if let Some(why) = ended(&pod) {
                        s.delete(name).await;
                        return why;
                    }
                }
                Ok((404, _)) => return format!("its pod {name} was deleted"),
                Ok((status, body)) => {
                    failures += 1;
                    if failures % 30 == 1 {
                        tracing::warn!(pod = %name, error = %api_message(status, &body), "cannot read a kernel pod");
                    }
                }
                Err(e) => {
                    // The API server being away does not end the kernel;
                    // its heartbeat tells whether it still answers.
                    failures += 1;
                    if failures % 30 == 1 {
                        tracing::warn!(pod = %name, error = %e, "cannot read a kernel pod");
                    }
                }
            }
        }
    }
}

impl Inner {
    fn pods_url(&self) -> String {
        format!(
            "{}/api/v1/namespaces/{}/pods",
            self.opts.api.trim_end_matches('/'),
            self.opts.namespace
        )
    }

    fn pod_url(&self, name: &str) -> String {
        format!("{}/{name}", self.pods_url())
    }

    /// The kernel pod: the template with its name, labels, owner, uid,
    /// connection and limits filled in.
    fn pod(&self, name: &str, uid: u32, info: &ConnectionInfo) -> Value {
        let mut pod = self.opts.template.clone();
        let meta = &mut pod["metadata"];
        meta["name"] = json!(name);
        if !meta["labels"].is_object() {
            meta["labels"] = json!({});
        }
        meta["labels"][GATEWAY_LABEL] = json!(self.gateway);
        if let Some(owner) = &self.owner_ref {
            meta["ownerReferences"] = json!([owner]);
        }
        let spec = &mut pod["spec"];
        if !spec["securityContext"].is_object() {
            spec["securityContext"] = json!({});
        }
        spec["securityContext"]["runAsUser"] = json!(uid);
        spec["securityContext"]["runAsGroup"] = json!(uid);
        spec["securityContext"]["runAsNonRoot"] = json!(true);
        let kernel = &mut spec["containers"][0];
        if !kernel["env"].is_array() {
            kernel["env"] = json!([]);
        }
        if let Some(env) = kernel["env"].as_array_mut() {
            env.push(json!({"name": CONNECTION_ENV,
                            "value": serde_json::to_string(info).unwrap_or_default()}));
            env.push(json!({"name": "TARN_KERNEL_MAX_PROCESSES",
                            "value": self.opts.max_processes.to_string()}));
            for (k, v) in &self.opts.env {
                env.push(json!({"name": k, "value": v}));
            }
        }
        pod
    }

    /// The kernel pods labelled as this gateway's.
    async fn list_mine(&self) -> Result<Vec<String>, Error> {
        let url = format!(
            "{}?labelSelector={}%3D{}",
            self.pods_url(),
            GATEWAY_LABEL.replace('/', "%2F"),
            self.gateway
        );
        let (status, body) = self.call(reqwest::Method::GET, &url, None).await?;
        if status != 200 {
            return Err(Error::Environment(format!(
                "the gateway cannot list pods in namespace {:?}: {} (its service account needs a Role allowing pods create, get, list and delete)",
                self.opts.namespace,
                api_message(status, &body)
            )));
        }
        Ok(body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes a pod at once (no grace: a kernel keeps nothing).
    async fn delete(&self, name: &str) {
        let url = format!("{}?gracePeriodSeconds=0", self.pod_url(name));
        match self.call(reqwest::Method::DELETE, &url, None).await {
            Ok((200 | 202 | 404, _)) => {}
            Ok((status, body)) => {
                tracing::warn!(pod = %name, error = %api_message(status, &body), "cannot delete a kernel pod")
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "cannot delete a kernel pod"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        let mut req = self.http.request(method, url);
        if let Ok(token) = std::fs::read_to_string(&self.opts.token_file) {
            req = req.bearer_auth(token.trim());
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        let resp = req.send().await.map_err(|e| {
            Error::Start(format!(
                "the Kubernetes API at {} did not answer: {e}",
                self.opts.api
            ))
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// The API server's own words for a refusal.
fn api_message(status: u16, body: &Value) -> String {
    match body["message"].as_str() {
        Some(m) => format!("HTTP {status}: {m}"),
        None => format!("HTTP {status}"),
    }
}

/// Why a pod's kernel ended, if it has.
fn ended(pod: &Value) -> Option<String> {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let terminated = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|c| c.first())
        .map(|c| &c["state"]["terminated"])
        .filter(|t| t.is_object());
    if phase != "Failed" && phase != "Succeeded" && terminated.is_none() {
        return None;
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    Some(match terminated {
        Some(t) => {
            let reason = t["reason"].as_str().unwrap_or("");
            let code = t["exitCode"].as_i64();
            let said = t["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!("; it said: {}", m.lines().last().unwrap_or(m)))
                .unwrap_or_default();
            match (reason, code) {
                ("OOMKilled", _) => format!("its pod {name} ran out of memory (OOMKilled){said}"),
                (r, Some(c)) if !r.is_empty() => {
                    format!("its pod {name} ended: {r}, exit status {c}{said}")
                }
                (_, Some(c)) => format!("the Python process exited with status {c}{said}"),
                (r, None) => format!("its pod {name} ended: {r}{said}"),
            }
        }
        None => format!(
            "its pod {name} is {phase}: {}",
            pod["status"]["reason"]
                .as_str()
                .unwrap_or("no reason given")
        ),
    })
}

/// What a pod that does not run yet waits for.
fn waiting(pod: &Value) -> String {
    let waiting = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|c| c.first())
        .map(|c| &c["state"]["waiting"])
        .filter(|w| w.is_object());
    if let Some(w) = waiting {
        return format!(
            "waiting: {} {}",
            w["reason"].as_str().unwrap_or(""),
            w["message"].as_str().unwrap_or("")
        )
        .trim()
        .to_string();
    }
    let unscheduled = pod["status"]["conditions"].as_array().and_then(|c| {
        c.iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
    });
    if let Some(c) = unscheduled {
        return format!(
            "not scheduled: {}",
            c["message"].as_str().unwrap_or("no node fits")
        );
    }
    format!(
        "phase {}",
        pod["status"]["phase"].as_str().unwrap_or("unknown")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launcher(template: Value) -> Inner {
        Inner {
            opts: PodOptions {
                api: "http://127.0.0.1:1".into(),
                token_file: "/nonexistent".into(),
                ca_file: None,
                namespace: "tarn".into(),
                template,
                first_port: 52000,
                uid_base: 200_000,
                max_processes: 64,
                env: vec![("TARN_X".into(), "1".into())],
                owner: "tarn-gateway-abc".into(),
            },
            http: reqwest::Client::new(),
            tasks: Supervisor::new(CancellationToken::new()),
            gateway: "tarn-gateway-abc".into(),
            owner_ref: Some(json!({"apiVersion": "v1", "kind": "Pod",
                                   "name": "tarn-gateway-abc", "uid": "u-1"})),
        }
    }

    #[test]
    fn a_kernel_pod_is_the_template_with_its_own_name_uid_owner_and_connection() {
        let template = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "tarn-kernel", "labels": {"app": "k"}},
            "spec": {"securityContext": {"fsGroup": 1},
                     "containers": [{"name": "kernel", "env": [{"name": "A", "value": "b"}]}]}
        });
        let l = launcher(template.clone());
        let info = ConnectionInfo::tcp("0.0.0.0", 52000);
        let a = l.pod("tarn-kernel-1", 200_007, &info);
        let b = l.pod("tarn-kernel-2", 200_008, &info);
        assert_eq!(a["metadata"]["name"], "tarn-kernel-1");
        assert_eq!(a["metadata"]["labels"]["app"], "k");
        assert_eq!(a["metadata"]["labels"][GATEWAY_LABEL], "tarn-gateway-abc");
        assert_eq!(a["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(a["spec"]["securityContext"]["runAsUser"], 200_007);
        assert_eq!(a["spec"]["securityContext"]["fsGroup"], 1);
        assert_eq!(b["spec"]["securityContext"]["runAsUser"], 200_008);
        let env = a["spec"]["containers"][0]["env"].as_array().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["A", CONNECTION_ENV, "TARN_KERNEL_MAX_PROCESSES", "TARN_X"]
        );
        let conn: ConnectionInfo = serde_json::from_str(env[1]["value"].as_str().unwrap()).unwrap();
        assert_eq!((conn.transport.as_str(), conn.shell_port), ("tcp", 52000));
        // The template itself is untouched: each pod starts from it.
        assert_eq!(l.opts.template, template);
    }

    #[test]
    fn why_a_pod_ended_is_told_in_its_own_words() {
        let oom = json!({"metadata": {"name": "k1"}, "status": {"phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}});
        assert!(ended(&oom).unwrap().contains("ran out of memory"));
        let exit = json!({"metadata": {"name": "k1"}, "status": {"phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"reason": "Error", "exitCode": 3,
                                                            "message": "boom\nlast words"}}}]}});
        let why = ended(&exit).unwrap();
        assert!(
            why.contains("exit status 3") && why.contains("last words"),
            "{why}"
        );
        let running = json!({"status": {"phase": "Running",
            "containerStatuses": [{"state": {"running": {}}}]}});
        assert_eq!(ended(&running), None);
        let pulling = json!({"status": {"phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert!(waiting(&pulling).contains("ImagePullBackOff"));
    }
}
