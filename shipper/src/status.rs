//! What the shipper says on its status port: `/healthz`, `/readyz` and the
//! engine's metrics, served by [`bitville_daemon::status`].

use std::sync::Arc;

use bitville_daemon::status::{Health, Status};

use crate::metrics::{Metrics, SUBSYSTEM};

/// The shipper's status: its engine's metrics; healthy while it runs.
#[derive(Debug)]
pub struct EngineStatus(pub Arc<Metrics>);

impl Status for EngineStatus {
    fn metrics(&self) -> String {
        self.0.render(SUBSYSTEM)
    }

    fn ready(&self) -> Health {
        let mut health = Health::default();
        if Metrics::get(&self.0.breaker_state) == 1 {
            health.problem("the processor is unreachable (circuit breaker open)");
        }
        health
    }
}
