//! Reloading on SIGHUP.
//!
//! The shipper and pg-watch restart their work with the new configuration
//! ([`restart_on_hangup`]: the running instance drains and checkpoints
//! first, so nothing is lost or sent twice); the processor applies its new
//! tokens and limits in place and only needs the signal ([`Hangups`]). Either
//! way a bad new file is refused with one log line and the running
//! configuration stays.

use std::fmt::Display;
use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::Shutdown;

/// The SIGHUPs this process receives.
#[derive(Debug)]
pub struct Hangups(Signal);

impl Hangups {
    /// Installs the handler: from now on SIGHUP no longer ends the process.
    ///
    /// # Errors
    /// The handler cannot be installed.
    pub fn new() -> std::io::Result<Hangups> {
        signal(SignalKind::hangup()).map(Hangups)
    }

    /// Completes at the next SIGHUP.
    pub async fn recv(&mut self) {
        self.0.recv().await;
    }
}

/// Runs `run(config, stop)` until `shutdown` fires or the run ends on its
/// own. At each SIGHUP, `load` reads the configuration again: when it is
/// good the running instance is stopped and awaited, then started again
/// with the new one; when it is bad the error is logged and nothing changes.
///
/// # Errors
/// What an instance returned when it ended with an error.
pub async fn restart_on_hangup<C, L, LE, R, F, E>(
    mut config: C,
    mut hangups: Hangups,
    mut load: L,
    mut run: R,
    mut shutdown: Shutdown,
) -> Result<(), E>
where
    L: FnMut() -> Result<C, LE>,
    LE: Display,
    R: FnMut(C, Shutdown) -> F,
    F: Future<Output = Result<(), E>>,
{
    loop {
        let (stop, stopped) = Shutdown::channel();
        let instance = run(config, stopped);
        tokio::pin!(instance);
        config = loop {
            tokio::select! {
                result = &mut instance => return result,
                () = shutdown.recv() => {
                    stop.trigger();
                    return instance.await;
                }
                () = hangups.recv() => match load() {
                    Ok(new) => {
                        tracing::info!("SIGHUP: configuration reloaded, restarting");
                        stop.trigger();
                        instance.await?;
                        break new;
                    }
                    Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
                },
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_good_reload_restarts_and_a_bad_one_keeps_the_running_config() {
        let started: Arc<Mutex<Vec<u32>>> = Arc::default();
        let loads = Arc::new(Mutex::new(vec![Ok(2), Err("line 1: bad value")]));
        let (stop_all, shutdown) = Shutdown::channel();
        let log = started.clone();
        let daemon = tokio::spawn(restart_on_hangup(
            1,
            Hangups::new().unwrap(),
            move || loads.lock().unwrap().remove(0),
            move |config: u32, mut stop: Shutdown| {
                log.lock().unwrap().push(config);
                async move {
                    stop.recv().await;
                    Ok::<(), std::io::Error>(())
                }
            },
            shutdown,
        ));
        let hangup = || {
            // SAFETY: kill with our own pid and a valid signal number; the
            // handler installed above keeps SIGHUP from ending the process.
            unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
        };
        let wait_for = |n: usize| {
            let started = started.clone();
            async move {
                for _ in 0..200 {
                    if started.lock().unwrap().len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        wait_for(1).await;
        hangup();
        wait_for(2).await;
        hangup();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            *started.lock().unwrap(),
            vec![1, 2],
            "the bad config started nothing"
        );
        stop_all.trigger();
        daemon.await.unwrap().unwrap();
    }
}
