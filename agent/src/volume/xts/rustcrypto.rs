//! The portable XTS backend on RustCrypto's `aes` crate: the engine Vouch had before the
//! hand-written x86 backends, kept for CPUs without AES-NI and PCLMULQDQ and for other
//! architectures. `aes` itself picks AES-NI, VAES, ARMv8 AES or its constant-time
//! software ("fixslice") implementation at run time.
//!
//! Instead of calling the block cipher once per 16-byte block, the pass runs inside the
//! cipher's backend closure (`encrypt_with_backend`), so it is compiled into the code
//! path that `aes` picked and the cipher calls inline. For every batch of blocks that
//! backend processes at once (8 for AES-NI, 64 for VAES-512) it computes the batch's
//! tweaks (eight independent chains, multiplying by alpha^8 with a table), XORs them in,
//! encrypts the batch with one multi-block call, and XORs them again.

use aes::cipher::array::ArraySize;
use aes::cipher::consts::U16;
use aes::cipher::{
    Array, BlockCipherDecBackend, BlockCipherDecClosure, BlockCipherDecrypt, BlockCipherEncBackend,
    BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit,
};
use aes::{Aes128, Aes256, Block};

use super::{mul_alpha, Dir, XtsError};

/// The two AES keys of an XTS key, for either key size (boxed: the expanded keys are
/// large and the cipher is built once per volume). `aes` zeroizes them on drop.
pub(super) enum Keys {
    Aes128 {
        data: Box<Aes128>,
        tweak: Box<Aes128>,
    },
    Aes256 {
        data: Box<Aes256>,
        tweak: Box<Aes256>,
    },
}

impl Keys {
    /// Expands an XTS key of 32 or 64 bytes: the first half keys the data cipher, the
    /// second half the tweak cipher.
    pub(super) fn new(key: &[u8]) -> Result<Self, XtsError> {
        let bad = |_| XtsError::KeyLength(key.len());
        let (k1, k2) = key.split_at(key.len() / 2);
        Ok(match key.len() {
            32 => Keys::Aes128 {
                data: Box::new(Aes128::new_from_slice(k1).map_err(bad)?),
                tweak: Box::new(Aes128::new_from_slice(k2).map_err(bad)?),
            },
            64 => Keys::Aes256 {
                data: Box::new(Aes256::new_from_slice(k1).map_err(bad)?),
                tweak: Box::new(Aes256::new_from_slice(k2).map_err(bad)?),
            },
            n => return Err(XtsError::KeyLength(n)),
        })
    }

    /// Runs XTS over one unit whose length was checked to be a non-zero multiple of 16.
    pub(super) fn unit(&self, dir: Dir, unit: &mut [u8], tweak: u128) {
        match self {
            Keys::Aes128 { data, tweak: tk } => xts_unit(&**data, &**tk, dir, unit, tweak),
            Keys::Aes256 { data, tweak: tk } => xts_unit(&**data, &**tk, dir, unit, tweak),
        }
    }
}

/// `RED[h]` is the carry-less product of the byte `h` with x^7 + x^2 + x + 1: what a byte
/// shifted out of the top of a tweak folds back into its bottom.
static RED: [u16; 256] = reduction_table();

const fn reduction_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut h = 0;
    while h < 256 {
        let v = h as u16;
        table[h] = v ^ (v << 1) ^ (v << 2) ^ (v << 7);
        h += 1;
    }
    table
}

/// Multiplies a tweak by alpha^8: shift left by one byte and fold the byte shifted out
/// back in. The product has degree < 15, so no second reduction is needed.
#[inline(always)]
pub(super) fn mul_alpha8(t: u128) -> u128 {
    let top = (t >> 120) as u8;
    (t << 8) ^ u128::from(RED[usize::from(top)])
}

/// Number of independent tweak chains: the tweak of block `i + LANES` is the tweak of
/// block `i` times alpha^8, so eight multiplications run in parallel instead of one
/// serial chain.
const LANES: usize = 8;

