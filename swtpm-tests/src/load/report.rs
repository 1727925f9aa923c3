//! What a load run achieved, read back from the fleet registry: the verdicts whose challenge was
//! issued inside the measurement window, their latency (`stored_ms - challenged_ms`), how many
//! were untrusted and why; plus the CPU time the generator, the server and the broker used, read
//! from `/proc` (the machine is shared, so the whole machine's busy time is reported too).

use super::stats::Samples;
use std::path::Path;
use vouch_fleet::registry::{Registry, RegistryError};

/// Untrusted verdict reasons kept for the report.
const KEEP_REASONS: usize = 5;

/// Verdicts of the window.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Latency of every verdict in the window.
    pub latency: Samples,
    /// Trusted verdicts.
    pub trusted: u64,
    /// Untrusted verdicts.
    pub untrusted: u64,
    /// The first reasons of untrusted verdicts.
    pub reasons: Vec<String>,
    /// Devices with no verdict in the window.
    pub silent_devices: u64,
}

/// Reads the verdicts of `ids` whose challenge was issued in `[from_ms, to_ms)`; `per_device`
/// bounds how many of the newest verdicts are read per device.
pub fn verdicts(
    state_dir: &Path,
    ids: impl IntoIterator<Item = impl AsRef<str>>,
    from_ms: i64,
    to_ms: i64,
    per_device: u32,
) -> Result<Verdicts, RegistryError> {
    let reg = Registry::open(state_dir)?;
    let mut out = Verdicts::default();
    for id in ids {
        let mut any = false;
        for v in reg.verdicts(id.as_ref(), per_device)? {
            if v.challenged_ms < from_ms || v.challenged_ms >= to_ms {
                continue;
            }
            any = true;
            out.latency.push_ms(v.stored_ms - v.challenged_ms);
            if v.trusted {
                out.trusted += 1;
            } else {
                out.untrusted += 1;
                if out.reasons.len() < KEEP_REASONS {
                    out.reasons
                        .push(format!("{}: {}", v.device_id, v.reasons.join("; ")));
                }
            }
        }
        if !any {
            out.silent_devices += 1;
        }
    }
    Ok(out)
}

/// CPU time (user + system) of a process in clock ticks, from `/proc/<pid>/stat`.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ppid(4) ... utime(14) stime(15), i.e. indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of a process in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Busy and total clock ticks of the whole machine, from `/proc/stat`.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The pid of the running process whose command line contains every one of `needles`.
pub fn find_process(needles: &[&str]) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        if pid == me {
            return None;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        needles.iter().all(|n| cmd.contains(n)).then_some(pid)
    })
}

/// When (UTC), how many CPUs and the 1/5/15-minute load averages: the machine is shared, so
/// every figure is printed next to this.
pub fn machine_line() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{date}, {cpus} CPUs, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        // Burn some CPU so the counters are non-zero, then read them back.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let mine = process_ticks(std::process::id()).expect("own /proc stat");
        let (busy, total) = machine_ticks().expect("/proc/stat");
        assert!(busy <= total && total > 0);
        assert!(mine <= busy);
        assert!(process_ticks(u32::MAX).is_none());
        assert!(rss_mib(std::process::id()).is_some());
        assert!(rss_mib(u32::MAX).is_none());
        assert!(find_process(&["no such process", "at all 1f0e"]).is_none());
    }
}
