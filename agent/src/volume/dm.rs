//! Device-mapper through its ioctl interface (`/dev/mapper/control`): create a device, load a
//! `crypt` table, resume it (activation), and remove it. One of the two modules of the agent
//! with `unsafe` code (the other is `volume::xts::x86`, the SIMD XTS passes): the ioctl calls
//! themselves. Everything else here (the `struct dm_ioctl`
//! encoding, the target spec and the dm-crypt table string) is plain safe code, unit-tested
//! without a kernel.
//!
//! The safe `call()` is sound by construction: it takes a [`DmIoctlBuffer`], which only
//! [`DmIoctlBuffer::new`] builds (its header always has our interface version, a `data_size`
//! equal to the allocation and a `data_start` inside it; `call()` checks that again and consumes
//! the buffer, so one the kernel wrote back is never sent twice), and a [`Control`], which only
//! [`control`] opens. The raw encoders and the request numbers are private.
//!
//! Layout of `struct dm_ioctl` (linux/dm-ioctl.h, interface version 4), 312 bytes, host
//! endian: `version[3] u32` @0, `data_size u32` @12 (whole buffer), `data_start u32` @16
//! (offset of the payload), `target_count u32` @20, `open_count i32` @24, `flags u32` @28,
//! `event_nr u32` @32, `padding u32` @36, `dev u64` @40, `name[128]` @48, `uuid[129]` @176,
//! `data[7]` @305. A table load's payload is one `struct dm_target_spec` (40 bytes:
//! `sector_start u64`, `length u64`, `status i32`, `next u32`, `target_type[16]`) followed
//! by the NUL-terminated parameter string, padded to 8 bytes.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The control device.
pub const CONTROL: &str = "/dev/mapper/control";
/// Size of `struct dm_ioctl`.
const DM_IOCTL_SIZE: usize = 312;
/// Size of `struct dm_target_spec`.
const TARGET_SPEC_SIZE: usize = 40;
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
/// Interface version sent (the kernel accepts major 4 with any lower minor).
const VERSION: [u32; 3] = [4, 0, 0];
/// DM_SECURE_DATA_FLAG: the kernel wipes buffers that held the table (the key).
const SECURE_DATA_FLAG: u32 = 1 << 15;
const DM_IOCTL_TYPE: u8 = 0xfd;
/// Command numbers (`enum` in dm-ioctl.h): DM_DEV_CREATE.
const DEV_CREATE: u8 = 3;
/// DM_DEV_REMOVE.
const DEV_REMOVE: u8 = 4;
/// DM_DEV_SUSPEND (also resumes, without the suspend flag).
const DEV_SUSPEND: u8 = 6;
/// DM_TABLE_LOAD.
const TABLE_LOAD: u8 = 9;

/// The udev cookie (`event_nr`) sent with create, resume and remove, as libdevmapper sends it:
/// udev flags in the high 16 bits, no notification semaphore in the low ones (`dmsetup
/// udevcomplete` accepts such a flags-only cookie and has nothing to wait for). The kernel puts
/// it in the uevent as `DM_COOKIE`. `DM_UDEV_PRIMARY_SOURCE_FLAG` (0x40) tells the dm udev rules
/// (55-dm.rules) that the event comes from the tool that made the device: without it they mark
/// the new device's `add` event "not ours" (disk and other rules disabled, kept in the udev
/// database), blkid never scans the opened volume, systemd's rules leave a `CRYPT-*` device with
/// no known file system `SYSTEMD_READY=0`, and an fstab mount of `/dev/mapper/NAME` waits for a
/// device unit that never comes (seen booting Debian 12). `DM_UDEV_DISABLE_LIBRARY_FALLBACK`
/// (0x20): udev, not us, makes the `/dev/mapper/NAME` link.
const UDEV_COOKIE: u32 = (0x40 | 0x20) << 16;

