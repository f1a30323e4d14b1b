//! Where a running service is in its life (as the health check reports it), and the supervision
//! of its long-lived tasks: one that dies of a panic marks the service failed.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Where the service is in its life, as the health check reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Running,
    Stopping,
    /// A pipeline or exporter task ended on its own (a bug): data is no longer flowing.
    Failed,
}

/// The shared, changing status and when the service started running.
#[derive(Clone, Default)]
pub struct StatusCell(Arc<(AtomicU8, Mutex<Option<String>>)>);

impl StatusCell {
    pub fn get(&self) -> Status {
        match self.0.0.load(Ordering::Acquire) {
            1 => Status::Running,
            2 => Status::Stopping,
            3 => Status::Failed,
            _ => Status::Starting,
        }
    }

    pub fn set(&self, s: Status) {
        let v = match s {
            Status::Starting => 0,
            Status::Running => 1,
            Status::Stopping => 2,
            Status::Failed => 3,
        };
        if s == Status::Running
            && let Ok(mut since) = self.0.1.lock()
        {
            *since = Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
        }
        self.0.0.store(v, Ordering::Release);
    }

    pub fn up_since(&self) -> Option<String> {
        self.0.1.lock().ok().and_then(|s| s.clone())
    }
}

/// Runs a task that should live until shutdown; if it ends any other way (a panic unwinding
/// through it), the service is marked failed so the health check says so.
pub async fn guarded(status: StatusCell, what: String, task: impl std::future::Future<Output = ()>) {
    struct Guard {
        status: StatusCell,
        what: String,
        finished: bool,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            if self.finished {
                return;
            }
            if std::thread::panicking() {
                tracing::error!(task = %self.what, "task stopped unexpectedly; data no longer flows through it");
                self.status.set(Status::Failed);
            } else {
                // Dropped unfinished without a panic: cut off (the runtime ending after the
                // shutdown deadline), which the shutdown has already reported.
                tracing::debug!(task = %self.what, "task cut off");
            }
        }
    }
    let mut guard = Guard { status, what, finished: false };
    task.await;
    guard.finished = true;
}

/// Waits for a task spawned elsewhere and panics if it panicked, so that `guarded` sees it.
pub async fn panics_of(task: JoinHandle<()>) {
    if let Err(e) = task.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_dies_marks_the_service_failed() {
        let status = StatusCell::default();
        status.set(Status::Running);
        tokio::spawn(guarded(status.clone(), "fine".into(), async {})).await.unwrap();
        assert_eq!(status.get(), Status::Running);
        let dying = tokio::spawn(guarded(status.clone(), "dying".into(), async { panic!("a bug") }));
        assert!(dying.await.is_err());
        assert_eq!(status.get(), Status::Failed);
        // A task cut off (aborted at the shutdown deadline) is not a failure.
        status.set(Status::Stopping);
        let endless = tokio::spawn(guarded(status.clone(), "endless".into(), std::future::pending::<()>()));
        endless.abort();
        assert!(endless.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(status.get(), Status::Stopping);
    }

    #[tokio::test]
    async fn a_receiver_task_that_panics_is_seen_through_its_watcher() {
        let status = StatusCell::default();
        status.set(Status::Running);
        let task = tokio::spawn(async { panic!("a parser bug") });
        assert!(tokio::spawn(guarded(status.clone(), "receiver r".into(), panics_of(task))).await.is_err());
        assert_eq!(status.get(), Status::Failed);
    }
}
