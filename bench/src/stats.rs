//! Percentiles and the server-process figures read from /proc.

use anyhow::anyhow;
use std::time::Duration;

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// "p50=… p99=… max=…" in milliseconds; sorts in place.
pub fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50={:.2} p99={:.2} max={:.2}",
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    )
}

/// A process to watch: its resident memory and CPU time, from /proc (Linux).
#[derive(Clone, Copy)]
pub struct Process(pub u32);

impl Process {
    /// Resident set size in bytes.
    pub fn rss(self) -> anyhow::Result<u64> {
        crate::process::rss_bytes(self.0).map_err(anyhow::Error::msg)
    }

    /// User plus system CPU seconds so far.
    pub fn cpu_seconds(self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .map_err(|e| anyhow!("cannot read /proc/{}/stat: {e}", self.0))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
        let rest = stat.rsplit_once(") ").map(|(_, rest)| rest).ok_or_else(|| anyhow!("malformed /proc stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks =
            |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| anyhow!("malformed /proc stat"));
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok((ticks(11)? + ticks(12)?) as f64 / per_second)
    }
}