/// Errors of device-mapper operations.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// This machine has no device-mapper control device.
    #[error("no device-mapper on this machine ({CONTROL} is missing or has no driver; is the dm_mod kernel module loaded?): cannot activate the volume")]
    NoDeviceMapper,
    /// Opening the control device failed.
    #[error("opening {CONTROL} failed")]
    Control(#[source] std::io::Error),
    /// A name is empty, too long or contains '/' or NUL.
    #[error("device-mapper name {0:?} must be 1 to 127 bytes without '/' or NUL")]
    Name(String),
    /// The UUID is too long.
    #[error("device-mapper uuid is {0} bytes; at most 128")]
    Uuid(usize),
    /// The payload does not fit a 32-bit size.
    #[error("device-mapper payload of {0} bytes is too large")]
    Payload(usize),
    /// An ioctl buffer's header does not describe the buffer (refused before the ioctl).
    #[error("device-mapper ioctl buffer refused: {0}")]
    Buffer(&'static str),
    /// The data device is not a block device.
    #[error("{path} is not a block device: attach an image file with `losetup` first")]
    NotBlock { path: PathBuf },
    /// Reading the data device's metadata failed.
    #[error("reading the metadata of {path} failed")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("device-mapper {op} of {name:?} failed")]
    Ioctl {
        op: &'static str,
        name: String,
        #[source]
        source: nix::Error,
    },
}

fn check_name(name: &str) -> Result<(), DmError> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains(['/', '\0']) {
        return Err(DmError::Name(name.into()));
    }
    Ok(())
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_ne_bytes(bytes))
}

/// A `struct dm_ioctl` followed by its payload, ready for one ioctl. Only [`DmIoctlBuffer::new`]
/// builds one, so its header always holds: our interface version, `data_size` equal to the
/// length of the allocation, and `data_start` between the end of the header and that length.
/// The kernel reads and writes at most `data_size` bytes, so an ioctl on it stays inside it.
/// It may hold the volume key (a table load): wiped on drop.
struct DmIoctlBuffer {
    bytes: Zeroizing<Vec<u8>>,
}

impl DmIoctlBuffer {
    /// Encodes a `struct dm_ioctl` for `name` (and `uuid`) followed by `payload`.
    fn new(
        name: &str,
        uuid: Option<&str>,
        flags: u32,
        target_count: u32,
        payload: &[u8],
    ) -> Result<Self, DmError> {
        check_name(name)?;
        let uuid = uuid.unwrap_or_default();
        if uuid.len() >= UUID_LEN {
            return Err(DmError::Uuid(uuid.len()));
        }
        let total = DM_IOCTL_SIZE + payload.len();
        let size = u32::try_from(total).map_err(|_| DmError::Payload(payload.len()))?;
        let mut b = Zeroizing::new(vec![0u8; total]);
        for (i, v) in VERSION.iter().enumerate() {
            put(&mut b, i * 4, &v.to_ne_bytes());
        }
        put(&mut b, 12, &size.to_ne_bytes());
        put(&mut b, 16, &(DM_IOCTL_SIZE as u32).to_ne_bytes());
        put(&mut b, 20, &target_count.to_ne_bytes());
        put(&mut b, 28, &flags.to_ne_bytes());
        put(&mut b, 32, &UDEV_COOKIE.to_ne_bytes());
        put(&mut b, 48, name.as_bytes());
        put(&mut b, 48 + NAME_LEN, uuid.as_bytes());
        put(&mut b, DM_IOCTL_SIZE, payload);
        let buffer = DmIoctlBuffer { bytes: b };
        buffer.check()?;
        Ok(buffer)
    }

    /// Checks the header against the allocation: what the `unsafe` ioctl relies on.
    fn check(&self) -> Result<(), DmError> {
        let b = &self.bytes[..];
        if b.len() < DM_IOCTL_SIZE {
            return Err(DmError::Buffer("shorter than struct dm_ioctl"));
        }
        let version = [u32_at(b, 0), u32_at(b, 4), u32_at(b, 8)];
        if version != VERSION.map(Some) {
            return Err(DmError::Buffer("not our interface version"));
        }
        let data_size = u32_at(b, 12).and_then(|n| usize::try_from(n).ok());
        if data_size != Some(b.len()) {
            return Err(DmError::Buffer("data_size is not the buffer's length"));
        }
        match u32_at(b, 16).and_then(|n| usize::try_from(n).ok()) {
            Some(start) if (DM_IOCTL_SIZE..=b.len()).contains(&start) => Ok(()),
            _ => Err(DmError::Buffer("data_start is outside the buffer")),
        }
    }

