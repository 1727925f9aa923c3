//! One test machine and its boots: a private swtpm state (a copy of the harness's prepared state
//! with EK certificates), a private copy of OVMF's variable store, and a host directory shared
//! with the guest over virtio-9p; all three persist across the machine's boots, as a real
//! machine's TPM, NVRAM and disk do. A server machine ([`Machine::new_server`]) also has a
//! copy-on-write overlay of the Debian image as its root disk and a qemu-guest-agent channel. Each boot starts swtpm (`socket --ctrl type=unixio`, the
//! form qemu's `-tpmdev emulator` drives) and qemu (q35, TCG, OVMF, tpm-crb, `-kernel`), with
//! guest networking only through user networking with `restrict=on` and one guestfwd to each of
//! the host broker's two listeners (devices, enrollment). The guestfwd runs `busybox nc 127.0.0.1 PORT` per connection (`cmd:`):
//! the `tcp:HOST:PORT` form is a chardev qemu opens once, so every guest connection after the
//! first (the agent reconnects with its device certificate after enrolling) would be spliced
//! into the first connection's stream and fail the TLS handshake.

use super::initramfs::BROKER_ADDR;
use super::prep::{Kernel, OVMF_CODE, OVMF_CODE_SECBOOT, OVMF_VARS, OVMF_VARS_MS};
use super::qga::GuestAgent;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What went wrong setting up or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Preparing the machine's files failed.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The harness's prepared swtpm state is unavailable.
    #[error("preparing the swtpm state template")]
    Template(#[from] crate::HarnessError),
    /// swtpm or qemu could not be started.
    #[error("cannot run {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// swtpm did not create its control socket.
    #[error("swtpm did not open {0} within 5 s")]
    SwtpmSocket(PathBuf),
    /// The serial console did not show the expected text in time.
    #[error("timed out after {secs} s waiting for {needle:?} on the serial console; it shows:\n{serial}")]
    Timeout {
        needle: String,
        secs: u64,
        serial: String,
    },
    /// qemu exited before the expected text appeared.
    #[error("qemu exited ({status}) before {needle:?} appeared; serial console:\n{serial}")]
    Exited {
        needle: String,
        status: std::process::ExitStatus,
        serial: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MachineError + '_ {
    move |source| MachineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host broker's listener ports on 127.0.0.1 a guest reaches (as 8883 and 8884).
#[derive(Debug, Clone, Copy)]
pub struct BrokerPorts {
    /// The device listener.
    pub device: u16,
    /// The enrollment listener.
    pub enroll: u16,
}

/// A machine: TPM state, NVRAM and shared directory, kept across boots; removed on drop.
pub struct Machine {
    dir: tempfile::TempDir,
    boots: u32,
    disks: Vec<PathBuf>,
    secure_boot: bool,
    /// A Debian server guest ([`Machine::new_server`]): more memory, two vCPUs and a
    /// qemu-guest-agent channel.
    server: bool,
}

impl Machine {
    /// A fresh machine: TPM state from the prepared template, pristine OVMF variables.
    pub fn new() -> Result<Machine, MachineError> {
        Machine::create(false)
    }

    /// A fresh machine with Secure Boot on: OVMF's Secure Boot build (SMM) and a variable store
    /// with Microsoft's certificates enrolled. Boot it from an [`super::esp`] disk with
    /// [`Machine::boot_disk`].
    pub fn new_secure_boot() -> Result<Machine, MachineError> {
        Machine::create(true)
    }

    fn create(secure_boot: bool) -> Result<Machine, MachineError> {
        let template = crate::template::ensure()?;
        let dir = tempfile::Builder::new()
            .prefix("vouch-vm-")
            .tempdir()
            .map_err(io(&std::env::temp_dir()))?;
        crate::template::copy_tree(&template.join("state"), &dir.path().join("tpm"))?;
        crate::template::copy_tree(&template.join("ca"), &dir.path().join("ca"))?;
        let vars = dir.path().join("OVMF_VARS.fd");
        let pristine = if secure_boot { OVMF_VARS_MS } else { OVMF_VARS };
        std::fs::copy(pristine, &vars).map_err(io(Path::new(pristine)))?;
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("state")).map_err(io(&share))?;
        Ok(Machine {
            dir,
            boots: 0,
            disks: Vec::new(),
            secure_boot,
            server: false,
        })
    }

    /// A machine that boots the Debian server image `image` ([`super::debian`]) from its own
    /// copy-on-write overlay (`root.qcow2`: the cached image stays untouched), through the
    /// firmware's boot path (shim, GRUB, the kernel and initramfs on the root file system),
    /// with a qemu-guest-agent channel ([`Vm::guest`]). Attach data disks after it.
    pub fn new_server(image: &Path, secure_boot: bool) -> Result<Machine, MachineError> {
        let mut machine = Machine::create(secure_boot)?;
        machine.server = true;
        let overlay = machine.dir.path().join("root.qcow2");
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(image)
            .arg(&overlay)
            .output()
            .map_err(|source| MachineError::Spawn {
                program: "qemu-img",
                source,
            })?;
        if !out.status.success() {
            return Err(MachineError::Io {
                path: overlay,
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        machine.disks.push(overlay);
        Ok(machine)
    }

    /// The machine's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory the guest mounts at /mnt/share.
    pub fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    /// Provisions the agent through the share: `agent.toml` (the kernel's resource-managed TPM,
    /// state on the share so it survives reboots, the securityfs event log, the broker as
    /// `broker`:8883, enrollment at `broker`:8884) and the fleet's CA certificate and claim credentials from `fleet_dir`.
    pub fn provision_agent(&self, fleet_dir: &Path, broker: &str) -> Result<(), MachineError> {
        let share = self.share();
        for f in ["ca.crt", "claim.crt", "claim.key"] {
            let from = fleet_dir.join(f);
            std::fs::copy(&from, share.join(f)).map_err(io(&from))?;
        }
        let config = format!(
            "tcti = \"device:/dev/tpmrm0\"\nstate_dir = \"/mnt/share/state\"\n\
             eventlog = \"/sys/kernel/security/tpm0/binary_bios_measurements\"\n\n[broker]\n\
             host = \"{broker}\"\nport = 8883\nenroll_port = 8884\nca_file = \"/mnt/share/ca.crt\"\n\
             claim_cert = \"/mnt/share/claim.crt\"\nclaim_key = \"/mnt/share/claim.key\"\n\
             keep_alive_secs = 5\nmax_backoff_secs = 2\n"
        );
        let path = share.join("agent.toml");
        std::fs::write(&path, config).map_err(io(&path))
    }

    /// Attaches a disk image (raw, or qcow2 by its `.qcow2` name) as the next virtio-blk disk
    /// from the next boot: the first is the guest's /dev/vda, the second /dev/vdb.
    pub fn attach_disk(&mut self, image: &Path) {
        self.disks.push(image.to_path_buf());
    }

    /// Trust anchors for this TPM's EK certificates (root and issuing CA).
    pub fn ek_trust(&self) -> Vec<PathBuf> {
        let ca = self.dir.path().join("ca");
        vec![
            ca.join("swtpm-localca-rootca-cert.pem"),
            ca.join("issuercert.pem"),
        ]
    }

    /// Boots `kernel` with `initrd` and `cmdline`; guest ports 8883 and 8884 at the broker
    /// address are forwarded to the broker's device and enrollment listeners on the host's
    /// loopback. Console output goes to
    /// `<dir>/boot-N.serial`.
    pub fn boot(
        &mut self,
        kernel: &Kernel,
        initrd: &Path,
        cmdline: &str,
        broker: BrokerPorts,
    ) -> Result<Vm, MachineError> {
        let direct = [
            "-kernel".as_ref(),
            kernel.image.as_os_str(),
            "-initrd".as_ref(),
            initrd.as_os_str(),
            "-append".as_ref(),
            cmdline.as_ref(),
        ];
        self.start(&direct, broker)
    }

    /// Boots from the attached disk (an [`super::esp`] image): the firmware's own boot path.
    pub fn boot_disk(&mut self, broker: BrokerPorts) -> Result<Vm, MachineError> {
        self.start(&[], broker)
    }

    fn start(
        &mut self,
        boot_args: &[&std::ffi::OsStr],
        broker: BrokerPorts,
    ) -> Result<Vm, MachineError> {
        self.boots += 1;
        let n = self.boots;
        let dir = self.dir.path();
        let _ = std::fs::remove_file(self.share().join("poweroff"));
        let _ = std::fs::remove_file(self.share().join("eventlog.bin"));
        let sock = dir.join("swtpm.ctrl");
        let _ = std::fs::remove_file(&sock);
        let swtpm = Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.join("tpm").display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            .arg("--log")
            .arg(format!(
                "file={},level=1",
                dir.join(format!("boot-{n}.swtpm.log")).display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| MachineError::Spawn {
                program: "swtpm",
                source,
            })?;
        let mut swtpm = Killed(swtpm);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            if Instant::now() > deadline || !matches!(swtpm.0.try_wait(), Ok(None)) {
                return Err(MachineError::SwtpmSocket(sock));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let serial = dir.join(format!("boot-{n}.serial"));
        let mut qemu = Command::new("qemu-system-x86_64");
        for (i, disk) in self.disks.iter().enumerate() {
            // qcow2 keeps metadata in qemu's memory until a flush: honour the guest's flushes.
            let (format, cache) = if disk.extension().is_some_and(|e| e == "qcow2") {
                ("qcow2", "writeback")
            } else {
                ("raw", "unsafe")
            };
            qemu.arg("-drive")
                .arg(format!(
                    "file={},if=none,id=d{i},format={format},cache={cache}",
                    disk.display()
                ))
                .arg("-device")
                .arg(if boot_args.is_empty() {
                    // Firmware boot: the first disk first. (With -kernel, qemu's own boot ROM
                    // holds boot index 0 and a disk may not claim it.)
                    format!("virtio-blk-pci,drive=d{i},bootindex={i}")
                } else {
                    format!("virtio-blk-pci,drive=d{i}")
                });
        }
        let qga = dir.join("qga.sock");
        let _ = std::fs::remove_file(&qga);
        if self.server {
            qemu.arg("-chardev")
                .arg(format!(
                    "socket,id=qga0,path={},server=on,wait=off",
                    qga.display()
                ))
                .args(["-device", "virtio-serial-pci"])
                .args([
                    "-device",
                    "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
                ]);
        }
        let (memory, cpus) = if self.server {
            ("1536", "2")
        } else {
            ("512", "1")
        };
        let qemu = qemu
            .args([
                "-machine",
                if self.secure_boot {
                    "q35,smm=on"
                } else {
                    "q35"
                },
            ])
            .args(["-accel", "tcg", "-m", memory, "-smp", cpus])
            .args(["-nographic", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args(if self.secure_boot {
                &["-global", "driver=cfi.pflash01,property=secure,value=on"][..]
            } else {
                &[][..]
            })
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                if self.secure_boot {
                    OVMF_CODE_SECBOOT
                } else {
                    OVMF_CODE
                }
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                dir.join("OVMF_VARS.fd").display()
            ))
            .arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", sock.display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args(["-device", "tpm-crb,tpmdev=tpm0"])
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,restrict=on,\
                 guestfwd=tcp:{BROKER_ADDR}:8883-cmd:/bin/busybox nc 127.0.0.1 {device},\
                 guestfwd=tcp:{BROKER_ADDR}:8884-cmd:/bin/busybox nc 127.0.0.1 {enroll}",
                device = broker.device,
                enroll = broker.enroll
            ))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .arg("-fsdev")
            .arg(format!(
                "local,id=fs0,path={},security_model=none",
                self.share().display()
            ))
            .args(["-device", "virtio-9p-pci,fsdev=fs0,mount_tag=vouch"])
            .args(["-device", "virtio-rng-pci"])
            .args(boot_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(format!("boot-{n}.qemu.log")))
                    .map(Stdio::from)
                    .map_err(io(dir))?,
            )
            .spawn()
            .map_err(|source| MachineError::Spawn {
                program: "qemu-system-x86_64",
                source,
            })?;
        Ok(Vm {
            qemu: Killed(qemu),
            swtpm: Some(swtpm),
            serial,
            share: self.share(),
            started: Instant::now(),
            guest: self.server.then(|| GuestAgent::new(&qga)),
        })
    }
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running boot of a [`Machine`]; qemu and swtpm are killed on drop.
pub struct Vm {
    qemu: Killed,
    swtpm: Option<Killed>,
    serial: PathBuf,
    share: PathBuf,
    started: Instant,
    guest: Option<GuestAgent>,
}

impl Drop for Vm {
    /// A failing test (this thread panicking) keeps a server guest's journal, while the guest
    /// still runs, as `journal.txt` on the share (all boots the guest's journal holds).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(g) = &self.guest {
            let _ = g.sh(
                "journalctl --no-pager -o short-iso-precise > /mnt/share/journal.txt 2>&1; sync",
                Duration::from_secs(60),
            );
        }
    }
}

impl Vm {
    /// The guest agent of a server machine's boot ([`Machine::new_server`]).
    ///
    /// # Panics
    /// On a boot of a machine without one (an initramfs machine).
    pub fn guest(&self) -> &GuestAgent {
        self.guest
            .as_ref()
            .expect("only server machines (Machine::new_server) have a guest agent")
    }

    /// Whether qemu is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.qemu.0.try_wait(), Ok(None))
    }

    /// Shuts a server guest down through its guest agent (systemd's clean power-off) and waits
    /// for qemu to exit; kills it after `timeout`. Returns true when it powered off by itself.
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        if let Some(g) = &self.guest {
            let _ = g.shutdown();
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Time since qemu started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the serial console shows `needle`.
    pub fn wait_serial(&mut self, needle: &str, timeout: Duration) -> Result<(), MachineError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.serial().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.qemu.0.try_wait() {
                return Err(MachineError::Exited {
                    needle: needle.to_string(),
                    status,
                    serial: self.serial(),
                });
            }
            if Instant::now() > deadline {
                return Err(MachineError::Timeout {
                    needle: needle.to_string(),
                    secs: timeout.as_secs(),
                    serial: self.serial(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the guest to power off (its init stops the agent and calls `poweroff -f`, and the
    /// kernel sends TPM2_Shutdown) and waits for qemu to exit; kills it after `timeout`.
    /// Returns true when the guest powered off by itself.
    pub fn power_off(mut self, timeout: Duration) -> bool {
        let flag = self.share.join("poweroff");
        let _ = std::fs::write(&flag, b"now");
        let deadline = Instant::now() + timeout;
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.qemu.0.try_wait() {
                clean = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // swtpm --terminate exits when qemu closes the control channel; give it a moment.
        if let Some(mut s) = self.swtpm.take() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(s.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(&flag);
        clean
    }
}
