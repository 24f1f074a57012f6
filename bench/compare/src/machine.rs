//! The machine a run was measured on, for the report's header and the
//! chart's caption: CPU model, the instruction-set extensions that change
//! the hot path's cost (SHA extensions for the cache key's SHA-256, AVX2),
//! CPU counts and the kernel.
//!
//! Read from /proc/cpuinfo where it exists (x86 `flags`, Arm `Features`);
//! without it the CPU features come from the compiler's runtime detection
//! (CPUID on x86) and the rest says "unknown", never an error.

use std::collections::HashSet;

/// What is known about the machine; every field has a printable fallback.
#[derive(Debug, Clone)]
pub struct Machine {
    /// "Intel(R) Xeon(R) Processor", "AMD EPYC 7B13", an Arm implementer/part, or "unknown".
    pub model: String,
    /// Vendor, family, model and stepping (x86): VMs often report a generic
    /// model name, these still tell CPU generations apart.
    pub id: Option<String>,
    /// `std::env::consts::ARCH` of this build.
    pub arch: &'static str,
    /// SHA-256 instructions: `sha_ni` on x86, `sha2` on Arm; None: unknown.
    pub sha: Option<bool>,
    /// AVX2 (x86 only; None elsewhere or unknown).
    pub avx2: Option<bool>,
    /// The CPU flags came from /proc/cpuinfo (else runtime detection).
    pub flags_from_proc: bool,
    /// Runs under a hypervisor (x86 `hypervisor` flag).
    pub virtualised: Option<bool>,
    /// `nproc`: CPUs this process may run on.
    pub nproc: String,
    /// Logical CPUs listed in /proc/cpuinfo.
    pub logical: Option<usize>,
    /// Distinct (physical id, core id) pairs in /proc/cpuinfo.
    pub physical_cores: Option<usize>,
    /// `uname -srm`, or /proc/sys/kernel/osrelease, or the OS name.
    pub kernel: String,
}

impl Machine {
    /// Reads this machine. `nproc` is passed in because the harness records
    /// it before it pins itself to fewer CPUs.
    pub fn detect(nproc: &str) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
        let mut m = match cpuinfo.as_deref() {
            Some(text) => Machine::from_cpuinfo(text),
            None => Machine::unknown(),
        };
        if m.sha.is_none() || (m.avx2.is_none() && is_x86()) {
            let (sha, avx2) = runtime_features();
            m.sha = m.sha.or(sha);
            m.avx2 = m.avx2.or(avx2);
            m.flags_from_proc = false;
        }
        m.nproc = if nproc.is_empty() {
            "unknown".into()
        } else {
            nproc.into()
        };
        m.kernel = kernel();
        m
    }

    fn unknown() -> Machine {
        Machine {
            model: "unknown CPU".into(),
            id: None,
            arch: std::env::consts::ARCH,
            sha: None,
            avx2: None,
            flags_from_proc: false,
            virtualised: None,
            nproc: String::new(),
            logical: None,
            physical_cores: None,
            kernel: String::new(),
        }
    }

    /// Parses /proc/cpuinfo as x86 and Arm kernels write it (fields are
    /// `key<TAB>: value`, one block per logical CPU).
    pub fn from_cpuinfo(text: &str) -> Machine {
        let mut m = Machine::unknown();
        let field = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
        };
        let logical = text
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        m.logical = (logical > 0).then_some(logical);
        let mut cores = HashSet::new();
        let (mut phys, mut core) = (None, None);
        for l in text.lines() {
            match l.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("physical id", v)) => phys = Some(v.to_owned()),
                Some(("core id", v)) => core = Some(v.to_owned()),
                _ => {}
            }
            if l.trim().is_empty() {
                if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                    cores.insert((p, c));
                }
            }
        }
        if let (Some(p), Some(c)) = (phys, core) {
            cores.insert((p, c));
        }
        m.physical_cores = (!cores.is_empty()).then_some(cores.len());

        let arm_model = || {
            let implementer = field("CPU implementer")?;
            let part = field("CPU part").unwrap_or_default();
            Some(format!("{} part {part}", arm_implementer(&implementer)))
        };
        if let Some(model) = field("model name")
            .or_else(|| field("Hardware"))
            .or_else(arm_model)
            .or_else(|| field("cpu model"))
            .or_else(|| field("uarch"))
            .filter(|s| !s.is_empty())
        {
            m.model = model;
        }
        if let Some(vendor) = field("vendor_id") {
            let part = |k: &str| field(k).unwrap_or_else(|| "?".into());
            m.id = Some(format!(
                "{vendor} family {} model {} stepping {}",
                part("cpu family"),
                part("model"),
                part("stepping")
            ));
        }

        if let Some(flags) = field("flags") {
            // x86.
            let set: HashSet<&str> = flags.split_whitespace().collect();
            m.sha = Some(set.contains("sha_ni"));
            m.avx2 = Some(set.contains("avx2"));
            m.virtualised = Some(set.contains("hypervisor"));
            m.flags_from_proc = true;
        } else if let Some(features) = field("Features") {
            // Arm: `sha2` is the SHA-256 instructions.
            m.sha = Some(features.split_whitespace().any(|f| f == "sha2"));
            m.flags_from_proc = true;
        }
        m
    }

    /// "yes" / "no" / "unknown".
    pub fn yes_no(v: Option<bool>) -> &'static str {
        match v {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        }
    }

    /// The SHA line: which extension was looked for, and the answer.
    pub fn sha_text(&self) -> String {
        let name = if is_x86() {
            "SHA extensions (`sha_ni`)"
        } else {
            "SHA-256 instructions (`sha2`)"
        };
        format!("{name}: {}", Machine::yes_no(self.sha))
    }

    pub fn avx2_text(&self) -> String {
        if is_x86() {
            format!("AVX2: {}", Machine::yes_no(self.avx2))
        } else {
            format!("AVX2: n/a ({})", self.arch)
        }
    }

    /// "`nproc` = 2, 2 logical CPUs, 2 physical cores".
    pub fn cpus_text(&self) -> String {
        let mut s = format!("`nproc` = {}", self.nproc);
        if let Some(n) = self.logical {
            s.push_str(&format!(", {n} logical CPUs"));
        }
        if let Some(n) = self.physical_cores {
            s.push_str(&format!(", {n} physical cores"));
        }
        s
    }

    /// One line for the chart: "Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 167), SHA-NI yes, AVX2 yes, nproc 2".
    pub fn short(&self) -> String {
        let mut s = self.model.clone();
        if let Some(id) = &self.id {
            s.push_str(&format!(" ({id})"));
        }
        let sha = if is_x86() { "SHA-NI" } else { "SHA2" };
        s.push_str(&format!(", {sha} {}", Machine::yes_no(self.sha)));
        if is_x86() {
            s.push_str(&format!(", AVX2 {}", Machine::yes_no(self.avx2)));
        }
        s.push_str(&format!(", nproc {}, {}", self.nproc, self.kernel));
        s
    }
}

