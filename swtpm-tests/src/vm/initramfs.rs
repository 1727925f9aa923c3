//! Builds the test initramfs (newc cpio, uncompressed): static busybox with its applet links, the
//! kernel modules the guest needs (with their dependencies, built-in ones skipped), `vouch-agent`
//! (debug info stripped), cryptsetup and dmsetup, with every shared library `ldd` names for them
//! plus the dlopen'ed tss2 device TCTI, an `/etc/hosts` naming the broker at the guestfwd address, and `/init` (`init.sh`).
//! Nothing test-specific goes in: the same inputs give the same bytes, so two boots of one test
//! measure the same initrd and differ only where the test changes something on purpose.

use super::cpio::{CpioError, Writer};
use super::kmod::{ModuleError, ModuleTree};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest address qemu's guestfwd forwards to the host's broker.
pub const BROKER_ADDR: &str = "10.0.2.100";

/// Modules the guest loads: networking, the 9p share, entropy, and the disk, dm-crypt, xts and
/// AF_ALG modules cryptsetup uses for volume tests (xts(aes) is built on ecb(aes): both modular).
/// The TPM drivers (tpm_crb, tpm_tis) are built into Debian's kernel; they are added when modular.
pub const MODULES: &[&str] = &[
    "tpm_crb",
    "tpm_tis",
    "virtio_pci",
    "virtio_net",
    "virtio_rng",
    "9pnet_virtio",
    "9p",
    "dm_crypt",
    "ecb",
    "xts",
    "virtio_blk",
    "algif_skcipher",
    "algif_hash",
];

/// Host tools copied in with their libraries (cryptsetup-bin, dmsetup): volume unlock in the guest.
pub const TOOLS: &[&str] = &["/sbin/cryptsetup", "/sbin/dmsetup"];

/// The TCTI module tss2's loader dlopens for `device:` (ldd cannot see it).
const TCTI_DEVICE: &str = "libtss2-tcti-device.so.0";

const INIT: &str = include_str!("init.sh");

