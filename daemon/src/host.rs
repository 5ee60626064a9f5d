//! The host name that records carry when the config names none.

/// This machine's host name, as the kernel has it; empty when it cannot be
/// read (the config then has to name the host).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
