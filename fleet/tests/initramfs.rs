//! `vouch-fleet runtime-policy create --initrd` against initramfs images made the way Debian's
//! initramfs-tools makes them (GNU cpio newc, an uncompressed early cpio with CPU microcode in
//! front of the compressed main archive; zstd, gzip, xz), checked against initramfs-tools' own
//! `unmkinitramfs` and `sha256sum` as the oracle: the same paths, the same digests.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn sh(script: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(o.status.success(), "{script}: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The tools the images are made and checked with; `None` (the test then skips, saying so)
/// when one is missing (scripts/install-deps.sh installs them).
fn tools() -> Option<()> {
    for t in ["cpio", "unmkinitramfs", "zstd", "xz", "gzip", "sha256sum"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("SKIP: {t} not installed (scripts/install-deps.sh installs it)");
            return None;
        }
    }
    Some(())
}

/// The oracle: `unmkinitramfs IMAGE DIR` and the SHA-256 of every regular file under it, by
/// its path at run time (an image with an early archive unpacks to DIR/early and DIR/main).
fn oracle(image: &Path, dir: &Path) -> BTreeMap<String, String> {
    sh(&format!("unmkinitramfs '{}' '{}'", s(image), s(dir)));
    let split = dir.join("main").is_dir();
    let text = sh(&format!(
        "cd '{}' && find . -type f -print0 | xargs -0 -r sha256sum",
        s(dir)
    ));
    let mut files = BTreeMap::new();
    for line in text.lines() {
        let (digest, path) = line.split_once("  ").unwrap();
        let mut path = path.strip_prefix('.').unwrap().to_string();
        if split {
            let rest = path
                .strip_prefix("/early")
                .or_else(|| path.strip_prefix("/main"))
                .unwrap_or_else(|| panic!("{path} outside early/ and main/"));
            path = rest.to_string();
        }
        files.insert(path, digest.to_string());
    }
    files
}

/// `runtime-policy create --initrd IMAGE`: the policy's paths and digests, and what it printed.
fn policy(image: &Path, dir: &Path) -> (BTreeMap<String, String>, String) {
    let p = dir.join("policy.json");
    let o = fleet(&[
        "runtime-policy",
        "create",
        "--initrd",
        &s(image),
        "--out",
        &s(&p),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let digests = v["digests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let list = v.as_array().unwrap();
            assert_eq!(list.len(), 1, "{k}: {v}");
            (k.clone(), list[0].as_str().unwrap().to_string())
        })
        .collect();
    (digests, out(&o))
}

/// A small initramfs tree with what the real ones have: `/init`, a shell under usr/bin with a
/// symbolic link to it, scripts, a hard-linked pair, an empty file, a name with a space and a
/// file large enough to cross every buffer.
fn make_tree(root: &Path) {
    sh(&format!(
        "set -e; cd '{}'; mkdir -p usr/bin conf/conf.d scripts/local-top 'odd dir'
         printf '#!/bin/sh\\nexec /usr/bin/sh -c true\\n' > init; chmod 755 init
         cp /bin/sh usr/bin/sh; ln -s usr/bin bin
         printf 'ROOT=LABEL=x\\n' > conf/initramfs.conf; : > conf/conf.d/empty
         printf 'echo top\\n' > scripts/local-top/a; ln scripts/local-top/a scripts/local-top/b
         printf x > 'odd dir/a file'
         head -c 3000000 /dev/urandom > usr/bin/big",
        s(root)
    ));
}

#[test]
fn debian_shaped_initramfs_images_read_as_unmkinitramfs_unpacks_them() {
    if tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    let early = dir.path().join("early");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::create_dir_all(early.join("kernel/x86/microcode")).unwrap();
    make_tree(&main);
    std::fs::write(
        early.join("kernel/x86/microcode/GenuineIntel.bin"),
        b"microcode blob",
    )
    .unwrap();
    // As initramfs-tools does: the early archive uncompressed, the main one sorted, owned by
    // root, compressed as initramfs.conf's COMPRESS says; concatenated.
    let early_cpio = dir.path().join("early.cpio");
    sh(&format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > '{}'",
        s(&early),
        s(&early_cpio)
    ));
    for (name, compress) in [
        ("zstd", "zstd -q -19 -T0"),
        ("gzip", "gzip -n -9"),
        ("xz", "xz --check=crc32"),
    ] {
        for with_early in [true, false] {
            let case = format!("{name}{}", if with_early { "+early" } else { "" });
            let image = dir.path().join(format!("initrd-{case}.img"));
            let head = if with_early {
                format!("cat '{}';", s(&early_cpio))
            } else {
                String::new()
            };
            sh(&format!(
                "{{ {head} cd '{}' && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 \
                 | {compress}; }} > '{}'",
                s(&main),
                s(&image)
            ));
            let work = dir.path().join(format!("work-{case}"));
            std::fs::create_dir_all(&work).unwrap();
            let (got, printed) = policy(&image, &work);
            let want = oracle(&image, &work.join("unpacked"));
            assert_eq!(got, want, "{case}: {printed}");
            assert!(got.contains_key("/init") && got.contains_key("/usr/bin/sh"));
            assert_eq!(
                got.contains_key("/kernel/x86/microcode/GenuineIntel.bin"),
                with_early,
                "{case}"
            );
            let sh_digest = sh("sha256sum /bin/sh");
            assert_eq!(
                got["/usr/bin/sh"],
                sh_digest.split_whitespace().next().unwrap()
            );
            assert_eq!(got["/scripts/local-top/a"], got["/scripts/local-top/b"]);
            assert!(printed.contains(&format!("{name} ")), "{printed}");
            eprintln!("{case}: {} files; {}", got.len(), printed.trim());
        }
    }
}