/// What went wrong building the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A program (ldd, strip, busybox) could not be run.
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// ldd failed on a file or named a library it could not find.
    #[error("ldd {path}: {detail}")]
    Ldd { path: PathBuf, detail: String },
    /// busybox did not list its applets.
    #[error("busybox --list-full failed: {0}")]
    Applets(String),
    /// A library the agent needs was not found on the host.
    #[error("{0} not found in /usr/lib/x86_64-linux-gnu or /lib/x86_64-linux-gnu (install libtss2-tcti-device0)")]
    NoLibrary(&'static str),
    /// A file to include could not be read.
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Creating the output file failed.
    #[error("creating {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Kernel modules could not be resolved.
    #[error(transparent)]
    Modules(#[from] ModuleError),
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// What was packed (for the test's log and figures).
#[derive(Debug)]
pub struct Packed {
    /// Modules in load order.
    pub modules: Vec<String>,
    /// Shared libraries included (host paths).
    pub libraries: Vec<PathBuf>,
    /// Size of the archive in bytes.
    pub bytes: u64,
}

fn spawn_err(program: &str) -> impl FnOnce(std::io::Error) -> InitramfsError + '_ {
    move |source| InitramfsError::Spawn {
        program: program.to_string(),
        source,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    std::fs::read(path).map_err(|source| InitramfsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The absolute paths `ldd` resolves for `file` (including the dynamic loader).
fn ldd(file: &Path) -> Result<Vec<PathBuf>, InitramfsError> {
    let out = Command::new("ldd")
        .arg(file)
        .output()
        .map_err(spawn_err("ldd"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(InitramfsError::Ldd {
            path: file.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            return Err(InitramfsError::Ldd {
                path: file.to_path_buf(),
                detail: line.to_string(),
            });
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn find_tcti() -> Result<PathBuf, InitramfsError> {
    ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| Path::new(d).join(TCTI_DEVICE))
        .find(|p| p.exists())
        .ok_or(InitramfsError::NoLibrary(TCTI_DEVICE))
}

/// The agent binary without debug sections (a debug build is hundreds of MB otherwise); the
/// original when `strip` is unavailable.
fn stripped(agent: &Path, scratch: &Path) -> Result<Vec<u8>, InitramfsError> {
    let out = scratch.join("vouch-agent.stripped");
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(agent)
        .status()
        .is_ok_and(|s| s.success());
    read(if ok { &out } else { agent })
}

fn rel(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

/// Writes the initramfs for the kernel whose modules are at `modules_dir` to `out`, with
/// `agent` as /usr/bin/vouch-agent and `broker_name` resolving to [`BROKER_ADDR`].
pub fn build(
    modules_dir: &Path,
    agent: &Path,
    broker_name: &str,
    out: &Path,
) -> Result<Packed, InitramfsError> {
    let tree = ModuleTree::open(modules_dir)?;
    let modules = tree.closure(MODULES)?;

    let tcti = find_tcti()?;
    let mut libraries = BTreeSet::new();
    let tools: Vec<&Path> = TOOLS.iter().map(Path::new).collect();
    for f in [agent, tcti.as_path()].iter().chain(&tools) {
        libraries.extend(ldd(f)?);
    }
    libraries.insert(tcti);

    let applets = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .map_err(spawn_err("/bin/busybox"))?;
    if !applets.status.success() {
        return Err(InitramfsError::Applets(
            String::from_utf8_lossy(&applets.stderr).into_owned(),
        ));
    }
    let applets = String::from_utf8_lossy(&applets.stdout).into_owned();

    let file = std::fs::File::create(out).map_err(|source| InitramfsError::Create {
        path: out.to_path_buf(),
        source,
    })?;
    let mut w = Writer::new(std::io::BufWriter::new(file));
    let mut dirs = BTreeSet::new();
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "mnt",
        "var/lib",
        "lib/modules",
    ] {
        dirs.insert(d.to_string());
    }
    for lib in &libraries {
        if let Some(parent) = lib.parent() {
            dirs.insert(rel(parent));
        }
    }
    // Parents before children: add every ancestor, then write in sorted order.
    for d in dirs.clone() {
        let mut p = Path::new(&d).parent();
        while let Some(a) = p.filter(|a| !a.as_os_str().is_empty()) {
            dirs.insert(a.to_string_lossy().into_owned());
            p = a.parent();
        }
    }
    for d in &dirs {
        w.dir(d, if d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    w.char_dev("dev/console", 0o600, (5, 1))?;
    w.char_dev("dev/null", 0o666, (1, 3))?;
    w.file("bin/busybox", 0o755, &read(Path::new("/bin/busybox"))?)?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let dir = Path::new(applet).parent().map(rel).unwrap_or_default();
        if applet != "bin/busybox" && dirs.contains(&dir) {
            w.symlink(applet, "/bin/busybox")?;
        }
    }
    let scratch = out.with_extension("scratch");
    std::fs::create_dir_all(&scratch).map_err(|source| InitramfsError::Create {
        path: scratch.clone(),
        source,
    })?;
    let agent_bytes = stripped(agent, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    w.file("usr/bin/vouch-agent", 0o755, &agent_bytes?)?;
    for lib in libraries
        .iter()
        .map(PathBuf::as_path)
        .chain(tools.iter().copied())
    {
        w.file(&rel(lib), 0o755, &read(lib)?)?;
    }
    let mut order = String::new();
    for (name, path) in &modules {
        w.file(&format!("lib/modules/{name}.ko"), 0o644, &read(path)?)?;
        order.push_str(name);
        order.push('\n');
    }
    w.file("etc/vouch-modules", 0o644, order.as_bytes())?;
    let hosts = format!("127.0.0.1 localhost\n{BROKER_ADDR} {broker_name}\n");
    w.file("etc/hosts", 0o644, hosts.as_bytes())?;
    w.file("etc/nsswitch.conf", 0o644, b"hosts: files\n")?;
    w.file("etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n")?;
    w.file("etc/group", 0o644, b"root:x:0:\n")?;
    w.file("init", 0o755, INIT.as_bytes())?;
    w.finish()?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(Packed {
        modules: modules.into_iter().map(|(n, _)| n).collect(),
        libraries: libraries.into_iter().collect(),
        bytes,
    })
}