    #[cfg(test)]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Encodes one `struct dm_target_spec` with its parameter string (NUL-terminated, padded
/// to 8 bytes; `next` is 0 for the only target).
fn target_spec(start: u64, length: u64, target: &str, params: &str) -> Zeroizing<Vec<u8>> {
    let len = (TARGET_SPEC_SIZE + params.len() + 1).div_ceil(8) * 8;
    let mut b = Zeroizing::new(vec![0u8; len]);
    put(&mut b, 0, &start.to_ne_bytes());
    put(&mut b, 8, &length.to_ne_bytes());
    let t = target.as_bytes();
    put(&mut b, 24, t.get(..t.len().min(15)).unwrap_or_default());
    put(&mut b, TARGET_SPEC_SIZE, params.as_bytes());
    b
}

/// The dm-crypt table parameters of a LUKS2 aes-xts-plain64 data segment: key in hex, IV
/// offset 0, data device, offset in 512-byte sectors, and the segment's sector size.
fn crypt_params(
    volume_key: &[u8],
    device: &str,
    offset_sectors: u64,
    sector_size: u32,
) -> Zeroizing<String> {
    let hex = Zeroizing::new(hex::encode(volume_key));
    let mut s = Zeroizing::new(String::with_capacity(hex.len() + device.len() + 64));
    s.push_str("aes-xts-plain64 ");
    s.push_str(&hex);
    s.push_str(" 0 ");
    s.push_str(device);
    s.push(' ');
    s.push_str(&offset_sectors.to_string());
    if sector_size != 512 {
        s.push_str(" 1 sector_size:");
        s.push_str(&sector_size.to_string());
    }
    s
}

/// The ioctl request number of a device-mapper command: `_IOWR(0xfd, nr, struct dm_ioctl)`.
fn request(nr: u8) -> nix::sys::ioctl::ioctl_num_type {
    nix::request_code_readwrite!(DM_IOCTL_TYPE, nr, DM_IOCTL_SIZE)
        as nix::sys::ioctl::ioctl_num_type
}

/// What to map: a LUKS2 data segment on a block device.
#[derive(Debug)]
pub struct CryptMapping<'a> {
    /// Name under /dev/mapper.
    pub name: &'a str,
    /// Device-mapper UUID (cryptsetup's form: CRYPT-LUKS2-<uuid without dashes>-<name>).
    pub uuid: String,
    /// The data device (a block device).
    pub device: &'a Path,
    /// Data segment offset in bytes.
    pub offset: u64,
    /// Data segment length in bytes.
    pub length: u64,
    /// Data sector size.
    pub sector_size: u32,
    /// The volume key.
    pub volume_key: &'a [u8],
}

/// cryptsetup's device-mapper UUID for a LUKS2 volume.
pub fn luks_uuid(volume_uuid: &str, name: &str) -> String {
    format!("CRYPT-LUKS2-{}-{name}", volume_uuid.replace('-', ""))
}

/// The open device-mapper control device; only [`control`] opens one.
#[derive(Debug)]
pub struct Control(File);

/// Opens the control device, or says clearly that there is no device-mapper.
pub fn control() -> Result<Control, DmError> {
    if !Path::new(CONTROL).exists() {
        return Err(DmError::NoDeviceMapper);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL)
        .map(Control)
        .map_err(|e| match e.raw_os_error() {
            // The node exists but no driver answers (no dm_mod in this kernel/container).
            Some(nix::libc::ENODEV | nix::libc::ENXIO | nix::libc::ENOENT) => {
                DmError::NoDeviceMapper
            }
            _ => DmError::Control(e),
        })
}

/// Sends one device-mapper command. Consumes the buffer: the kernel may rewrite its header.
fn call(
    ctl: &Control,
    nr: u8,
    op: &'static str,
    name: &str,
    mut buf: DmIoctlBuffer,
) -> Result<(), DmError> {
    buf.check()?;
    let data = buf.bytes.as_mut_ptr();
    // SAFETY: `data` points to the live, exclusively owned allocation of `buf`, which starts
    // with a complete `struct dm_ioctl` whose data_size equals the allocation's length (built
    // by DmIoctlBuffer::new and checked just above); the kernel reads and writes at most
    // data_size bytes of it. The fd is the open control device and `request(nr)` a dm request.
    unsafe { dm_ioctl(ctl.0.as_raw_fd(), request(nr), data) }
        .map(|_| ())
        .map_err(|source| DmError::Ioctl {
            op,
            name: name.into(),
            source,
        })
}

