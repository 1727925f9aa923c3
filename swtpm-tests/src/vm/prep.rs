//! The prepared host side of the VM tests: runs `scripts/vm-prep.sh` (Debian packages and the
//! unpacked Debian kernel, cached) once per process and locates the kernel image, its modules,
//! and OVMF's firmware images.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use vouch_attest::errors::chain;

/// OVMF firmware code (4 MiB, no Secure Boot keys enrolled), from Debian's `ovmf`.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The pristine OVMF variable store each machine gets a copy of.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF code built with Secure Boot (and SMM) support.
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// OVMF variables with Microsoft's KEK and db certificates enrolled (Secure Boot on).
pub const OVMF_VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// What went wrong preparing the host.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    /// The script could not be started.
    #[error("cannot run {script}")]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The script failed.
    #[error("{script} failed ({status}): {stderr}")]
    Failed {
        script: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// The script did not print `kernel_dir=`.
    #[error("{script} printed no kernel_dir= line")]
    NoKernelDir { script: PathBuf },
    /// The unpacked kernel package lacks an expected file.
    #[error("{dir}: no {what} in the unpacked kernel package")]
    Incomplete { dir: PathBuf, what: &'static str },
    /// An earlier attempt in this process failed.
    #[error("host preparation failed earlier in this process: {0}")]
    Earlier(String),
}

/// The unpacked kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel image (EFI stub bzImage).
    pub image: PathBuf,
    /// `lib/modules/<version>`.
    pub modules: PathBuf,
    /// The kernel release, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// Debian's signed shim and grub, unpacked (`usr/lib/shim`, `usr/lib/grub`).
    pub secureboot: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm-prep.sh")
}

fn run() -> Result<Kernel, PrepError> {
    let script = script();
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| PrepError::Spawn {
            script: script.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(PrepError::Failed {
            script,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("kernel_dir="))
        .map(PathBuf::from)
        .ok_or(PrepError::NoKernelDir { script })?;
    let incomplete = |what| PrepError::Incomplete {
        dir: dir.clone(),
        what,
    };
    let image = std::fs::read_dir(dir.join("boot"))
        .map_err(|_| incomplete("boot/ directory"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| incomplete("boot/vmlinuz-*"))?;
    let release = image
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .ok_or_else(|| incomplete("kernel release in the image name"))?
        .to_string();
    let modules = dir.join("lib/modules").join(&release);
    if !modules.join("modules.builtin").exists() {
        return Err(incomplete("lib/modules/<release>/modules.builtin"));
    }
    let secureboot = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("secureboot_dir="))
        .map(PathBuf::from)
        .ok_or_else(|| incomplete("secureboot_dir= line from the prep script"))?;
    Ok(Kernel {
        image,
        modules,
        release,
        secureboot,
    })
}

/// Runs the prep script once per process and returns the kernel it prepared.
pub fn prepare() -> Result<Kernel, PrepError> {
    static ONCE: OnceLock<Result<Kernel, String>> = OnceLock::new();
    ONCE.get_or_init(|| run().map_err(|e| chain(&e)))
        .clone()
        .map_err(PrepError::Earlier)
}

/// True when `VOUCH_SKIP_VM=1` asks to skip the VM tests; says so on stderr (uncaptured).
pub fn skip(test: &str) -> bool {
    let skip = std::env::var("VOUCH_SKIP_VM").is_ok_and(|v| v == "1");
    if skip {
        // Straight to file descriptor 2: the test harness captures `eprintln!` of passing tests,
        // and a skip must be visible.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: VOUCH_SKIP_VM=1 (the VM tests did not run)"
        );
    }
    skip
}