fn is_x86() -> bool {
    cfg!(any(target_arch = "x86_64", target_arch = "x86"))
}

/// (SHA-256 instructions, AVX2) from the std runtime detection, where the
/// target has one.
fn runtime_features() -> (Option<bool>, Option<bool>) {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        (
            Some(std::arch::is_x86_feature_detected!("sha")),
            Some(std::arch::is_x86_feature_detected!("avx2")),
        )
    }
    #[cfg(target_arch = "aarch64")]
    {
        (Some(std::arch::is_aarch64_feature_detected!("sha2")), None)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        (None, None)
    }
}

/// The Arm implementer codes seen in cloud machines.
fn arm_implementer(code: &str) -> String {
    match code {
        "0x41" => "Arm".into(),
        "0x61" => "Apple".into(),
        "0xc0" => "Ampere".into(),
        "0x48" => "HiSilicon".into(),
        "0x51" => "Qualcomm".into(),
        "0x4e" => "NVIDIA".into(),
        other => format!("implementer {other}"),
    }
}

/// `uname -srm`, else /proc/sys/kernel/osrelease, else the OS this was built for.
fn kernel() -> String {
    let uname = crate::report::sh("uname", &["-srm"]);
    if !uname.is_empty() {
        return uname;
    }
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(r) if !r.trim().is_empty() => format!("{} {}", std::env::consts::OS, r.trim()),
        _ => format!("{} (kernel version unknown)", std::env::consts::OS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XEON: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu sse2 avx2 sha_ni hypervisor\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nphysical id\t: 0\ncore id\t\t: 1\nflags\t\t: fpu sse2 avx2 sha_ni hypervisor\n\n";
    const EPYC_NO_SHA: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\nstepping\t: 0\nflags\t\t: fpu sse2 avx2\n";
    const GRAVITON: &str = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nFeatures\t: fp asimd sha2\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";

    #[test]
    fn x86_flags_model_and_cores() {
        let m = Machine::from_cpuinfo(XEON);
        assert_eq!(m.model, "Intel(R) Xeon(R) Processor");
        assert_eq!(
            m.id.as_deref(),
            Some("GenuineIntel family 6 model 167 stepping 1")
        );
        assert_eq!(
            (m.sha, m.avx2, m.virtualised),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!((m.logical, m.physical_cores), (Some(2), Some(2)));
        let m = Machine::from_cpuinfo(EPYC_NO_SHA);
        assert_eq!(
            (m.sha, m.avx2, m.virtualised),
            (Some(false), Some(true), Some(false))
        );
        assert_eq!((m.logical, m.physical_cores), (Some(1), None));
    }

    #[test]
    fn arm_features_and_model() {
        let m = Machine::from_cpuinfo(GRAVITON);
        assert_eq!(m.model, "Arm part 0xd0c");
        assert_eq!((m.sha, m.avx2, m.id), (Some(true), None, None));
        assert_eq!(m.logical, Some(2));
    }

    #[test]
    fn nothing_known_is_not_an_error() {
        let m = Machine::from_cpuinfo("");
        assert_eq!((m.model.as_str(), m.sha, m.logical), ("unknown CPU", None, None));
        // detect() never fails, with or without /proc.
        let m = Machine::detect("");
        assert_eq!(m.nproc, "unknown");
        assert!(!m.kernel.is_empty());
    }
}
