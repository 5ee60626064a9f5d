//! [`HostSampler`]: one `host_metrics` record from `/proc`, with rates
//! computed against the previous sample.

use std::io;
use std::time::Instant;

use bitville_schemas::records::{Cpu, Disk, Memory, Net, Swap};
use bitville_schemas::{Envelope, HostMetricsRecord, Kind};

/// Bytes per page in /proc/vmstat's pswpin and pswpout; 4 KiB on every
/// architecture the shipper runs on.
const PAGE_BYTES: u64 = 4096;
/// /proc/diskstats counts 512-byte sectors whatever the device's block size.
const SECTOR_BYTES: u64 = 512;

/// Cumulative counters read at one instant; rates are differences of two.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// user, system, iowait, steal, idle, total jiffies.
    cpu: [u64; 6],
    swap_in_pages: u64,
    swap_out_pages: u64,
    disk_read_sectors: u64,
    disk_write_sectors: u64,
    net_rx: u64,
    net_tx: u64,
}

/// Samples the host's load, CPU, memory, swap, disk and network.
///
/// It keeps the previous sample's counters so that each record carries the
/// CPU percentages and the byte counts of the interval since the previous
/// one; the first record covers the time since boot for CPU and leaves the
/// byte counts out, since they would not be per interval.
#[derive(Debug)]
pub struct HostSampler {
    source: &'static str,
    previous: Option<(Instant, Counters)>,
}

impl HostSampler {
    /// A sampler whose records say `source` (`"shipper"` or `"pg-watch"`).
    pub fn new(source: &'static str) -> HostSampler {
        HostSampler {
            source,
            previous: None,
        }
    }

    /// One complete `host_metrics` record.
    ///
    /// # Errors
    /// `/proc/loadavg` or `/proc/stat` cannot be read; the other files are
    /// optional and their fields are left out when missing.
    pub fn sample(&mut self, project: &str, host: &str) -> io::Result<serde_json::Value> {
        let record = self.sample_record(project, host)?;
        let mut value = serde_json::to_value(record).map_err(io::Error::other)?;
        strip_nulls(&mut value);
        Ok(value)
    }

