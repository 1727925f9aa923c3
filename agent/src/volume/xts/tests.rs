//! Known-answer tests for the XTS engine: IEEE P1619 vectors and OpenSSL-computed digests.

use super::rustcrypto::{mul_alpha8, tweak_run};
use super::*;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes256, Block};
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Every backend this CPU runs, each with a cipher for `key`.
fn all_backends(key: &[u8]) -> Vec<Xts> {
    Backend::available()
        .into_iter()
        .map(|b| Xts::with_backend(key, b).expect("available backend"))
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_default()
}

#[test]
fn ieee_p1619_vector_2_aes128() {
    let key = hex(&format!("{}{}", "11".repeat(16), "22".repeat(16)));
    for xts in all_backends(&key) {
        let mut data = [0x44u8; 32];
        xts.encrypt_unit(&mut data, 0x33_3333_3333)
            .expect("encrypt");
        assert_eq!(
            hex::encode(data),
            "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0",
            "{xts:?}"
        );
        xts.decrypt_unit(&mut data, 0x33_3333_3333)
            .expect("decrypt");
        assert_eq!(data, [0x44u8; 32], "{xts:?}");
    }
}

#[test]
fn ieee_p1619_vector_3_aes128() {
    let key = hex(&format!(
        "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0{}",
        "22".repeat(16)
    ));
    for xts in all_backends(&key) {
        let mut data = [0x44u8; 32];
        xts.encrypt_sectors(&mut data, 32, 0x33_3333_3333, 1)
            .expect("encrypt");
        assert_eq!(
            hex::encode(data),
            "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89",
            "{xts:?}"
        );
    }
}

/// Reference computed with OpenSSL's AES-256-XTS (via python-cryptography): key bytes
/// 0..63, plaintext byte i = (7 i + 3) mod 256, one 4096-byte unit with tweak 40.
#[test]
fn aes256_4096_byte_unit_matches_openssl() {
    let key: Vec<u8> = (0..64u8).collect();
    let plain: Vec<u8> = (0..4096u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
    for xts in all_backends(&key) {
        let mut data = plain.clone();
        // 4096-byte sector 5 of a data segment uses IV 8 * 5.
        xts.encrypt_sectors(&mut data, 4096, 40, 8)
            .expect("encrypt");
        assert_eq!(
            hex::encode(Sha256::digest(&data)),
            "846d1449964e04019f3606b238396f13833f945f6fc9f2f117706b3cc796c81d",
            "{xts:?}"
        );
        xts.decrypt_sectors(&mut data, 4096, 40, 8)
            .expect("decrypt");
        assert_eq!(data, plain, "{xts:?}");
    }
}

/// OpenSSL reference for a 512-byte unit with a large 64-bit IV.
#[test]
fn aes256_512_byte_unit_large_iv_matches_openssl() {
    let key: Vec<u8> = (0..64u32).map(|i| ((i * 13 + 5) % 256) as u8).collect();
    for xts in all_backends(&key) {
        let mut data: Vec<u8> = (0..512u32).map(|i| ((i * 31 + 1) % 256) as u8).collect();
        xts.encrypt_sectors(&mut data, 512, 0xfedc_ba98_7654_3210, 1)
            .expect("encrypt");
        assert_eq!(
            hex::encode(Sha256::digest(&data)),
            "096d8b2bada7ea0d0b6d77b218150fc1a18e707b443dee725898f432b05e40f5",
            "{xts:?}"
        );
    }
}

#[test]
fn multi_sector_equals_sector_by_sector() {
    let key: Vec<u8> = (100..164u8).collect();
    // 40 sectors: more than one batch of tweaks (16 sectors) on every backend.
    let plain: Vec<u8> = (0..40 * 4096u32).map(|i| (i % 251) as u8).collect();
    for xts in all_backends(&key) {
        let mut whole = plain.clone();
        xts.encrypt_sectors(&mut whole, 4096, 16, 8).expect("whole");
        for (n, chunk) in plain.chunks(4096).enumerate() {
            let mut one = chunk.to_vec();
            xts.encrypt_unit(&mut one, 16 + 8 * n as u128).expect("one");
            assert_eq!(
                one,
                whole[n * 4096..(n + 1) * 4096].to_vec(),
                "{xts:?} sector {n}"
            );
        }
    }
}

#[test]
fn rejects_bad_lengths() {
    for backend in Backend::available() {
        assert_eq!(
            Xts::with_backend(&[0u8; 48], backend).err(),
            Some(XtsError::KeyLength(48))
        );
        let xts = Xts::with_backend(&[1u8; 64], backend).expect("key");
        let mut buf = [0u8; 100];
        assert_eq!(
            xts.encrypt_sectors(&mut buf, 24, 0, 1),
            Err(XtsError::SectorSize(24))
        );
        assert_eq!(
            xts.encrypt_sectors(&mut buf, 32, 0, 1),
            Err(XtsError::PartialSector {
                len: 100,
                sector_size: 32
            })
        );
        let mut two = [0u8; 64];
        assert_eq!(
            xts.encrypt_sectors(&mut two, 32, u64::MAX, 1),
            Err(XtsError::IvOverflow {
                first: u64::MAX,
                step: 1,
                index: 1
            })
        );
        // Nothing was encrypted before the error.
        assert_eq!(two, [0u8; 64]);
        let mut three = [0u8; 96];
        assert_eq!(
            xts.encrypt_sectors(&mut three, 32, u64::MAX - 15, 8),
            Err(XtsError::IvOverflow {
                first: u64::MAX - 15,
                step: 8,
                index: 2
            })
        );
        assert_eq!(
            xts.encrypt_sectors(&mut three, 32, u64::MAX - 16, 8),
            Ok(())
        );
    }
}

#[test]
fn alpha8_equals_eight_alpha_steps() {
    let mut t: u128 = 0x8123_4567_89ab_cdef_f000_0000_0000_0001;
    for _ in 0..1000 {
        let mut slow = t;
        for _ in 0..8 {
            slow = mul_alpha(slow);
        }
        assert_eq!(mul_alpha8(t), slow);
        t = slow ^ (t >> 3);
    }
}

#[test]
fn tweak_run_matches_serial_chain_for_all_lengths() {
    let start: u128 = 0xdead_beef_0123_4567_89ab_cdef_fedc_ba98;
    for len in 0..40 {
        let mut run = vec![0u128; len];
        let next = tweak_run(start, &mut run);
        let mut t = start;
        for (i, got) in run.iter().enumerate() {
            assert_eq!(*got, t, "len {len} block {i}");
            t = mul_alpha(t);
        }
        assert_eq!(next, t, "len {len} next");
    }
}

/// Textbook XTS, one block per cipher call, as a reference for the batched engine.
fn reference_encrypt(key: &[u8], unit: &mut [u8], tweak: u128) {
    let k1 = Aes256::new_from_slice(&key[..32]).expect("k1");
    let k2 = Aes256::new_from_slice(&key[32..]).expect("k2");
    let mut tb = Block::from(tweak.to_le_bytes());
    k2.encrypt_block(&mut tb);
    let mut t = u128::from_le_bytes(tb.into());
    for chunk in unit.chunks_mut(BLOCK) {
        let mut b = Block::default();
        for (i, byte) in chunk.iter().enumerate() {
            b[i] = byte ^ t.to_le_bytes()[i];
        }
        k1.encrypt_block(&mut b);
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = b[i] ^ t.to_le_bytes()[i];
        }
        t = mul_alpha(t);
    }
}

