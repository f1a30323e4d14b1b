//! The `memory_limiter` processor, built as switchyard's admission budget (DESIGN.md): listing it
//! in a pipeline gives the receivers of that pipeline a budget of bytes in flight, claimed when
//! data is admitted (HTTP bodies are reserved by their Content-Length before they are read) and
//! released when every exporter is done with it. Above the soft limit (`limit` − `spike_limit`)
//! receivers refuse with their protocol's retryable answer, so clients retry and nothing
//! acknowledged is dropped. Every `check_interval` the process's resident memory is read too:
//! while it is over the soft limit, nothing at all is admitted. In the pipeline itself the
//! processor passes data on unchanged.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, Capacity, Processor};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    #[serde(deserialize_with = "deserialize_duration")]
    pub check_interval: Duration,
    pub limit_mib: u64,
    pub spike_limit_mib: u64,
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: Duration::ZERO,
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// The memory this process may use: the cgroup's limit where there is one, else the machine's.
fn total_memory() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    if let Some(v) = read("/sys/fs/cgroup/memory.max").and_then(|s| s.trim().parse::<u64>().ok()) {
        return Some(v);
    }
    if let Some(v) = read("/sys/fs/cgroup/memory/memory.limit_in_bytes").and_then(|s| s.trim().parse::<u64>().ok())
        && v < (1 << 60)
    {
        return Some(v);
    }
    let meminfo = read("/proc/meminfo")?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The memory budget of pipelines without a `memory_limiter`: half the cgroup's limit where
/// there is one, else a quarter of the machine's memory; between 64 MiB and 512 MiB either way.
/// One request may take half of it (`pipeline::per_request_bound`), so with 512 MiB a request
/// that would decode to more than 256 MiB is refused as too large.
pub fn default_budget() -> usize {
    let share = match cgroup_limit() {
        Some(limit) => limit / 2,
        None => total_memory().unwrap_or(1 << 30) / 4,
    };
    share.clamp(64 * MIB, 512 * MIB) as usize
}

/// The cgroup's memory limit, if the process has one.
fn cgroup_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    if let Some(v) = read("/sys/fs/cgroup/memory.max").and_then(|s| s.trim().parse::<u64>().ok()) {
        return Some(v);
    }
    read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|v| *v < (1 << 60))
}

impl MemoryLimiterConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.check_interval.is_zero() {
            return Err(("check_interval".into(), "is required and must be greater than 0, such as 1s".into()));
        }
        match (self.limit_mib, self.limit_percentage) {
            (0, 0) => return Err(("limit_mib".into(), "set limit_mib or limit_percentage".into())),
            (m, p) if m > 0 && p > 0 => {
                return Err(("limit_percentage".into(), "set limit_mib or limit_percentage, not both".into()));
            }
            (_, p) if p > 100 => return Err(("limit_percentage".into(), "must be at most 100".into())),
            _ => {}
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(("spike_limit_mib".into(), format!("must be below limit_mib ({})", self.limit_mib)));
        }
        if self.limit_percentage > 0 && self.spike_limit_percentage >= self.limit_percentage {
            return Err(("spike_limit_percentage".into(), "must be below limit_percentage".into()));
        }
        Ok(())
    }

    /// The hard and soft limits in bytes.
    pub fn limits(&self) -> Result<(u64, u64), String> {
        let (hard, spike) = if self.limit_mib > 0 {
            let spike = if self.spike_limit_mib > 0 { self.spike_limit_mib * MIB } else { self.limit_mib * MIB / 5 };
            (self.limit_mib * MIB, spike)
        } else {
            let total =
                total_memory().ok_or("cannot read the memory limit (cgroup or /proc/meminfo) for limit_percentage")?;
            let spike =
                if self.spike_limit_percentage > 0 { self.spike_limit_percentage } else { self.limit_percentage / 5 };
            (total / 100 * self.limit_percentage, total / 100 * spike)
        };
        Ok((hard, hard.saturating_sub(spike)))
    }
}

/// The budget of one `memory_limiter`, and the task that watches resident memory.
pub struct MemoryBudget {
    pub capacity: Arc<Capacity>,
}

impl MemoryBudget {
    /// Sizes the budget as the soft limit less what the process already uses, and starts the
    /// resident-memory check (until `stop`).
    pub fn start(name: String, cfg: &MemoryLimiterConfig, stop: CancellationToken) -> Result<MemoryBudget, String> {
        let (hard, soft) = cfg.limits()?;
        let rss = crate::telemetry::metrics::read_proc_self().map(|(_, r)| r).unwrap_or(0);
        let budget = soft.saturating_sub(rss).max(MIB);
        tracing::info!(
            processor = %name,
            limit_mib = hard / MIB,
            soft_limit_mib = soft / MIB,
            budget_mib = budget / MIB,
            "memory limiter: data in flight is kept under the soft limit"
        );
        let capacity = Capacity::memory_budget(name.clone(), budget as usize);
        let watched = capacity.clone();
        let interval = cfg.check_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Some((_, rss)) = crate::telemetry::metrics::read_proc_self() else { continue };
                let over = rss > soft;
                if over != watched.is_paused() {
                    if over {
                        tracing::warn!(processor = %name, rss_mib = rss / MIB, soft_limit_mib = soft / MIB, "memory over the soft limit: refusing data until it is back under");
                    } else {
                        tracing::info!(processor = %name, rss_mib = rss / MIB, "memory back under the soft limit: taking data again");
                    }
                    watched.set_paused(over);
                }
            }
        });
        Ok(MemoryBudget { capacity })
    }
}

/// In the pipeline the limiter has nothing to do: admission happened at the receivers.
pub struct MemoryLimiterProcessor;

impl Processor for MemoryLimiterProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        out.push(batch);
    }
}

/// The `memory_limiter` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<MemoryLimiterConfig>(
    "memory_limiter",
    crate::registry::ALL_SIGNALS,
    "keeps data in flight under a memory limit; receivers refuse (retryably) above it",
);

impl crate::pipeline::component::ProcessorSettings for MemoryLimiterConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        MemoryLimiterConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        _ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(MemoryLimiterProcessor))
    }

    fn memory_budget(
        &self,
        ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Option<Result<std::sync::Arc<crate::pipeline::Capacity>, String>> {
        Some(MemoryBudget::start(ctx.name.clone(), self, ctx.stop.clone()).map(|b| b.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_checks() {
        let cfg = MemoryLimiterConfig { check_interval: Duration::from_secs(1), limit_mib: 100, ..Default::default() };
        cfg.validate().unwrap();
        assert_eq!(cfg.limits().unwrap(), (100 * MIB, 80 * MIB), "the spike defaults to 20%");
        let bad = |c: MemoryLimiterConfig| c.validate().unwrap_err().0;
        assert_eq!(bad(MemoryLimiterConfig { limit_mib: 100, ..Default::default() }), "check_interval");
        assert_eq!(
            bad(MemoryLimiterConfig { check_interval: Duration::from_secs(1), ..Default::default() }),
            "limit_mib"
        );
        assert_eq!(
            bad(MemoryLimiterConfig {
                check_interval: Duration::from_secs(1),
                limit_mib: 10,
                spike_limit_mib: 10,
                ..Default::default()
            }),
            "spike_limit_mib"
        );
        let pct =
            MemoryLimiterConfig { check_interval: Duration::from_secs(1), limit_percentage: 50, ..Default::default() };
        pct.validate().unwrap();
        let (hard, soft) = pct.limits().unwrap();
        assert!(hard > 0 && soft < hard);
    }
}
