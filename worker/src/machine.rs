//! This machine's CPUs, memory and load, from /proc.

pub fn cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
}

pub fn memory_mb() -> u64 {
    meminfo("MemTotal:").map_or(1024, |kb| kb / 1024)
}

pub fn free_memory_bytes() -> Option<u64> {
    meminfo("MemAvailable:").map(|kb| kb * 1024)
}

pub fn load() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
