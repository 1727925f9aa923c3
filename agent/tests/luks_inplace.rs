//! In-place encryption with real process kills: a child process runs
//! `encrypt_existing` on an image file and is killed with SIGKILL at random moments;
//! the run is resumed until it completes. cryptsetup must then accept the volume, its
//! volume key must match, and the data must decrypt to the original plaintext.

mod luks_common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use luks_common::*;
use vouch_agent::volume::luks2::inplace::encrypt_existing;
use vouch_agent::volume::luks2::{Argon2Cost, FormatOptions, Luks2Volume};

const SHIFT: u64 = 1 << 20;
const PLAIN: usize = 8 << 20;
const CHUNK: u64 = 128 << 10;

fn opts() -> FormatOptions {
    FormatOptions {
        data_offset: SHIFT,
        recovery_cost: Argon2Cost {
            time: 4,
            memory_kib: 1024,
            lanes: 1,
        },
        ..FormatOptions::default()
    }
}

/// Child side: encrypt (or resume) the image named in the environment.
#[test]
fn inplace_child() {
    let (Ok(img), Ok(journal)) = (
        std::env::var("VOUCH_INPLACE_IMAGE"),
        std::env::var("VOUCH_INPLACE_JOURNAL"),
    ) else {
        return; // Only meaningful when started by the parent test below.
    };
    let mut dev = open_rw(std::path::Path::new(&img));
    let mut j = open_rw(std::path::Path::new(&journal));
    encrypt_existing(&mut dev, &mut j, &secret(), &recovery(), &opts(), CHUNK).expect("encrypt");
}

/// When to kill the child.
enum Kill {
    Never,
    /// After this long.
    After(Duration),
    /// This long after the journal holds its first progress record (data is moving).
    AfterRecord(Duration),
}

fn run_child(img: &std::path::Path, journal: &std::path::Path, kill: Kill) -> bool {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "inplace_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("VOUCH_INPLACE_IMAGE", img)
        .env("VOUCH_INPLACE_JOURNAL", journal)
        .spawn()
        .expect("spawn child");
    match kill {
        Kill::Never => {}
        Kill::After(d) => {
            std::thread::sleep(d);
            let _ = child.kill(); // SIGKILL
        }
        Kill::AfterRecord(d) => {
            let start = std::time::Instant::now();
            while std::fs::metadata(journal).map(|m| m.len()).unwrap_or(0) <= SHIFT
                && start.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(d);
            let _ = child.kill(); // SIGKILL
        }
    }
    child.wait().expect("wait child").success()
}

#[test]
fn killed_runs_resume_and_cryptsetup_reads_the_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = pattern(PLAIN, 5);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // A random schedule can miss on a fast, idle machine (the first run finishes the whole
    // job before its kill): then start over on a fresh image, with shorter delays, up to 8 times.
    let mut kills_while_moving = 0;
    let mut img = PathBuf::new();
    for attempt in 0..8u64 {
        let mut image_bytes = plain.clone();
        image_bytes.resize(PLAIN + SHIFT as usize, 0);
        img = write_file(dir.path(), &format!("disk{attempt}.img"), &image_bytes);
        let journal = image(dir.path(), &format!("journal{attempt}"), 0);
        // First a kill while the journal header is being made, then kills while data moves.
        let first = Kill::After(Duration::from_millis(next() % (300 >> attempt.min(5))));
        let _ = run_child(&img, &journal, first);
        kills_while_moving = 0;
        for _ in 0..6 {
            let d = Duration::from_millis(next() % (40 >> attempt.min(5)).max(1));
            if run_child(&img, &journal, Kill::AfterRecord(d)) {
                break;
            }
            kills_while_moving += 1;
        }
        assert!(
            run_child(&img, &journal, Kill::Never),
            "final resume failed"
        );
        eprintln!("attempt {attempt}: {kills_while_moving} runs killed while moving data");
        if kills_while_moving >= 1 {
            break;
        }
    }
    assert!(
        kills_while_moving >= 1,
        "no kill landed while data was moving"
    );

    let secret_file = write_file(dir.path(), "secret", &secret());
    cryptsetup_ok(&[
        "open",
        "--test-passphrase",
        "--key-file",
        path(&secret_file),
        path(&img),
    ]);
    let mut dev = open_rw(&img);
    let vol = Luks2Volume::read(&mut dev).expect("read");
    let key = vol
        .open(&mut dev, &secret(), Some(0))
        .expect("open")
        .volume_key;
    assert_eq!(key.to_vec(), dumped_volume_key(&img, &secret_file));
    let mut data = vec![0u8; PLAIN];
    vol.data_segment(&key)
        .expect("segment")
        .read(&mut dev, 0, &mut data)
        .expect("decrypt");
    assert!(data == plain, "plaintext changed by in-place encryption");
}
