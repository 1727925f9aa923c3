//! Known-answer tests for the XTS engine: IEEE P1619 vectors and OpenSSL-computed digests.

use super::*;
use sha2::{Digest, Sha256};

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_default()
}

#[test]
fn ieee_p1619_vector_2_aes128() {
    let key = hex(&format!("{}{}", "11".repeat(16), "22".repeat(16)));
    let xts = Xts::new(&key).expect("32-byte key");
    let mut data = [0x44u8; 32];
    xts.encrypt_unit(&mut data, 0x33_3333_3333)
        .expect("encrypt");
    assert_eq!(
        hex::encode(data),
        "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0"
    );
    xts.decrypt_unit(&mut data, 0x33_3333_3333)
        .expect("decrypt");
    assert_eq!(data, [0x44u8; 32]);
}

#[test]
fn ieee_p1619_vector_3_aes128() {
    let key = hex(&format!(
        "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0{}",
        "22".repeat(16)
    ));
    let xts = Xts::new(&key).expect("32-byte key");
    let mut data = [0x44u8; 32];
    xts.encrypt_sectors(&mut data, 32, 0x33_3333_3333, 1)
        .expect("encrypt");
    assert_eq!(
        hex::encode(data),
        "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89"
    );
}

/// Reference computed with OpenSSL's AES-256-XTS (via python-cryptography): key bytes
/// 0..63, plaintext byte i = (7 i + 3) mod 256, one 4096-byte unit with tweak 40.
#[test]
fn aes256_4096_byte_unit_matches_openssl() {
    let key: Vec<u8> = (0..64u8).collect();
    let xts = Xts::new(&key).expect("64-byte key");
    let plain: Vec<u8> = (0..4096u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
    let mut data = plain.clone();
    // 4096-byte sector 5 of a data segment uses IV 8 * 5.
    xts.encrypt_sectors(&mut data, 4096, 40, 8)
        .expect("encrypt");
    assert_eq!(
        hex::encode(Sha256::digest(&data)),
        "846d1449964e04019f3606b238396f13833f945f6fc9f2f117706b3cc796c81d"
    );
    xts.decrypt_sectors(&mut data, 4096, 40, 8)
        .expect("decrypt");
    assert_eq!(data, plain);
}

/// OpenSSL reference for a 512-byte unit with a large 64-bit IV.
#[test]
fn aes256_512_byte_unit_large_iv_matches_openssl() {
    let key: Vec<u8> = (0..64u32).map(|i| ((i * 13 + 5) % 256) as u8).collect();
    let xts = Xts::new(&key).expect("64-byte key");
    let mut data: Vec<u8> = (0..512u32).map(|i| ((i * 31 + 1) % 256) as u8).collect();
    xts.encrypt_sectors(&mut data, 512, 0xfedc_ba98_7654_3210, 1)
        .expect("encrypt");
    assert_eq!(
        hex::encode(Sha256::digest(&data)),
        "096d8b2bada7ea0d0b6d77b218150fc1a18e707b443dee725898f432b05e40f5"
    );
}

#[test]
fn multi_sector_equals_sector_by_sector() {
    let key: Vec<u8> = (100..164u8).collect();
    let xts = Xts::new(&key).expect("64-byte key");
    let plain: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
    let mut whole = plain.clone();
    xts.encrypt_sectors(&mut whole, 4096, 16, 8).expect("whole");
    for (n, chunk) in plain.chunks(4096).enumerate() {
        let mut one = chunk.to_vec();
        xts.encrypt_unit(&mut one, 16 + 8 * n as u128).expect("one");
        assert_eq!(one, whole[n * 4096..(n + 1) * 4096].to_vec(), "sector {n}");
    }
}

#[test]
fn rejects_bad_lengths() {
    assert_eq!(Xts::new(&[0u8; 48]).err(), Some(XtsError::KeyLength(48)));
    let xts = Xts::new(&[1u8; 64]).expect("key");
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
    let xts = Xts::new(&key).expect("key");
    for blocks in [1usize, 7, 8, 9, 63, 64, 65, 129, 200, 256, 300] {
        let plain: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 17 % 256) as u8).collect();
        let mut fast = plain.clone();
        let mut slow = plain.clone();
        xts.encrypt_unit(&mut fast, 0x1234_5678 + blocks as u128)
            .expect("encrypt");
        reference_encrypt(&key, &mut slow, 0x1234_5678 + blocks as u128);
        assert_eq!(fast, slow, "{blocks} blocks");
        xts.decrypt_unit(&mut fast, 0x1234_5678 + blocks as u128)
            .expect("decrypt");
        assert_eq!(fast, plain, "{blocks} blocks round trip");
    }
}
