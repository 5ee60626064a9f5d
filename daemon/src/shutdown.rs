//! [`Shutdown`]: the one stop signal of a daemon, as mini-redis has it.
//!
//! A [`Trigger`] is held by whoever decides when to stop (the binary on
//! SIGTERM, a test when it is done, the reload loop before a restart); every
//! task holds a [`Shutdown`] cloned from it and stops when it fires. Dropping
//! the trigger fires it too, so a task never outlives the owner that forgot
//! to stop it.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The side that stops: [`Trigger::trigger`], or dropping it.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// The side that listens: cheap to clone, one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::new()
    }
}

impl Trigger {
    pub fn new() -> Trigger {
        Trigger {
            tx: watch::channel(false).0,
        }
    }

    /// A listener of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }

    /// Fires: every [`Shutdown`] of this trigger completes its `recv`.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A trigger and one listener of it.
    pub fn channel() -> (Trigger, Shutdown) {
        let trigger = Trigger::new();
        let shutdown = trigger.subscribe();
        (trigger, shutdown)
    }

    /// A shutdown that fires when `stop` completes (a signal, a timer, a
    /// test's oneshot). `stop` runs on its own task, so this needs a runtime.
    pub fn on<F>(stop: F) -> Shutdown
    where
        F: Future + Send + 'static,
    {
        let (trigger, shutdown) = Shutdown::channel();
        tokio::spawn(async move {
            stop.await;
            trigger.trigger();
        });
        shutdown
    }

    /// A shutdown that fires on SIGTERM or SIGINT, and logs which.
    ///
    /// # Errors
    /// A signal handler cannot be installed.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(Shutdown::on(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        }))
    }

    /// Whether it has fired.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Completes once it has fired (at once when it already had).
    pub async fn recv(&mut self) {
        // An error means the trigger was dropped, which counts as firing.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// A future that completes when it fires, owning its own listener: for
    /// APIs that take a `'static` future (axum's graceful shutdown, a spawned
    /// task).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut this = self.clone();
        async move { this.recv().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_sees_the_trigger() {
        let (trigger, mut a) = Shutdown::channel();
        let mut b = a.clone();
        assert!(!a.is_shutdown());
        trigger.trigger();
        a.recv().await;
        b.recv().await;
        assert!(a.is_shutdown() && b.is_shutdown());
        // A listener made after the trigger fired completes at once.
        trigger.subscribe().recv().await;
    }

    #[tokio::test]
    async fn dropping_the_trigger_stops_its_listeners() {
        let (trigger, mut shutdown) = Shutdown::channel();
        drop(trigger);
        shutdown.recv().await;
        assert!(shutdown.is_shutdown());
    }

    #[tokio::test]
    async fn a_future_can_be_the_trigger() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut shutdown = Shutdown::on(async move {
            let _ = rx.await;
        });
        assert!(!shutdown.is_shutdown());
        tx.send(()).unwrap();
        shutdown.recv().await;
    }
}