/// One device-mapper ioctl.
///
/// # Safety
/// `data` must point to a writable buffer holding a `struct dm_ioctl` whose `data_size`
/// does not exceed the buffer.
unsafe fn dm_ioctl(
    fd: std::os::fd::RawFd,
    req: nix::sys::ioctl::ioctl_num_type,
    data: *mut u8,
) -> nix::Result<i32> {
    // SAFETY: the caller guarantees `data` is a valid dm_ioctl buffer; `req` is a dm request.
    let res = unsafe { nix::libc::ioctl(fd, req, data) };
    nix::errno::Errno::result(res)
}

/// Creates, loads and resumes a dm-crypt mapping; removes the half-made device on failure.
pub fn activate(m: &CryptMapping<'_>) -> Result<(), DmError> {
    check_name(m.name)?;
    let ctl = control()?;
    let meta = std::fs::metadata(m.device).map_err(|source| DmError::Stat {
        path: m.device.to_path_buf(),
        source,
    })?;
    if !std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
        return Err(DmError::NotBlock {
            path: m.device.to_path_buf(),
        });
    }
    let device = m.device.to_string_lossy();
    let params = crypt_params(m.volume_key, &device, m.offset / 512, m.sector_size);
    let spec = target_spec(0, m.length / 512, "crypt", &params);
    let create = DmIoctlBuffer::new(m.name, Some(&m.uuid), 0, 0, &[])?;
    call(&ctl, DEV_CREATE, "DM_DEV_CREATE", m.name, create)?;
    let rest = (|| {
        let load = DmIoctlBuffer::new(m.name, None, SECURE_DATA_FLAG, 1, &spec)?;
        call(&ctl, TABLE_LOAD, "DM_TABLE_LOAD", m.name, load)?;
        let resume = DmIoctlBuffer::new(m.name, None, SECURE_DATA_FLAG, 0, &[])?;
        call(&ctl, DEV_SUSPEND, "DM_DEV_SUSPEND (resume)", m.name, resume)
    })();
    if let Err(e) = rest {
        let _ = remove_with(&ctl, m.name);
        return Err(e);
    }
    Ok(())
}

fn remove_with(ctl: &Control, name: &str) -> Result<(), DmError> {
    let b = DmIoctlBuffer::new(name, None, 0, 0, &[])?;
    call(ctl, DEV_REMOVE, "DM_DEV_REMOVE", name, b)
}

