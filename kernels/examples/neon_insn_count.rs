//! Runs each NEON packed K-quant tier once on one 16-row group (2
//! super-blocks) for 1 and 4 tokens, so that an instruction trace under
//! qemu (`-d in_asm,exec,nochain`) can count the instructions the tile
//! functions execute per super-block, row and token.

fn main() {
    #[cfg(target_arch = "aarch64")]
    {
        use phi_kernels::packed::{matmul_packed, NeonDot, PackedWeights};
        use phi_kernels::{GgmlType, Scratch, Weights};
        // Optional filter: `TYPE TIER NT` (e.g. `Q4_K Dotprod 4`).
        let args: Vec<String> = std::env::args().skip(1).collect();
        let want = |ty: GgmlType, tier: NeonDot, nt: usize| {
            args.len() < 3
                || (args[0] == ty.to_string()
                    && args[1] == format!("{tier:?}")
                    && args[2] == nt.to_string())
        };
        let (rows, cols) = (16, 512);
        for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let mut data = vec![0u8; rows * cols / 256 * ty.type_size()];
            let mut s = 0x1234_5678u32;
            for b in data.iter_mut() {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                *b = s as u8;
            }
            // Finite f16 scales: 0x2000 = 2^-7 at every d / dmin.
            for blk in data.chunks_exact_mut(ty.type_size()) {
                let at: &[usize] = match ty {
                    GgmlType::Q6_K => &[208],
                    _ => &[0, 2],
                };
                for &i in at {
                    blk[i..i + 2].copy_from_slice(&0x2000u16.to_le_bytes());
                }
            }
            let w = Weights::new(ty, rows, cols, &data).unwrap();
            for tier in NeonDot::ALL {
                if !tier.available() {
                    continue;
                }
                let mut p = PackedWeights::pack(&w).unwrap().unwrap();
                p.set_neon_dot(tier).unwrap();
                for nt in [1, 4] {
                    if !want(ty, tier, nt) {
                        continue;
                    }
                    let x: Vec<f32> = (0..cols * nt).map(|i| (i % 7) as f32 - 3.0).collect();
                    let mut y = vec![0f32; rows * nt];
                    let mut sc = Scratch::default();
                    matmul_packed(&p, &x, nt, &mut y, &mut sc).unwrap();
                    println!("{ty} {tier:?} nt={nt} y0={}", y[0]);
                }
            }
        }
    }
}
