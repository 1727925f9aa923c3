//! A stand-in for the kernel's `/dev/tpmrm0`, for programs that only talk to a TPM device node:
//! libcryptsetup's `systemd-tpm2` token plugin (systemd 252) finds its TPM by listing
//! `/sys/class/tpmrm` and opens `/dev/<name>` with tpm2-tss's device TCTI, with no way to name
//! another TCTI.
//!
//! [`TpmDevice`] mounts a FUSE file system with one file, `tpmrm0`. Opening it connects to the
//! swtpm's command port; a write is one TPM command, sent to the swtpm, whose response is read
//! whole and handed out by the following reads (as the kernel device does; partial reads too).
//! Closing it flushes the sessions and transient objects left in the TPM, as the kernel's
//! resource manager does for `/dev/tpmrm0`.
//! [`TpmDevice::command`] runs a program in a private mount namespace (`unshare -m`) where a
//! fresh tmpfs `/dev` holds the usual nodes plus this file bound at `/dev/tpmrm0`, and
//! `/sys/class` is a tmpfs listing `tpmrm/tpmrm0`. Nothing outside that namespace changes.
//!
//! Needs root, `/dev/fuse` and `fusermount3` (package fuse3).

use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request,
};
use libc::{EAGAIN, EBUSY, EIO, EISDIR, ENOENT};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

const ROOT: u64 = fuser::FUSE_ROOT_ID;
const FILE: u64 = 2;
const NAME: &str = "tpmrm0";
const TTL: Duration = Duration::from_secs(1);
const HEADER: usize = 10;

#[derive(Default)]
struct State {
    conn: Option<TcpStream>,
    pending: Vec<u8>,
    answer: Vec<u8>,
}

struct Fs {
    port: u16,
    state: State,
}

fn attr(ino: u64) -> FileAttr {
    let dir = ino == ROOT;
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if dir { 0o755 } else { 0o600 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Sends one command and reads its whole response.
fn exchange(conn: &mut TcpStream, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
    conn.write_all(cmd)?;
    let mut head = [0u8; HEADER];
    conn.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
    let mut out = head.to_vec();
    out.resize(len.max(HEADER), 0);
    conn.read_exact(&mut out[HEADER..])?;
    Ok(out)
}

/// Handles of one type (`first`: 0x02000000 loaded sessions, 0x80000000 transient objects).
fn handles(conn: &mut TcpStream, first: u32) -> Vec<u32> {
    let mut cmd = vec![0x80, 0x01, 0, 0, 0, 22, 0, 0, 0x01, 0x7a];
    cmd.extend_from_slice(&1u32.to_be_bytes()); // TPM_CAP_HANDLES
    cmd.extend_from_slice(&first.to_be_bytes());
    cmd.extend_from_slice(&64u32.to_be_bytes());
    let Ok(rsp) = exchange(conn, &cmd) else {
        return Vec::new();
    };
    // header, moreData, capability, count, handles
    rsp.get(HEADER + 9..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// What the kernel's resource manager does when a `/dev/tpmrm0` client closes: flush the
/// sessions and transient objects it left (systemd 252's `tpm2_unseal` does not flush its
/// HMAC session; a raw swtpm would run out of session slots).
fn flush_all(conn: &mut TcpStream) {
    for first in [0x0200_0000, 0x8000_0000] {
        for h in handles(conn, first) {
            let mut cmd = vec![0x80, 0x01, 0, 0, 0, 14, 0, 0, 0x01, 0x65];
            cmd.extend_from_slice(&h.to_be_bytes());
            let _ = exchange(conn, &cmd);
        }
    }
}

impl Filesystem for Fs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == NAME {
            reply.entry(&TTL, &attr(FILE), 0);
        } else {
            reply.error(ENOENT);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if ino == ROOT || ino == FILE {
            reply.attr(&TTL, &attr(ino));
        } else {
            reply.error(ENOENT);
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino != FILE {
            return reply.error(EISDIR);
        }
        if self.state.conn.is_some() {
            // One client at a time, as swtpm serves one connection at a time.
            return reply.error(EBUSY);
        }
        match TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
            Ok(c) => {
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                self.state = State {
                    conn: Some(c),
                    ..State::default()
                };
                reply.opened(1, FOPEN_DIRECT_IO);
            }
            Err(_) => reply.error(EIO),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let st = &mut self.state;
        st.pending.extend_from_slice(data);
        if st.pending.len() >= HEADER {
            let p = &st.pending;
            let len = u32::from_be_bytes([p[2], p[3], p[4], p[5]]) as usize;
            if st.pending.len() >= len {
                let cmd = std::mem::take(&mut st.pending);
                let Some(conn) = st.conn.as_mut() else {
                    return reply.error(EIO);
                };
                match exchange(conn, &cmd) {
                    Ok(answer) => st.answer.extend_from_slice(&answer),
                    Err(_) => return reply.error(EIO),
                }
            }
        }
        reply.written(data.len() as u32);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let st = &mut self.state;
        if st.answer.is_empty() {
            return reply.error(EAGAIN);
        }
        let n = (size as usize).min(st.answer.len());
        let out: Vec<u8> = st.answer.drain(..n).collect();
        reply.data(&out);
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(conn) = self.state.conn.as_mut() {
            flush_all(conn);
        }
        self.state = State::default();
        reply.ok();
    }
}

/// A mounted `tpmrm0` file that forwards to a swtpm's command port; unmounted on drop.
pub struct TpmDevice {
    _session: fuser::BackgroundSession,
    dir: tempfile::TempDir,
}

impl TpmDevice {
    /// Mounts the file for the swtpm listening on TCP `port` (its control port is not used).
    pub fn start(port: u16) -> std::io::Result<TpmDevice> {
        let dir = tempfile::Builder::new().prefix("vouch-tpmdev-").tempdir()?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt)?;
        let fs = Fs {
            port,
            state: State::default(),
        };
        let session = fuser::spawn_mount2(fs, &mnt, &[MountOption::FSName("vouch-tpmdev".into())])?;
        Ok(TpmDevice {
            _session: session,
            dir,
        })
    }

    /// The file standing in for `/dev/tpmrm0`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("mnt").join(NAME)
    }

    /// `program args` in a private mount namespace where `/dev/tpmrm0` is this file and
    /// `/sys/class/tpmrm` lists it (see the module documentation).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["-m", "sh", "-ec", NAMESPACE_SCRIPT, "tpm-namespace"])
            .arg(self.path())
            .arg(self.dir.path().join("olddev"))
            .arg(program)
            .args(args);
        c
    }
}

/// `$1`: the FUSE file; `$2`: an empty directory for the old /dev; then the command.
const NAMESPACE_SCRIPT: &str = r#"
dev=$1; old=$2; shift 2
mount --make-rprivate /
mkdir -p "$old"
mount --rbind /dev "$old"
mount -t tmpfs -o mode=755 vouch-dev /dev
for n in null zero full random urandom tty; do touch "/dev/$n"; mount --bind "$old/$n" "/dev/$n"; done
mkdir -p /dev/mapper /dev/shm
touch /dev/tpmrm0
mount --bind "$dev" /dev/tpmrm0
mount -t tmpfs vouch-class /sys/class
mkdir -p /sys/class/tpmrm/tpmrm0
exec "$@"
"#;
