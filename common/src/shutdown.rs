//! Process-wide shutdown: one root token, cancelled on the first SIGINT or
//! SIGTERM; a second signal exits at once.

use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first Ctrl-C / SIGTERM. A second signal
/// terminates the process immediately, so a stuck drain never traps the user.
pub fn install_signal_handlers() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    // The one task outside a supervisor: it exists before any role does
    // and ends the process itself.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining (press Ctrl-C again to exit at once)");
        t.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
