//! The SIMD Q8_K activation quantizer (`table::ops(..).quantize_act` of the
//! K-quants on x86 with AVX2, on aarch64 with NEON) against the scalar one, byte for byte: ties
//! in magnitude of either sign, zero blocks, outliers, tiny and huge
//! values, NaN and infinities.

use phi_kernels::dispatch::is_available;
use phi_kernels::{table, GgmlType, Isa};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// One block of 256 values of kind `k`.
fn block(rng: &mut Rng, k: u64) -> Vec<f32> {
    let scale = 10f32.powi((rng.next() % 9) as i32 - 4);
    let mut v: Vec<f32> = (0..256).map(|_| rng.f32() * scale).collect();
    match k {
        0 => {}
        1 => v.fill(0.0),
        2 => {
            // Equal magnitudes of both signs: the first one decides the sign.
            let m = scale * 2.0;
            let (i, j) = ((rng.next() % 256) as usize, (rng.next() % 256) as usize);
            v[i] = -m;
            v[j] = m;
        }
        3 => {
            // All ±same value: rounding ties everywhere.
            let m = rng.f32() * scale;
            for (i, x) in v.iter_mut().enumerate() {
                *x = if i % 3 == 0 { -m } else { m };
            }
        }
        4 => {
            // Values exactly between two quantization steps.
            let d = scale / 127.0;
            for (i, x) in v.iter_mut().enumerate() {
                *x = ((i % 255) as f32 - 127.0 + 0.5) * d;
            }
        }
        5 => v[(rng.next() % 256) as usize] = f32::NAN,
        6 => v[(rng.next() % 256) as usize] = f32::INFINITY,
        7 => v[(rng.next() % 256) as usize] = f32::NEG_INFINITY,
        8 => {
            v.fill(-0.0);
            v[7] = f32::MIN_POSITIVE;
        }
        9 => {
            // A signalling NaN (and a quiet one of the other sign).
            v[(rng.next() % 256) as usize] = f32::from_bits(0x7f80_0001);
            v[(rng.next() % 256) as usize] = f32::from_bits(0xffc0_0000);
        }
        _ => v[(rng.next() % 256) as usize] *= 1e6,
    }
    v
}

#[test]
fn simd_q8_k_quantizer_is_bit_identical_to_scalar() {
    let scalar = table::ops(GgmlType::Q4_K, Isa::Scalar)
        .unwrap()
        .quantize_act;
    let mut checked = 0;
    for isa in [Isa::Avx2, Isa::Avx512, Isa::Neon] {
        if !is_available(isa) {
            eprintln!("{isa:?} not available: not checked");
            continue;
        }
        let simd = table::ops(GgmlType::Q4_K, isa).unwrap().quantize_act;
        assert_ne!(
            simd as usize, scalar as usize,
            "{isa:?} has a SIMD Q8_K quantizer"
        );
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ isa as u64);
        for round in 0..400u64 {
            let nb = 1 + (rng.next() % 12) as usize;
            let mut x = Vec::new();
            for b in 0..nb {
                x.extend(block(&mut rng, (round + b as u64) % 11));
            }
            let (mut a, mut b) = (vec![0xAAu8; nb * 292], vec![0x55u8; nb * 292]);
            scalar(&x, &mut a);
            simd(&x, &mut b);
            assert_eq!(a, b, "{isa:?} round {round}: SIMD Q8_K bytes differ");
            checked += 1;
        }
    }
    eprintln!("{checked} rows compared");
}