#[test]
fn batched_engine_matches_reference_for_odd_unit_sizes() {
    let key: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(7))
        .collect();
    for xts in all_backends(&key) {
        for blocks in [
            1usize, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 129, 200, 256, 300,
        ] {
            let plain: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 17 % 256) as u8).collect();
            let mut fast = plain.clone();
            let mut slow = plain.clone();
            xts.encrypt_unit(&mut fast, 0x1234_5678 + blocks as u128)
                .expect("encrypt");
            reference_encrypt(&key, &mut slow, 0x1234_5678 + blocks as u128);
            assert_eq!(fast, slow, "{xts:?} {blocks} blocks");
            xts.decrypt_unit(&mut fast, 0x1234_5678 + blocks as u128)
                .expect("decrypt");
            assert_eq!(fast, plain, "{xts:?} {blocks} blocks round trip");
        }
    }
}

#[test]
fn mul_alpha_pow_equals_repeated_alpha() {
    let mut t: u128 = 0xf123_4567_89ab_cdef_8000_0000_0000_0001;
    for round in 0..200 {
        let mut slow = t;
        for k in 0..70u32 {
            assert_eq!(mul_alpha_pow(t, k), slow, "round {round}, alpha^{k}");
            slow = mul_alpha(slow);
        }
        t = slow ^ (t >> 5) ^ (u128::from(round as u32) << 100);
    }
}

