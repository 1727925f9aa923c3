//! `vouch-agent volume create --encrypt-existing` end to end through the CLI binary, with a
//! per-test swtpm and the real cryptsetup 2.6 (no device-mapper needed):
//!
//! - an image holding known pseudo-random data, its last 16 MiB (the data offset) free, is
//!   encrypted in place; cryptsetup reads the volume, the unsealed secret opens keyslot 0, the
//!   escrowed recovery passphrase opens keyslot 1, and cryptsetup's own offline decryption of
//!   the data segment gives back the original bytes;
//! - a run killed with SIGKILL while it moves data is resumed by the same command and the data
//!   again decrypts to the original; a journal of an interrupted job is refused on another
//!   device of the same size, which stays untouched;
//! - refusals leave the bytes intact: no `--journal` (clap), a device smaller than the header,
//!   the journal of a finished job on a device of the same or of another size.
//!
//! "Free" tail means free for the filesystem, not zeroed: a shrunk filesystem leaves stale
//! blocks behind, so the engine does not (and must not) check the tail for zeros. The crash
//! test puts junk there.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use swtpm_tests::{bin_path, run, Output, Swtpm};

const MIB: u64 = 1 << 20;
/// The data offset `--encrypt-existing` uses: the data moves forward by this much.
const SHIFT: u64 = 16 * MIB;
/// Exit code of an I/O failure (`vouch-agent`'s `exit::IO`), which in-place errors map to.
const EXIT_IO: i32 = 5;

/// Deterministic pseudo-random bytes: 8-byte word `i` of stream `seed` is splitmix64 of
/// (seed, i), so any offset (multiple of 8) can be regenerated without the rest.
fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    assert!(offset % 8 == 0 && buf.len() % 8 == 0);
    let first = offset / 8;
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        let mut z = ((seed << 40) ^ (first + i as u64)).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        w.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
}

/// Writes an image of `total` bytes: `pattern(seed)` up to `total - SHIFT`, then the free
/// tail: zeros, or stale junk from `pattern(tail_seed)`.
fn write_image(path: &Path, seed: u64, total: u64, tail_seed: Option<u64>) {
    let f = File::create(path).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut at = 0;
    while at < total {
        match (at < total - SHIFT, tail_seed) {
            (true, _) => pattern(seed, at, &mut buf),
            (false, Some(t)) => pattern(t, at, &mut buf),
            (false, None) => buf.fill(0),
        }
        f.write_all_at(&buf, at).unwrap();
        at += MIB;
    }
    f.set_len(total).unwrap();
}

/// Panics unless `len` bytes of `path` at `file_at` are `pattern(seed)` from offset 0.
fn assert_pattern(path: &Path, file_at: u64, seed: u64, len: u64) {
    let f = File::open(path).unwrap();
    let (mut got, mut want) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut at = 0;
    while at < len {
        let n = (len - at).min(MIB) as usize;
        f.read_exact_at(&mut got[..n], file_at + at).unwrap();
        pattern(seed, at, &mut want[..n]);
        if got[..n] != want[..n] {
            let i = got[..n]
                .iter()
                .zip(&want[..n])
                .position(|(a, b)| a != b)
                .unwrap();
            panic!(
                "{}: plaintext differs at byte {} of {len}",
                path.display(),
                at + i as u64
            );
        }
        at += n as u64;
    }
}

fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open(path).unwrap().read_exact_at(&mut b, at).unwrap();
    b
}

fn sha256_file(path: &Path) -> Vec<u8> {
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().to_vec()
}

