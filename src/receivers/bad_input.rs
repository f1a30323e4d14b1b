//! Input a receiver could not use: counted in `switchyard_receiver_invalid_requests_total` by
//! receiver, transport and reason, and logged at most once a second so that a flood of garbage
//! does not flood the log.

use crate::pipeline::Intake;
use crate::telemetry::log_limit::LogLimit;
use std::sync::Arc;

pub struct BadInput {
    intake: Arc<Intake>,
    transport: &'static str,
    limit: LogLimit,
}

impl BadInput {
    pub fn new(intake: Arc<Intake>, transport: &'static str) -> BadInput {
        BadInput { intake, transport, limit: LogLimit::default() }
    }

    /// Counts one piece of bad input under `reason` and logs `message` if the limit allows.
    pub fn report(&self, reason: &str, message: &str) {
        self.intake.invalid_request(self.transport, reason);
        self.warn(reason, message);
    }

    /// Logs `message` if the limit allows, without counting (for what is counted elsewhere,
    /// such as spans refused by a full queue).
    pub fn warn(&self, reason: &str, message: &str) {
        if let Some(held_back) = self.limit.allow() {
            tracing::warn!(
                receiver = self.intake.receiver(),
                transport = self.transport,
                reason,
                suppressed_since_last_warning = held_back,
                "{message}"
            );
        }
    }
}
