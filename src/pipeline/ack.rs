//! Acknowledgement: a receiver answers its client only once every route has taken the data.
//! Every copy and part of a batch holds a clone of the receiver's `Ack`; when the last clone is
//! dropped the receiver learns the outcome, which is a failure if any holder called `fail`.

use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Why data was not taken: the answer a receiver turns into its protocol's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The client may send the same data again later (gRPC UNAVAILABLE, HTTP 503).
    pub retryable: bool,
    pub message: String,
}

impl Refusal {
    pub fn retryable(message: impl Into<String>) -> Refusal {
        Refusal {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Refusal {
        Refusal {
            retryable: false,
            message: message.into(),
        }
    }
}

/// A claim on a receiver's answer; see the module comment.
#[derive(Clone, Debug)]
pub struct Ack(Arc<AckState>);

#[derive(Debug)]
struct AckState {
    failure: Mutex<Option<Refusal>>,
    done: Mutex<Option<oneshot::Sender<Result<(), Refusal>>>>,
}

/// The receiver's side: resolves when every clone of the `Ack` is gone.
pub struct AckWait(oneshot::Receiver<Result<(), Refusal>>);

impl Ack {
    pub fn new() -> (Ack, AckWait) {
        let (tx, rx) = oneshot::channel();
        let state = AckState {
            failure: Mutex::new(None),
            done: Mutex::new(Some(tx)),
        };
        (Ack(Arc::new(state)), AckWait(rx))
    }

    /// Marks the data as not taken; the first failure is the one reported.
    pub fn fail(&self, refusal: Refusal) {
        if let Ok(mut f) = self.0.failure.lock()
            && f.is_none()
        {
            *f = Some(refusal);
        }
    }
}

impl Drop for AckState {
    fn drop(&mut self) {
        let failure = self.failure.get_mut().ok().and_then(|f| f.take());
        if let Some(tx) = self.done.get_mut().ok().and_then(|d| d.take()) {
            let _ = tx.send(failure.map_or(Ok(()), Err));
        }
    }
}

impl AckWait {
    pub async fn wait(self) -> Result<(), Refusal> {
        self.0.await.unwrap_or_else(|_| {
            Err(Refusal::retryable(
                "the pipeline stopped before taking the data",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_last_clone_drops() {
        let (ack, wait) = Ack::new();
        let copy = ack.clone();
        drop(ack);
        let mut wait = std::pin::pin!(wait.wait());
        assert!(futures_poll_once(&mut wait).await.is_none());
        drop(copy);
        assert_eq!(wait.await, Ok(()));
    }

    #[tokio::test]
    async fn any_failure_fails_the_whole() {
        let (ack, wait) = Ack::new();
        let copy = ack.clone();
        copy.fail(Refusal::retryable("queue full"));
        drop(copy);
        drop(ack);
        assert_eq!(wait.wait().await, Err(Refusal::retryable("queue full")));
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::time::timeout(std::time::Duration::from_millis(20), f)
            .await
            .ok()
    }
}