fn cryptsetup(args: &[&str]) -> std::process::Output {
    let out = Command::new("cryptsetup")
        .args(args)
        .output()
        .expect("cryptsetup is installed");
    assert!(
        out.status.success(),
        "cryptsetup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Env {
    tpm: Swtpm,
    dir: tempfile::TempDir,
}

impl Env {
    /// A swtpm, a private directory and the fleet's escrow key pair in it.
    fn new() -> Env {
        let env = Env {
            tpm: Swtpm::start().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        let (key, public) = (env.p("escrow.pem"), env.p("escrow.pub.pem"));
        let o = run(
            "vouch-fleet",
            &["escrow", "keygen", "--key", s(&key), "--public", s(&public)],
            &[],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        env
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn agent(&self, args: &[&str]) -> Output {
        self.tpm.agent(&self.p("state"), args)
    }

    /// The arguments of `volume create --encrypt-existing` (cheap Argon2 for the recovery).
    fn create_args(&self, image: &Path, journal: &Path) -> Vec<String> {
        [
            "volume",
            "create",
            "--device",
            s(image),
            "--encrypt-existing",
            "--journal",
            s(journal),
            "--escrow-key",
            s(&self.p("escrow.pub.pem")),
            "--escrow-out",
            &format!("{}.escrow.json", image.display()),
            "--pcrs",
            "sha256:7",
            "--label",
            "inplace",
            "--recovery-kdf-memory",
            "8192",
            "--recovery-kdf-time",
            "1",
        ]
        .map(String::from)
        .to_vec()
    }

    fn create(&self, image: &Path, journal: &Path) -> Output {
        let args = self.create_args(image, journal);
        self.agent(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The finished volume's keyslot-0 secret, unsealed from its `vouch-tpm2` token (read
    /// through cryptsetup's JSON dump) with `vouch-agent unseal`; written to `<image>.secret`.
    fn unseal_secret(&self, image: &Path, meta: &serde_json::Value) -> PathBuf {
        use base64::Engine;
        let token = token(meta, "vouch-tpm2");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(token["vouch_sealed"].as_str().unwrap())
            .unwrap();
        let blob_path = PathBuf::from(format!("{}.sealed", image.display()));
        std::fs::write(&blob_path, blob).unwrap();
        let secret = PathBuf::from(format!("{}.secret", image.display()));
        let o = self.agent(&["unseal", "--in", s(&blob_path), "--out", s(&secret)]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        secret
    }

    /// Checks a finished volume with cryptsetup: metadata, both keyslots (secret and escrowed
    /// passphrase), and that the data segment decrypts to `pattern(seed)` over the whole
    /// plaintext. Returns the volume UUID.
    fn check_volume(&self, image: &Path, seed: u64) -> String {
        let total = std::fs::metadata(image).unwrap().len();
        let meta = json_metadata(image);
        let seg = &meta["segments"]["0"];
        assert_eq!(seg["offset"], SHIFT.to_string(), "{seg}");
        assert_eq!(seg["size"], "dynamic", "{seg}");
        assert_eq!(seg["encryption"], "aes-xts-plain64", "{seg}");
        assert_eq!(seg["sector_size"], 4096, "{seg}");
        let dump =
            String::from_utf8_lossy(&cryptsetup(&["luksDump", s(image)]).stdout).into_owned();
        assert!(dump.contains("inplace"), "label missing: {dump}");
        let uuid = dump
            .lines()
            .find_map(|l| l.strip_prefix("UUID:"))
            .unwrap()
            .trim()
            .to_string();

        // Keyslot 0 takes the unsealed secret.
        let secret = self.unseal_secret(image, &meta);
        cryptsetup(&[
            "open",
            "--test-passphrase",
            "--key-slot",
            "0",
            "--key-file",
            s(&secret),
            s(image),
        ]);
        // Keyslot 1 takes the escrowed passphrase; the token holds the record --escrow-out wrote.
        let out = std::fs::read(format!("{}.escrow.json", image.display())).unwrap();
        let record = vouch_attest::escrow::EscrowRecord::parse(&out).unwrap();
        let t = token(&meta, "vouch-escrow");
        assert_eq!(t["volume_uuid"], record.volume_uuid.as_str());
        assert_eq!(t["blob"], record.blob.as_str());
        assert_eq!(record.volume_uuid, uuid);
        let pem = std::fs::read_to_string(self.p("escrow.pem")).unwrap();
        let key = vouch_attest::escrow::secret_from_pem(&pem).unwrap();
        let pass_path = PathBuf::from(format!("{}.recovery", image.display()));
        std::fs::write(&pass_path, &*record.open(&key).unwrap()).unwrap();
        cryptsetup(&[
            "open",
            "--test-passphrase",
            "--key-slot",
            "1",
            "--key-file",
            s(&pass_path),
            s(image),
        ]);

        // cryptsetup decrypts the data segment itself: the volume key it takes out of
        // keyslot 0 goes into a detached header over a copy of the segment (LUKS2 decryption
        // wants a detached header with data offset 0), then offline `reencrypt --decrypt`.
        let vk = PathBuf::from(format!("{}.vk", image.display()));
        let hdr = PathBuf::from(format!("{}.hdr", image.display()));
        let data = PathBuf::from(format!("{}.data", image.display()));
        cryptsetup(&[
            "luksDump",
            "--dump-volume-key",
            "--volume-key-file",
            s(&vk),
            "--batch-mode",
            "--key-file",
            s(&secret),
            s(image),
        ]);
        let mut src = File::open(image).unwrap();
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(SHIFT)).unwrap();
        std::io::copy(&mut src, &mut File::create(&data).unwrap()).unwrap();
        File::create(&hdr).unwrap().set_len(4 * MIB).unwrap();
        cryptsetup(&[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--header",
            s(&hdr),
            "--volume-key-file",
            s(&vk),
            "--key-size",
            "512",
            "--cipher",
            "aes-xts-plain64",
            "--sector-size",
            "4096",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            s(&secret),
            s(&data),
        ]);
        cryptsetup(&[
            "reencrypt",
            "--decrypt",
            "--force-offline-reencrypt",
            "--batch-mode",
            "--header",
            s(&hdr),
            "--key-file",
            s(&secret),
            s(&data),
        ]);
        assert_pattern(&data, 0, seed, total - SHIFT);
        std::fs::remove_file(&data).unwrap();
        uuid
    }
}

fn s(p: &(impl AsRef<std::ffi::OsStr> + ?Sized)) -> &str {
    p.as_ref().to_str().unwrap()
}

fn json_metadata(image: &Path) -> serde_json::Value {
    let out = cryptsetup(&["luksDump", "--dump-json-metadata", s(image)]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one token of type `kind` in a JSON metadata dump.
fn token<'a>(meta: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    let found: Vec<_> = meta["tokens"]
        .as_object()
        .unwrap()
        .values()
        .filter(|t| t["type"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} token: {meta}");
    found[0]
}

#[test]
fn existing_data_is_encrypted_in_place() {
    let env = Env::new();
    let (image, journal) = (env.p("disk.img"), env.p("disk.journal"));
    write_image(&image, 1, 64 * MIB, None);

    let t0 = Instant::now();
    let o = env.create(&image, &journal);
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("64 MiB encrypted in place in {:?}", t0.elapsed());
    assert!(o.stderr.contains("created LUKS2 volume"), "{}", o.stderr);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 64 * MIB);
    // The data did not just move: it is not in clear where it went.
    let mut clear = vec![0u8; 4096];
    pattern(1, 0, &mut clear);
    assert_ne!(read_at(&image, SHIFT, 4096), clear);
    let uuid = env.check_volume(&image, 1);
    eprintln!("volume {uuid}: 48 MiB decrypted by cryptsetup equal the original");

    // Running the finished job again changes nothing: same data, no second pair of tokens.
    let tokens = |meta: &serde_json::Value| meta["tokens"].as_object().map_or(0, |t| t.len());
    let before = json_metadata(&image);
    let data = |image: &Path| read_at(image, SHIFT, (48 * MIB) as usize);
    let data_before = data(&image);
    let o = env.create(&image, &journal);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let after = json_metadata(&image);
    assert_eq!(tokens(&after), tokens(&before), "{after}");
    assert_eq!(tokens(&after), 2, "{after}");
    assert_eq!(after["tokens"], before["tokens"]);
    assert!(data(&image) == data_before, "the rerun changed the data");
}

/// Starts the command on `image` and SIGKILLs it once it has moved about half of the data
/// (the ciphertext reached the middle of the image). True when the kill landed while data
/// was moving: the lowest chunk's destination still holds the original bytes.
fn kill_midway(env: &Env, image: &Path, journal: &Path, seed: u64) -> bool {
    let total = std::fs::metadata(image).unwrap().len();
    let probe = total / 2;
    let mut clear = vec![0u8; 4096];
    pattern(seed, probe, &mut clear);
    let log = File::create(format!("{}.log", journal.display())).unwrap();
    let mut child = Command::new(bin_path("vouch-agent"))
        .args(["--tcti", &env.tpm.tcti(), "--state-dir", s(&env.p("state"))])
        .args(env.create_args(image, journal))
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(format!("{}.log", journal.display()));
            assert!(status.success(), "{status}: {log:?}");
            return false; // Finished between two polls.
        }
        if read_at(image, probe, 4096) != clear {
            break;
        }
        assert!(Instant::now() < deadline, "no progress in 300 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let mut low = vec![0u8; 4096];
    pattern(seed, SHIFT, &mut low);
    status.signal() == Some(9) && read_at(image, SHIFT, 4096) == low
}

#[test]
fn killed_run_resumes_and_a_foreign_journal_is_refused() {
    let env = Env::new();
    let total = 256 * MIB;
    let t0 = Instant::now();
    let mut attempts = 0;
    let (image, journal, seed) = loop {
        attempts += 1;
        assert!(attempts <= 10, "the kill never landed while data moved");
        let seed = 100 + attempts;
        let image = env.p(&format!("disk{attempts}.img"));
        let journal = env.p(&format!("disk{attempts}.journal"));
        // Stale junk in the free tail, as a shrunk filesystem leaves it.
        write_image(&image, seed, total, Some(900 + attempts));
        if kill_midway(&env, &image, &journal, seed) {
            break (image, journal, seed);
        }
        eprintln!("attempt {attempts}: the kill missed the data move; again on a new image");
        std::fs::remove_file(&image).unwrap();
    };
    eprintln!(
        "killed mid-way after {attempts} attempt(s), {:?}",
        t0.elapsed()
    );
    // The interrupted job left its journal (with the final header in it) and its sidecar.
    cryptsetup(&["isLuks", s(&journal)]);
    let sidecar = format!("{}.vouch.json", journal.display());
    assert!(Path::new(&sidecar).exists());
    let journal_uuid = String::from_utf8_lossy(&cryptsetup(&["luksUUID", s(&journal)]).stdout)
        .trim()
        .to_string();

    // That journal on another device of the same size: refused, nothing touched.
    let other = env.p("other.img");
    write_image(&other, 7, total, None);
    let (other_before, image_before) = (sha256_file(&other), sha256_file(&image));
    let journal_before = sha256_file(&journal);
    let o = env.create(&other, &journal);
    assert_eq!(o.code, EXIT_IO, "{}", o.stderr);
    assert!(
        o.stderr.contains("journal belongs to another device"),
        "{}",
        o.stderr
    );
    assert_eq!(sha256_file(&other), other_before, "foreign device changed");
    assert_eq!(sha256_file(&image), image_before);
    assert_eq!(sha256_file(&journal), journal_before);
    std::fs::remove_file(&other).unwrap();

    // The same command again resumes from the journal and finishes.
    let t1 = Instant::now();
    let o = env.create(&image, &journal);
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("resumed and finished in {:?}", t1.elapsed());
    let uuid = env.check_volume(&image, seed);
    // The volume is the journal's (its key encrypted the first half), not a fresh start.
    assert_eq!(uuid, journal_uuid);
}

#[test]
fn refusals_leave_the_data_intact() {
    let env = Env::new();
    let image = env.p("disk.img");
    write_image(&image, 3, 64 * MIB, None);
    let before = sha256_file(&image);

    // --encrypt-existing without --journal: a usage error from clap.
    let mut args = env.create_args(&image, Path::new("unused"));
    let at = args.iter().position(|a| a == "--journal").unwrap();
    args.drain(at..at + 2);
    let o = env.agent(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--journal"), "{}", o.stderr);
    assert_eq!(sha256_file(&image), before);

    // A device no larger than the header area.
    let small = env.p("small.img");
    write_image(&small, 4, SHIFT, Some(4));
    let small_before = sha256_file(&small);
    let o = env.create(&small, &env.p("small.journal"));
    assert_eq!(o.code, EXIT_IO, "{}", o.stderr);
    assert!(o.stderr.contains("cannot hold"), "{}", o.stderr);
    assert_eq!(sha256_file(&small), small_before);

    // The journal of a finished job, on a device of the same size and of another size.
    let journal = env.p("disk.journal");
    let o = env.create(&image, &journal);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for (name, size) in [("same.img", 64 * MIB), ("bigger.img", 80 * MIB)] {
        let other = env.p(name);
        write_image(&other, 5, size, None);
        let other_before = sha256_file(&other);
        let o = env.create(&other, &journal);
        assert_eq!(o.code, EXIT_IO, "{name}: {}", o.stderr);
        assert!(
            o.stderr.contains("journal belongs to another device"),
            "{name}: {}",
            o.stderr
        );
        // A size mismatch names both sizes.
        if size != 64 * MIB {
            assert!(
                o.stderr.contains(&format!("size {}", 64 * MIB))
                    && o.stderr.contains(&format!("has {size}")),
                "{}",
                o.stderr
            );
        }
        assert_eq!(sha256_file(&other), other_before, "{name} changed");
    }
}
