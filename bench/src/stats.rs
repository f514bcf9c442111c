//! Percentiles and the server-process figures read from /proc.

use anyhow::anyhow;
use std::collections::HashMap;
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

/// How the tail is spread over messages: each message's p99 over the subscribers that saw it (a notice folded into
/// a later one is not seen), then "median message X, slowest 3: id=A Y ms, ..." in milliseconds. A p99 over every latency of a run cannot tell one slow message from
/// a slow subscriber on every message; this can.
pub fn per_message(by_id: &mut HashMap<u64, Vec<Duration>>) -> String {
    let mut p99s: Vec<(u64, Duration)> = by_id
        .iter_mut()
        .map(|(id, latencies)| {
            latencies.sort_unstable();
            (*id, percentile(latencies, 0.99))
        })
        .collect();
    if p99s.is_empty() {
        return "no messages".into();
    }
    p99s.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut sorted: Vec<Duration> = p99s.iter().map(|(_, p99)| *p99).collect();
    sorted.reverse();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let slowest: Vec<String> = p99s.iter().take(3).map(|(id, p99)| format!("id={id} {:.2} ms", ms(*p99))).collect();
    format!("median message {:.2}, slowest {}: {}", ms(percentile(&sorted, 0.50)), slowest.len(), slowest.join(", "))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 subscribers' latencies of one message: 197 fast ones, two at `slow` ms and one outlier.
    fn latencies(slow: u64) -> Vec<Duration> {
        let mut latencies = vec![Duration::from_millis(1); 197];
        latencies.extend([slow, slow, 1_000].map(Duration::from_millis));
        latencies
    }

    #[test]
    fn per_message_names_the_median_message_and_the_slowest_three() {
        // The p99 of 200 latencies is the 198th: past it the one outlier of each message, not its two slow ones.
        let mut by_id: HashMap<u64, Vec<Duration>> =
            [(1, 5), (2, 40), (3, 7), (4, 90), (5, 6)].into_iter().map(|(id, slow)| (id, latencies(slow))).collect();
        assert_eq!(
            per_message(&mut by_id),
            "median message 7.00, slowest 3: id=4 90.00 ms, id=2 40.00 ms, id=3 7.00 ms"
        );
        let mut one = HashMap::from([(9, vec![Duration::from_millis(3)])]);
        assert_eq!(per_message(&mut one), "median message 3.00, slowest 1: id=9 3.00 ms");
        assert_eq!(per_message(&mut HashMap::new()), "no messages");
    }
}
