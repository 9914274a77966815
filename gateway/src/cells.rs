//! The bound on a kernel's cell queue.
//!
//! A kernel runs its cells one at a time; the ones sent meanwhile wait.
//! Without a bound, a client flooding `execute_request`s would make the
//! gateway hold every one of them (and later run them all). Past
//! `max_queued_cells` waiting, a cell is answered at once with
//! `KERNEL_QUEUE_FULL` as a Jupyter error reply, and the cells already
//! queued run as usual.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use tarn_common::{ErrorCode, TarnError};

/// Takes a place in the queue, or refuses when `max` cells already wait.
/// The runner gives the place back when it takes the cell.
pub fn admit(waiting: &AtomicUsize, max: usize) -> Result<(), TarnError> {
    waiting
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .map(|_| ())
        .map_err(|n| {
            TarnError::new(
                ErrorCode::KernelQueueFull,
                format!(
                    "{n} cells are already waiting to run in this kernel, the most allowed \
                     (max_queued_cells); this cell was not queued"
                ),
            )
        })
}

/// Answers a refused `execute_request` as Jupyter expects of a failed
/// cell: an `error` on iopub and an `execute_reply` with status `error`.
/// No busy/idle status: the kernel's state is that of the running cell.
pub fn refuse(
    parent: &Value,
    e: &TarnError,
    execution_count: u32,
    emit: impl Fn(&str, &str, &Value, Value),
) {
    tracing::info!(code = e.code.number(), "cell refused: {e}");
    let mut c = crate::kernel::error_content(e);
    emit("iopub", "error", parent, c.clone());
    c["status"] = json!("error");
    c["execution_count"] = json!(execution_count);
    emit("shell", "execute_reply", parent, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refuses_past_its_bound_and_frees_places() {
        let waiting = AtomicUsize::new(0);
        assert!(admit(&waiting, 2).is_ok());
        assert!(admit(&waiting, 2).is_ok());
        let e = admit(&waiting, 2).unwrap_err();
        assert_eq!(e.code, ErrorCode::KernelQueueFull);
        waiting.fetch_sub(1, Ordering::SeqCst);
        assert!(admit(&waiting, 2).is_ok());
    }
}
