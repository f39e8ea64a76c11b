//! The first Ctrl-C, process-wide: a flag that the engine, modules and
//! connections read, and a wake-up for whatever is waiting on a command.
//!
//! What each part does with it: the engine starts no new task; a remote
//! command running at that moment is signalled (SIGTERM over its channel,
//! then every process of it ended on the host); a local one loses its
//! process group; `doveadm_backup`/`doveadm_sync` start no new user and
//! record the unfinished ones in their ledger. Commands started after the
//! interrupt (a module's cleanup, a rollback) run normally.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static WAKE: Notify = Notify::const_new();

/// Records the interrupt and wakes every waiter.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
    WAKE.notify_waiters();
}

/// Whether Ctrl-C has been pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Returns once Ctrl-C has been pressed (at once if it already was).
pub async fn wait() {
    loop {
        let woken = WAKE.notified();
        if requested() {
            return;
        }
        woken.await;
    }
}

/// Returns once Ctrl-C is pressed if `armed`, else never: a command that
/// started after the interrupt (cleanup, a rollback) is armed = false and
/// must not be cut short by it.
pub async fn wait_armed(armed: bool) {
    if !armed {
        std::future::pending::<()>().await;
    }
    wait().await
}

/// The message a command or user ended by Ctrl-C reports.
pub const MSG: &str = "interrupted (Ctrl-C)";