    /// The typed record; its nested optional fields serialize as null, which
    /// the schema refuses, so callers get [`HostSampler::sample`] instead.
    fn sample_record(&mut self, project: &str, host: &str) -> io::Result<HostMetricsRecord> {
        let now = Instant::now();
        let loadavg = std::fs::read_to_string("/proc/loadavg")?;
        let stat = std::fs::read_to_string("/proc/stat")?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
        let diskstats = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
        let netdev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();

        let load: Vec<f64> = loadavg
            .split_whitespace()
            .take(3)
            .filter_map(|s| s.parse().ok())
            .collect();
        let [load1, load5, load15] = load[..] else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/loadavg: unexpected content {loadavg:?}"),
            ));
        };
        let mut counters = Counters::default();
        let (mut procs_running, mut procs_blocked, mut ncpu) = (None, None, 0u32);
        for line in stat.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("cpu") => {
                    let v: Vec<u64> = f.filter_map(|s| s.parse().ok()).collect();
                    let get = |i: usize| v.get(i).copied().unwrap_or(0);
                    // user nice system idle iowait irq softirq steal (guest is inside user).
                    let (user, system, idle, iowait, steal) = (
                        get(0) + get(1),
                        get(2) + get(5) + get(6),
                        get(3),
                        get(4),
                        get(7),
                    );
                    counters.cpu = [
                        user,
                        system,
                        iowait,
                        steal,
                        idle,
                        user + system + idle + iowait + steal,
                    ];
                }
                Some(name) if name.starts_with("cpu") => ncpu += 1,
                Some("procs_running") => procs_running = f.next().and_then(|s| s.parse().ok()),
                Some("procs_blocked") => procs_blocked = f.next().and_then(|s| s.parse().ok()),
                _ => {}
            }
        }
        let mem = |key: &str| -> Option<u64> {
            meminfo.lines().find_map(|l| {
                let rest = l.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
                    .map(|kib| kib * 1024)
            })
        };
        let vm = |key: &str| -> u64 {
            vmstat
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0)
        };
        counters.swap_in_pages = vm("pswpin");
        counters.swap_out_pages = vm("pswpout");
        for line in diskstats.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 10 && is_whole_disk(f[2]) {
                counters.disk_read_sectors += f[5].parse::<u64>().unwrap_or(0);
                counters.disk_write_sectors += f[9].parse::<u64>().unwrap_or(0);
            }
        }
        for line in netdev.lines().skip(2) {
            let Some((iface, rest)) = line.split_once(':') else {
                continue;
            };
            if iface.trim() == "lo" {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            if f.len() >= 9 {
                counters.net_rx += f[0];
                counters.net_tx += f[8];
            }
        }

        let (interval_s, base) = match self.previous {
            Some((at, prev)) => (Some(now.duration_since(at).as_secs_f64()), prev),
            None => (None, Counters::default()),
        };
        let total = counters.cpu[5].saturating_sub(base.cpu[5]).max(1) as f64;
        let pct = |i: usize| {
            Some(round2(
                100.0 * counters.cpu[i].saturating_sub(base.cpu[i]) as f64 / total,
            ))
        };
        let cpu = Cpu {
            user_pct: pct(0),
            system_pct: pct(1),
            iowait_pct: pct(2),
            steal_pct: pct(3),
            idle_pct: pct(4),
        };
        let delta = |now: u64, before: u64, unit: u64| {
            interval_s.map(|_| now.saturating_sub(before) * unit)
        };
        let (mem_total, mem_avail) = (mem("MemTotal"), mem("MemAvailable"));
        let (swap_total, swap_free) = (mem("SwapTotal"), mem("SwapFree"));
        let record = HostMetricsRecord {
            envelope: Envelope::new(Kind::HostMetrics, project, host),
            source: self.source.to_owned(),
            interval_s: interval_s.map(round2),
            ncpu: Some(ncpu.max(1)),
            load1,
            load5,
            load15,
            cpu: Some(cpu),
            memory: mem_total.map(|total| Memory {
                total_bytes: Some(total),
                available_bytes: mem_avail,
                used_bytes: mem_avail.map(|a| total.saturating_sub(a)),
            }),
            swap: swap_total.map(|total| Swap {
                total_bytes: Some(total),
                used_bytes: swap_free.map(|f| total.saturating_sub(f)),
                in_bytes: delta(counters.swap_in_pages, base.swap_in_pages, PAGE_BYTES),
                out_bytes: delta(counters.swap_out_pages, base.swap_out_pages, PAGE_BYTES),
            }),
            disk: interval_s.map(|_| Disk {
                read_bytes: delta(
                    counters.disk_read_sectors,
                    base.disk_read_sectors,
                    SECTOR_BYTES,
                ),
                write_bytes: delta(
                    counters.disk_write_sectors,
                    base.disk_write_sectors,
                    SECTOR_BYTES,
                ),
            }),
            net: interval_s.map(|_| Net {
                rx_bytes: delta(counters.net_rx, base.net_rx, 1),
                tx_bytes: delta(counters.net_tx, base.net_tx, 1),
            }),
            procs_running,
            procs_blocked,
        };
        self.previous = Some((now, counters));
        Ok(record)
    }
}

/// Whole disks only, so a partition's bytes are not counted twice; loop and
/// RAM devices are not disks.
fn is_whole_disk(name: &str) -> bool {
    if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
        return false;
    }
    std::path::Path::new("/sys/block").join(name).exists()
}

/// Removes null members, the fields a sample could not measure.
fn strip_nulls(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_validate_against_the_host_metrics_schema() {
        let mut sampler = HostSampler::new("shipper");
        let first = sampler.sample("shop", "web-1").unwrap();
        assert_eq!(
            bitville_schemas::validate(&first).unwrap(),
            Kind::HostMetrics,
            "{first}"
        );
        assert!(
            first.get("disk").is_none(),
            "the first sample has no interval: {first}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = sampler.sample("shop", "web-1").unwrap();
        assert_eq!(
            bitville_schemas::validate(&second).unwrap(),
            Kind::HostMetrics,
            "{second}"
        );
        assert!(second["interval_s"].as_f64().unwrap() > 0.0);
        assert!(
            second["net"]["rx_bytes"].is_u64() && second["disk"]["read_bytes"].is_u64(),
            "{second}"
        );
        assert_eq!(second["source"], "shipper");
        assert_ne!(first["id"], second["id"]);
    }
}