/// Removes a mapping (`volume lock`).
pub fn remove(name: &str) -> Result<(), DmError> {
    check_name(name)?;
    let ctl = control()?;
    remove_with(&ctl, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn encode(
        name: &str,
        uuid: Option<&str>,
        flags: u32,
        target_count: u32,
        payload: &[u8],
    ) -> Result<DmIoctlBuffer, DmError> {
        DmIoctlBuffer::new(name, uuid, flags, target_count, payload)
    }

    #[test]
    fn dm_ioctl_layout() {
        let b = encode(
            "vol",
            Some("CRYPT-LUKS2-abc-vol"),
            SECURE_DATA_FLAG,
            1,
            &[9; 16],
        )
        .unwrap();
        let b = b.as_bytes().to_vec();
        assert_eq!(b.len(), 312 + 16);
        assert_eq!([u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8)], [4, 0, 0]);
        assert_eq!(u32_at(&b, 12), 328, "data_size covers the payload");
        assert_eq!(u32_at(&b, 16), 312, "data_start");
        assert_eq!(u32_at(&b, 20), 1, "target_count");
        assert_eq!(u32_at(&b, 24), 0, "open_count");
        assert_eq!(u32_at(&b, 28), 1 << 15, "flags");
        // event_nr: the udev cookie with DM_UDEV_PRIMARY_SOURCE_FLAG and
        // DM_UDEV_DISABLE_LIBRARY_FALLBACK_FLAG (what `dmsetup udevflags 6291456` decodes).
        assert_eq!(u32_at(&b, 32), 0x0060_0000, "event_nr (udev cookie)");
        assert_eq!(&b[48..52], b"vol\0");
        assert!(b[51..176].iter().all(|&x| x == 0));
        assert_eq!(&b[176..195], b"CRYPT-LUKS2-abc-vol");
        assert_eq!(b[195], 0);
        assert_eq!(&b[312..], &[9; 16]);
    }

    #[test]
    fn names_and_uuids_are_bounded() {
        assert!(matches!(encode("", None, 0, 0, &[]), Err(DmError::Name(_))));
        assert!(matches!(
            encode("a/b", None, 0, 0, &[]),
            Err(DmError::Name(_))
        ));
        assert!(encode(&"n".repeat(127), None, 0, 0, &[]).is_ok());
        assert!(matches!(
            encode(&"n".repeat(128), None, 0, 0, &[]),
            Err(DmError::Name(_))
        ));
        let u = "u".repeat(129);
        assert!(matches!(
            encode("n", Some(&u), 0, 0, &[]),
            Err(DmError::Uuid(129))
        ));
        assert_eq!(
            luks_uuid("12345678-abcd-ef01", "data"),
            "CRYPT-LUKS2-12345678abcdef01-data"
        );
    }

    #[test]
    fn target_spec_and_table() {
        let key: Vec<u8> = (0u8..64).collect();
        let p = crypt_params(&key, "/dev/loop0", 32768, 4096);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            p.as_str(),
            format!("aes-xts-plain64 {hex} 0 /dev/loop0 32768 1 sector_size:4096")
        );
        assert_eq!(
            crypt_params(&[0xab; 64], "8:16", 4096, 512).as_str(),
            format!("aes-xts-plain64 {} 0 8:16 4096", "ab".repeat(64))
        );
        let s = target_spec(0, 2048, "crypt", &p);
        assert_eq!(s.len() % 8, 0);
        assert_eq!(s.len(), (40 + p.len() + 1).div_ceil(8) * 8);
        assert_eq!(u64::from_ne_bytes(s[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(s[8..16].try_into().unwrap()), 2048);
        assert_eq!(u32_at(&s, 16), 0, "status");
        assert_eq!(u32_at(&s, 20), 0, "next");
        assert_eq!(&s[24..30], b"crypt\0");
        assert_eq!(&s[40..40 + p.len()], p.as_bytes());
        assert_eq!(s[40 + p.len()], 0);
    }

    #[test]
    fn request_numbers_match_linux() {
        // _IOWR(0xfd, n, 312): dir 3 << 30 | size 312 << 16 | type 0xfd << 8 | nr.
        let expect = |nr: u32| (3u32 << 30) | (312 << 16) | (0xfd << 8) | nr;
        assert_eq!(request(DEV_CREATE) as u32, expect(3));
        assert_eq!(request(DEV_REMOVE) as u32, expect(4));
        assert_eq!(request(DEV_SUSPEND) as u32, expect(6));
        assert_eq!(request(TABLE_LOAD) as u32, expect(9));
        assert_eq!(request(TABLE_LOAD) as u32, 0xc138fd09);
    }

    #[test]
    fn an_inconsistent_buffer_is_refused_before_the_ioctl() {
        let good = encode("vol", None, 0, 1, &[7; 24]).unwrap();
        assert!(good.check().is_ok());
        let with = |at: usize, v: u32| {
            let mut bytes = good.bytes.clone();
            bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            DmIoctlBuffer { bytes }
        };
        let cases = [
            // data_size larger than the allocation: the kernel would read past it.
            (with(12, 312 + 24 + 1), "data_size"),
            (with(12, 312), "data_size"),
            (with(16, 312 + 24 + 1), "data_start"),
            (with(16, 8), "data_start"),
            (with(0, 5), "version"),
            (
                DmIoctlBuffer {
                    bytes: Zeroizing::new(good.bytes[..100].to_vec()),
                },
                "shorter",
            ),
        ];
        // Any open file will do: the buffer is refused before the fd is used.
        let ctl = Control(File::open("/dev/null").unwrap());
        for (buf, what) in cases {
            let refused = buf.check().unwrap_err().to_string();
            assert!(refused.contains(what), "{refused}");
            let e = call(&ctl, DEV_REMOVE, "DM_DEV_REMOVE", "vol", buf).unwrap_err();
            assert!(matches!(e, DmError::Buffer(_)), "{e:?}");
        }
    }

    #[test]
    fn missing_control_device_is_named() {
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL)
            .is_ok()
        {
            return;
        }
        let e = remove("vouch-test").unwrap_err();
        assert!(matches!(e, DmError::NoDeviceMapper));
        assert!(e.to_string().contains("no device-mapper"));
    }
}