/// The Debian 12 server image's own initramfs (initramfs-tools, zstd), when the VM tests'
/// image cache has it (`scripts/vm-debian-image.sh`; its root tarball holds /boot).
#[test]
fn the_debian_vm_images_initramfs_reads_as_unmkinitramfs_unpacks_it() {
    if tools().is_none() {
        return;
    }
    let cache = std::env::var("VOUCH_VM_CACHE").unwrap_or_else(|_| "/var/tmp/vouch-vm".into());
    let tar = std::fs::read_dir(&cache).ok().and_then(|d| {
        d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("debian-base-") && n.ends_with(".tar"))
        })
    });
    let Some(tar) = tar else {
        eprintln!("SKIP: no Debian base image in {cache} (the VM tests build it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    sh(&format!(
        "cd '{}' && tar xf '{}' --wildcards './boot/initrd.img-*'",
        s(dir.path()),
        s(&tar)
    ));
    let image = std::fs::read_dir(dir.path().join("boot"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (got, printed) = policy(&image, dir.path());
    let want = oracle(&image, &dir.path().join("unpacked"));
    assert_eq!(got, want, "{printed}");
    for p in ["/init", "/usr/bin/sh", "/conf/initramfs.conf"] {
        assert!(got.contains_key(p), "{p} missing: {printed}");
    }
    eprintln!("{}: {} files; {}", s(&image), got.len(), printed.trim());
}

/// The kernel reads every frame of a zstd segment as one stream: a cpio archive cut in two
/// frames in the middle of a file reads whole.
#[test]
fn a_zstd_segment_of_two_frames_split_inside_a_file_reads_whole() {
    if tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    std::fs::create_dir_all(&main).unwrap();
    make_tree(&main);
    let cpio = dir.path().join("main.cpio");
    sh(&format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > '{}'",
        s(&main),
        s(&cpio)
    ));
    let image = dir.path().join("initrd.img");
    // 1,000,000 bytes in: inside usr/bin/big (3 MB, sorted before usr/bin/sh).
    sh(&format!(
        "{{ head -c 1000000 '{c}' | zstd -q; tail -c +1000001 '{c}' | zstd -q; }} > '{}'",
        s(&image),
        c = s(&cpio)
    ));
    let (got, printed) = policy(&image, dir.path());
    let whole = dir.path().join("whole.img");
    sh(&format!("zstd -q -c '{}' > '{}'", s(&cpio), s(&whole)));
    std::fs::create_dir_all(dir.path().join("w")).unwrap();
    let (want, _) = policy(&whole, &dir.path().join("w"));
    assert_eq!(got, want, "{printed}");
    assert_eq!(got, oracle(&whole, &dir.path().join("unpacked")));
    assert!(printed.contains("zstd 8 files"), "{printed}");
}

#[test]
fn bad_images_are_refused_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty", b"", "no cpio archive in the image (0 bytes)"),
        (
            "junk",
            b"\0\0\0\0hello world",
            "offset 4: neither a cpio archive",
        ),
        (
            "lz4",
            &[0x02, 0x21, 0x4c, 0x18, 1, 2],
            "offset 0: lz4 compression is not supported",
        ),
        (
            "badfield",
            b"070701000000zz",
            "header field ino \"000000zz\" is not 8 hex digits",
        ),
    ];
    for (name, bytes, want) in cases {
        let mut bytes = bytes.to_vec();
        if name == "badfield" {
            bytes.resize(110, b'0');
        }
        let f = dir.path().join(name);
        std::fs::write(&f, &bytes).unwrap();
        let o = fleet(&["runtime-policy", "create", "--initrd", &s(&f)]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", out(&o));
        assert!(out(&o).contains(want), "{name}: {}", out(&o));
    }
    // A truncated zstd image: the decompressor's error, with the segment's offset.
    if tools().is_some() {
        let img = dir.path().join("cut.img");
        sh(&format!(
            "cd '{}' && head -c 10000 /dev/urandom > f && echo f | cpio --quiet -o -H newc \
             | zstd -q | head -c 100 > '{}'",
            s(dir.path()),
            s(&img)
        ));
        let o = fleet(&["runtime-policy", "create", "--initrd", &s(&img)]);
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
        assert!(out(&o).contains("offset 0: zstd segment"), "{}", out(&o));
    }
}