/// Most blocks the cipher backend may process at once for which the fused path keeps
/// tweaks (the VAES-512 backend of `aes` works on 64 blocks).
const MAX_PAR: usize = 64;

/// Fills `tweaks` with `t, t*alpha, t*alpha^2, ...` and returns the tweak that follows.
#[inline(always)]
pub(super) fn tweak_run(t: u128, tweaks: &mut [u128]) -> u128 {
    let mut lanes = [0u128; LANES];
    let mut cur = t;
    for lane in lanes.iter_mut() {
        *lane = cur;
        cur = mul_alpha(cur);
    }
    let mut chunks = tweaks.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, slot) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *slot = *lane;
            *lane = mul_alpha8(*lane);
        }
    }
    // `lanes[0]` is now the tweak after the last whole chunk; finish any remainder serially.
    let mut next = lanes[0];
    for slot in chunks.into_remainder() {
        *slot = next;
        next = mul_alpha(next);
    }
    next
}

#[inline(always)]
fn xor_block(block: &mut Block, t: u128) {
    let bytes: [u8; 16] = (*block).into();
    *block = Array::from((u128::from_le_bytes(bytes) ^ t).to_le_bytes());
}

/// XTS over `blocks` starting at (encrypted) tweak `t`, `N` blocks per cipher call.
#[inline(always)]
fn xts_blocks<N: ArraySize>(
    blocks: &mut [Block],
    mut t: u128,
    mut par_op: impl FnMut(&mut Array<Block, N>),
    mut one_op: impl FnMut(&mut Block),
) {
    let mut tweaks = [0u128; MAX_PAR];
    let (pars, tail) = Array::<Block, N>::slice_as_chunks_mut(blocks);
    for par in pars.iter_mut() {
        match tweaks.get_mut(..N::USIZE) {
            Some(run) => {
                t = tweak_run(t, run);
                for (block, tw) in par.iter_mut().zip(run.iter()) {
                    xor_block(block, *tw);
                }
                par_op(par);
                for (block, tw) in par.iter_mut().zip(run.iter()) {
                    xor_block(block, *tw);
                }
            }
            None => {
                for block in par.iter_mut() {
                    xor_block(block, t);
                    one_op(block);
                    xor_block(block, t);
                    t = mul_alpha(t);
                }
            }
        }
    }
    for block in tail.iter_mut() {
        xor_block(block, t);
        one_op(block);
        xor_block(block, t);
        t = mul_alpha(t);
    }
}

/// The XTS pass over one data unit, handed to the cipher as a backend closure.
struct XtsPass<'a> {
    blocks: &'a mut [Block],
    tweak: u128,
}

impl BlockSizeUser for XtsPass<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for XtsPass<'_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        xts_blocks::<B::ParBlocksSize>(
            self.blocks,
            self.tweak,
            |par| backend.encrypt_par_blocks_inplace(par),
            |one| backend.encrypt_block_inplace(one),
        );
    }
}

impl BlockCipherDecClosure for XtsPass<'_> {
    #[inline(always)]
    fn call<B: BlockCipherDecBackend<BlockSize = U16>>(self, backend: &B) {
        xts_blocks::<B::ParBlocksSize>(
            self.blocks,
            self.tweak,
            |par| backend.decrypt_par_blocks_inplace(par),
            |one| backend.decrypt_block_inplace(one),
        );
    }
}

fn xts_unit<C>(data: &C, tweak_cipher: &C, dir: Dir, unit: &mut [u8], tweak: u128)
where
    C: BlockCipherEncrypt<BlockSize = U16> + BlockCipherDecrypt<BlockSize = U16>,
{
    let mut t_block: Block = Array::from(tweak.to_le_bytes());
    tweak_cipher.encrypt_block(&mut t_block);
    let tweak = u128::from_le_bytes(t_block.into());
    let (blocks, _tail) = Array::slice_as_chunks_mut(unit);
    let pass = XtsPass { blocks, tweak };
    match dir {
        Dir::Encrypt => data.encrypt_with_backend(pass),
        Dir::Decrypt => data.decrypt_with_backend(pass),
    }
}