/// On this machine: the backends the CPU runs include the one `detect` chose, and the
/// hand-written ones are there whenever their features are.
#[test]
fn detect_picks_the_fastest_available_backend() {
    let available = Backend::available();
    assert!(available.contains(&Backend::RustCrypto));
    assert_eq!(available.first(), Some(&Backend::detect()));
    assert_eq!(
        Xts::new(&[7u8; 64]).expect("key").backend(),
        Backend::detect()
    );
    for b in Backend::ALL {
        let has_all = cpu_flags()
            .iter()
            .filter(|(f, _)| b.cpu_features().contains(f))
            .all(|(_, on)| *on);
        assert_eq!(b.supported(), has_all, "{b}");
        match Xts::with_backend(&[7u8; 64], b) {
            Ok(x) => assert_eq!(x.backend(), b),
            Err(e) => assert!(!b.supported() && matches!(e, XtsError::Unsupported { .. })),
        }
    }
}

/// AVX-512 CPUs without VAES run `aes-ni`, which the bench measured faster than
/// `aes-ni-avx512` (module docs): every CPU that runs `aes-ni-avx512` also runs `aes-ni`,
/// and `aes-ni` comes first, so `detect` can never pick `aes-ni-avx512`.
#[test]
fn detect_prefers_aes_ni_over_aes_ni_avx512() {
    let pos = |b: Backend| Backend::ALL.iter().position(|x| *x == b).expect("listed");
    assert!(pos(Backend::AesNi) < pos(Backend::AesNiAvx512));
    assert!(pos(Backend::VaesAvx2) < pos(Backend::AesNi));
    for f in Backend::AesNi.cpu_features() {
        assert!(Backend::AesNiAvx512.cpu_features().contains(f), "{f}");
    }
    assert_ne!(Backend::detect(), Backend::AesNiAvx512);
}

/// Every backend agrees with every other (and decrypts what the others encrypted) on
/// random keys, sectors, sector counts and IVs, for 512- and 4096-byte sectors, AES-128
/// and AES-256, and on single units of any block count with random 128-bit tweaks. The
/// seed is printed on failure.
#[test]
fn backends_agree_on_random_sectors_and_tweaks() {
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let backends = Backend::available();
    eprintln!("xts backends compared: {backends:?}, seed {seed}");
    for round in 0..60 {
        let key_len = if rng.gen_bool(0.5) { 32 } else { 64 };
        let mut key = vec![0u8; key_len];
        rng.fill_bytes(&mut key);
        let sector = if rng.gen_bool(0.5) { 512 } else { 4096 };
        let count = rng.gen_range(1..=40usize);
        let step: u64 = if sector == 4096 { 8 } else { 1 };
        let first: u64 = match rng.gen_range(0..3) {
            0 => rng.gen_range(0..1 << 20),
            1 => u64::MAX - step * (count as u64 - 1) - rng.gen_range(0..1000),
            _ => rng.gen_range(0..u64::MAX / 2),
        };
        let mut plain = vec![0u8; sector * count];
        rng.fill_bytes(&mut plain);
        let what = format!(
            "seed {seed} round {round}: {key_len}-byte key, {count} x {sector}-byte sectors from IV {first}"
        );
        let ciphers: Vec<Xts> = backends
            .iter()
            .map(|b| Xts::with_backend(&key, *b).expect("backend"))
            .collect();
        let mut reference = plain.clone();
        ciphers[ciphers.len() - 1]
            .encrypt_sectors(&mut reference, sector, first, step)
            .expect("encrypt");
        assert_ne!(reference, plain, "{what}");
        for enc in &ciphers {
            let mut c = plain.clone();
            enc.encrypt_sectors(&mut c, sector, first, step)
                .expect("encrypt");
            assert!(c == reference, "{what}: {enc:?} encrypts differently");
            for dec in &ciphers {
                let mut p = c.clone();
                dec.decrypt_sectors(&mut p, sector, first, step)
                    .expect("decrypt");
                assert!(p == plain, "{what}: {dec:?} does not decrypt {enc:?}");
            }
        }
        // One unit of any whole number of blocks with a full 128-bit tweak.
        let blocks = rng.gen_range(1..=300usize);
        let tweak: u128 = rng.gen();
        let mut unit = vec![0u8; blocks * BLOCK];
        rng.fill_bytes(&mut unit);
        let mut unit_ref = unit.clone();
        ciphers[ciphers.len() - 1]
            .encrypt_unit(&mut unit_ref, tweak)
            .expect("encrypt");
        for x in &ciphers {
            let mut c = unit.clone();
            x.encrypt_unit(&mut c, tweak).expect("encrypt");
            assert!(
                c == unit_ref,
                "{what}: {x:?}, unit of {blocks} blocks, tweak {tweak:#x}"
            );
            x.decrypt_unit(&mut c, tweak).expect("decrypt");
            assert!(c == unit, "{what}: {x:?} unit round trip");
        }
    }
}
