//! K-quant layouts checked against llama.cpp-quantized fixture models: every
//! K-quant tensor of the phi3-tiny Q2_K / Q3_K_M / Q4_K_M / Q6_K files is
//! dequantized and compared with the same tensor of the F32 file (same
//! random weights). A wrong layout (scale packing, bit lanes, sub-block
//! order) gives an error as large as the weights themselves; a correct one
//! gives the quantization noise of the type.
//!
//! Also measures this crate's Q4_K / Q5_K / Q6_K weight quantizers against
//! llama.cpp's on the same source weights.

use half::f16;
use phi_kernels::formats::k_quants::*;
use std::collections::HashMap;
use std::path::PathBuf;

/// A minimal GGUF v2/v3 reader for the tests (header, metadata skipped,
/// tensor table, data section). Fixtures are trusted files; any malformed
/// input fails the test with a message.
struct MiniGguf {
    bytes: Vec<u8>,
    tensors: HashMap<String, (u32, Vec<u64>, usize)>,
    data_start: usize,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let end = self.pos.checked_add(n).expect("overflow");
        let s = self.b.get(self.pos..end).expect("truncated gguf");
        self.pos = end;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).expect("utf8")
    }
    /// Skips one value of type `t`; returns it when it is a u32 (for alignment).
    fn skip_value(&mut self, t: u32) -> Option<u64> {
        match t {
            0 | 1 | 7 => {
                self.take(1);
                None
            }
            2 | 3 => {
                self.take(2);
                None
            }
            4 => Some(self.u32() as u64),
            5 | 6 => {
                self.take(4);
                None
            }
            8 => {
                self.string();
                None
            }
            9 => {
                let et = self.u32();
                let n = self.u64();
                for _ in 0..n {
                    self.skip_value(et);
                }
                None
            }
            10..=12 => {
                self.take(8);
                None
            }
            _ => panic!("bad gguf value type {t}"),
        }
    }
}

impl MiniGguf {
    fn open(name: &str) -> MiniGguf {
        let path = fixtures().join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut c = Cursor { b: &bytes, pos: 0 };
        assert_eq!(c.take(4), b"GGUF");
        let version = c.u32();
        assert!(version == 2 || version == 3);
        let n_tensors = c.u64();
        let n_kv = c.u64();
        let mut alignment = 32u64;
        for _ in 0..n_kv {
            let key = c.string();
            let t = c.u32();
            let v = c.skip_value(t);
            if key == "general.alignment" {
                alignment = v.expect("alignment is u32");
            }
        }
        let mut tensors = HashMap::new();
        for _ in 0..n_tensors {
            let name = c.string();
            let nd = c.u32();
            let dims: Vec<u64> = (0..nd).map(|_| c.u64()).collect();
            let ty = c.u32();
            let off = c.u64() as usize;
            tensors.insert(name, (ty, dims, off));
        }
        let a = alignment as usize;
        let data_start = c.pos.div_ceil(a) * a;
        MiniGguf {
            bytes,
            tensors,
            data_start,
        }
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    /// (type id, element count, bytes).
    fn tensor(&self, name: &str) -> (u32, usize, &[u8]) {
        let (ty, dims, off) = &self.tensors[name];
        let n: u64 = dims.iter().product();
        let n = n as usize;
        let nbytes = match ty {
            0 => n * 4,
            10 => n / 256 * 84,
            11 => n / 256 * 110,
            12 => n / 256 * 144,
            13 => n / 256 * 176,
            14 => n / 256 * 210,
            _ => 0,
        };
        let start = self.data_start + off;
        (*ty, n, &self.bytes[start..start + nbytes])
    }

    fn f32_tensor(&self, name: &str) -> Vec<f32> {
        let (ty, n, data) = self.tensor(name);
        assert_eq!(ty, 0, "{name} is not F32");
        assert_eq!(data.len(), n * 4);
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

/// Reinterprets tensor bytes as blocks (copying, so alignment does not matter).
fn blocks<B: bytemuck::Pod>(data: &[u8]) -> Vec<B> {
    assert_eq!(data.len() % core::mem::size_of::<B>(), 0);
    data.chunks_exact(core::mem::size_of::<B>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}

fn dequantize(ty: u32, data: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n];
    match ty {
        10 => dequantize_row_q2_k(&blocks(data), &mut y),
        11 => dequantize_row_q3_k(&blocks(data), &mut y),
        12 => dequantize_row_q4_k(&blocks(data), &mut y),
        13 => dequantize_row_q5_k(&blocks(data), &mut y),
        14 => dequantize_row_q6_k(&blocks(data), &mut y),
        _ => panic!("not a K-quant: {ty}"),
    }
    y
}

fn rms(v: &[f32]) -> f64 {
    (v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / v.len() as f64).sqrt()
}

fn rms_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum();
    (s / a.len() as f64).sqrt()
}

/// Relative RMS error (error RMS / weight RMS) a correct dequantizer gives on
/// these random weights, per type: loose upper bounds (measured values are
/// about half), far below the ~1.0+ of a layout bug.
fn max_rel_rms(ty: u32) -> f64 {
    match ty {
        10 => 0.45, // Q2_K
        11 => 0.25, // Q3_K
        12 => 0.12, // Q4_K
        13 => 0.06, // Q5_K
        14 => 0.03, // Q6_K
        _ => unreachable!(),
    }
}

#[test]
fn fixture_k_quants_dequantize_close_to_f32() {
    let f32m = MiniGguf::open("phi3-tiny-f32.gguf");
    let mut seen = [0usize; 15];
    for file in [
        "phi3-tiny-q2_k.gguf",
        "phi3-tiny-q3_k_m.gguf",
        "phi3-tiny-q4_k_m.gguf",
        "phi3-tiny-q6_k.gguf",
    ] {
        let q = MiniGguf::open(file);
        for name in q.names() {
            let (ty, n, data) = q.tensor(&name);
            if !(10..=14).contains(&ty) {
                continue;
            }
            let reference = f32m.f32_tensor(&name);
            assert_eq!(reference.len(), n, "{file} {name}");
            let y = dequantize(ty, data, n);
            let rel = rms_diff(&y, &reference) / rms(&reference);
            // Every element's error is bounded by the sub-block's range too.
            let max_abs_ref = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let max_err = y
                .iter()
                .zip(&reference)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            println!("{file} {name} type {ty}: rel rms {rel:.4}, max err {max_err:.4} (max |w| {max_abs_ref:.4})");
            assert!(
                rel < max_rel_rms(ty),
                "{file} {name} (type {ty}): relative RMS error {rel}"
            );
            assert!(max_err < max_abs_ref, "{file} {name}: max err {max_err}");
            seen[ty as usize] += 1;
        }
    }
    for (ty, &count) in seen.iter().enumerate().skip(10) {
        assert!(count > 0, "no fixture tensor of type {ty} was checked");
    }
}

#[test]
fn fixture_vec_dot_matches_dequantized_dot() {
    // The integer dot of each fixture row with Q8_K activations must equal the
    // float dot of the dequantized row with the dequantized activations (up
    // to float summation error).
    let q = MiniGguf::open("phi3-tiny-q3_k_m.gguf");
    let mut checked = 0;
    for name in q.names() {
        let (ty, n, data) = q.tensor(&name);
        if !(10..=14).contains(&ty) {
            continue;
        }
        let cols = q.tensors[&name].1[0] as usize;
        let rows = n / cols;
        let w = dequantize(ty, data, n);
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut xq = vec![BlockQ8_K::zeroed(); cols / QK_K];
        quantize_row_q8_k(&x, &mut xq);
        let mut xd = vec![0.0f32; cols];
        dequantize_row_q8_k(&xq, &mut xd);
        let row_bytes = data.len() / rows;
        for r in (0..rows).step_by(37) {
            let row = &data[r * row_bytes..(r + 1) * row_bytes];
            let got = match ty {
                10 => vec_dot_q2_k_q8_k(&blocks(row), &xq),
                11 => vec_dot_q3_k_q8_k(&blocks(row), &xq),
                12 => vec_dot_q4_k_q8_k(&blocks(row), &xq),
                13 => vec_dot_q5_k_q8_k(&blocks(row), &xq),
                14 => vec_dot_q6_k_q8_k(&blocks(row), &xq),
                _ => unreachable!(),
            };
            let wr = &w[r * cols..(r + 1) * cols];
            let want: f64 = wr.iter().zip(&xd).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = wr
                .iter()
                .zip(&xd)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            assert!(
                (got as f64 - want).abs() <= 1e-5 * mag + 1e-6,
                "{name} row {r}: {got} vs {want}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// Quantizes `src` with one of this crate's quantizers and returns the
/// dequantized values.
fn roundtrip(ty: u32, src: &[f32]) -> Vec<f32> {
    let nb = src.len() / QK_K;
    let mut y = vec![0.0f32; src.len()];
    match ty {
        10 => {
            let mut b = vec![BlockQ2_K::zeroed(); nb];
            quantize_row_q2_k(src, &mut b);
            dequantize_row_q2_k(&b, &mut y);
        }
        11 => {
            let mut b = vec![BlockQ3_K::zeroed(); nb];
            quantize_row_q3_k(src, &mut b);
            dequantize_row_q3_k(&b, &mut y);
        }
        12 => {
            let mut b = vec![BlockQ4_K::zeroed(); nb];
            quantize_row_q4_k(src, &mut b);
            dequantize_row_q4_k(&b, &mut y);
        }
        13 => {
            let mut b = vec![BlockQ5_K::zeroed(); nb];
            quantize_row_q5_k(src, &mut b);
            dequantize_row_q5_k(&b, &mut y);
        }
        14 => {
            let mut b = vec![BlockQ6_K::zeroed(); nb];
            quantize_row_q6_k(src, &mut b);
            dequantize_row_q6_k(&b, &mut y);
        }
        _ => unreachable!(),
    }
    y
}

#[test]
fn quantizers_match_llama_cpp_error() {
    let f32m = MiniGguf::open("phi3-tiny-f32.gguf");
    let mut totals: HashMap<u32, (f64, f64)> = HashMap::new();
    for file in [
        "phi3-tiny-q4_k_m.gguf",
        "phi3-tiny-q6_k.gguf",
        "phi3-tiny-q3_k_m.gguf",
        "phi3-tiny-q2_k.gguf",
    ] {
        let q = MiniGguf::open(file);
        for name in q.names() {
            let (ty, n, data) = q.tensor(&name);
            if !(10..=14).contains(&ty) {
                continue;
            }
            let src = f32m.f32_tensor(&name);
            let theirs = rms_diff(&dequantize(ty, data, n), &src);
            let ours = rms_diff(&roundtrip(ty, &src), &src);
            println!(
                "{file} {name} type {ty}: ours {ours:.6} llama.cpp {theirs:.6} ratio {:.4}",
                ours / theirs
            );
            let t = totals.entry(ty).or_default();
            t.0 += ours * ours * n as f64;
            t.1 += theirs * theirs * n as f64;
            assert!(
                ours <= theirs * 1.10,
                "{name}: our error {ours} vs llama.cpp {theirs}"
            );
        }
    }
    for (ty, (o, t)) in totals {
        println!(
            "type {ty}: overall RMS ratio ours/llama.cpp = {:.4}",
            (o / t).sqrt()
        );
    }
}

#[test]
fn quantizers_handle_degenerate_blocks() {
    // Zeros, constants, a single spike, all negative: finite, and zeros stay zero.
    let mut cases: Vec<Vec<f32>> = vec![
        vec![0.0; QK_K],
        vec![1.5; QK_K],
        vec![-2.0; QK_K],
        (0..QK_K).map(|i| if i == 77 { 9.0 } else { 0.0 }).collect(),
        (0..QK_K).map(|i| -(i as f32) * 0.01 - 0.5).collect(),
    ];
    cases.push(
        (0..QK_K)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
            .collect(),
    );
    for ty in [10u32, 11, 12, 13, 14] {
        for c in &cases {
            let y = roundtrip(ty, c);
            assert!(y.iter().all(|v| v.is_finite()), "type {ty}");
            let err = rms_diff(&y, c);
            let scale = c.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            // 2 and 3 bits resolve a sub-block's range into 4 / 8 levels.
            let rel = match ty {
                10 => 0.25,
                11 => 0.15,
                _ => 0.1,
            };
            assert!(
                err <= rel * scale + 1e-12,
                "type {ty}: err {err} scale {scale} {c:?}"
            );
        }
    }
}

#[test]
fn q8_k_quantize_matches_definition() {
    let x: Vec<f32> = (0..3 * QK_K)
        .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 13) as f32))
        .collect();
    let mut b = vec![BlockQ8_K::zeroed(); 3];
    quantize_row_q8_k(&x, &mut b);
    for (blk, src) in b.iter().zip(x.chunks_exact(QK_K)) {
        // The extreme element maps to exactly -127.
        let (imax, _) = src
            .iter()
            .enumerate()
            .fold((0, 0.0f32), |(bi, bv), (i, &v)| {
                if v.abs() > bv {
                    (i, v.abs())
                } else {
                    (bi, bv)
                }
            });
        assert_eq!(blk.qs[imax], -127);
        for j in 0..16 {
            let s: i32 = blk.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            assert_eq!(blk.bsums[j] as i32, s);
        }
        for (q, &v) in blk.qs.iter().zip(src) {
            // Round trip within half a step.
            assert!((blk.d * *q as f32 - v).abs() <= blk.d.abs() * 0.5 * 1.0001);
        }
    }
    // Ties round to even like ggml's nearest_int.
    assert_eq!(nearest_int(2.5), 2);
    assert_eq!(nearest_int(3.5), 4);
    assert_eq!(nearest_int(-2.5), -2);
    assert_eq!(nearest_int(-0.4), 0);
    // All-zero block.
    let mut z = [BlockQ8_K::zeroed()];
    quantize_row_q8_k(&[0.0; QK_K], &mut z);
    assert_eq!(z[0].d, 0.0);
    assert!(z[0].qs.iter().all(|&q| q == 0) && z[0].bsums.iter().all(|&s| s == 0));
}

#[test]
fn scale_packing_roundtrips() {
    let mut seed = 12345u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u8
    };
    for _ in 0..200 {
        let sc: [u8; 8] = core::array::from_fn(|_| next() & 63);
        let mn: [u8; 8] = core::array::from_fn(|_| next() & 63);
        let packed = pack_scales_mins_k4(&sc, &mn);
        assert_eq!(unpack_scales_mins_k4(&packed), (sc, mn));
        let s3: [i8; 16] = core::array::from_fn(|_| (next() & 63) as i8 - 32);
        assert_eq!(unpack_scales_q3_k(&pack_scales_q3_k(&s3)), s3);
    }
    // f16 fields are where ggml puts them.
    let mut b = BlockQ4_K::zeroed();
    b.d = f16::from_f32(1.0);
    let bytes = bytemuck::bytes_of(&b);
    assert_eq!(&bytes[0..2], &f16::from_f32(1.0).to_le_bytes());
}

use bytemuck::Zeroable;

/// Cross-check against an independent implementation of the layouts:
/// 64 super-blocks of random bytes per type (finite random f16 scales),
/// dequantized by gguf-py 0.19's numpy dequantizers (`gguf.quants.dequantize`,
/// llama.cpp's Python package). The constants are FNV-1a hashes of gguf-py's
/// f32 output; ours must be bit-identical. This covers bit patterns the
/// fixture files never produce, and IQ4_NL / IQ4_XS, which no fixture holds.
#[test]
fn dequantizers_match_gguf_py_on_random_blocks() {
    const EXPECTED: [(&str, u64); 7] = [
        ("Q2_K", 0x17e7facaf738d1ab),
        ("Q3_K", 0x92462f118474195f),
        ("Q4_K", 0xd3c6821066d5bc9d),
        ("Q5_K", 0xf2e2ac25fa6cbd56),
        ("Q6_K", 0x849651acf14f2a18),
        ("IQ4_XS", 0x133868abec4dd87b),
        ("IQ4_NL", 0x7a8994bb2d0356e9),
    ];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for (name, want) in EXPECTED {
        let ty = phi_kernels::GgmlType::from_name(name).unwrap();
        // Byte offsets of the f16 scale fields in one block.
        let f16_fields: &[usize] = match name {
            "Q2_K" => &[80, 82],
            "Q3_K" => &[108],
            "Q4_K" | "Q5_K" => &[0, 2],
            "Q6_K" => &[208],
            _ => &[0],
        };
        let n = 64 * QK_K;
        let nbytes = ty.bytes_for(n as u64).unwrap() as usize;
        let mut w: Vec<u8> = (0..nbytes).map(|_| next() as u8).collect();
        for blk in w.chunks_exact_mut(ty.type_size()) {
            for &off in f16_fields {
                let v = f16::from_f32((next() % 2001) as f32 * 1e-3 - 1.0);
                blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        let mut y = vec![0.0f32; n];
        phi_kernels::dequantize_row(ty, &w, &mut y).unwrap();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in y.iter().flat_map(|v| v.to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(h, want, "{name}: dequantization differs from gguf-py's");
    }
}

#[test]
fn iq4_quantizers_on_fixture_weights() {
    use phi_kernels::formats::iq4::*;
    let f32m = MiniGguf::open("phi3-tiny-f32.gguf");
    let (mut e_nl, mut e_xs, mut e_q4k, mut norm) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for name in f32m.names() {
        let (ty, n, _) = f32m.tensor(&name);
        if ty != 0 || n % QK_K != 0 || !name.ends_with(".weight") || name.contains("norm") {
            continue;
        }
        let src = f32m.f32_tensor(&name);
        let mut nl = vec![BlockIQ4_NL::default(); n / QK4_NL];
        quantize_row_iq4_nl(&src, &mut nl);
        let mut y_nl = vec![0.0f32; n];
        dequantize_row_iq4_nl(&nl, &mut y_nl);
        let mut xs = vec![BlockIQ4_XS::zeroed(); n / QK_K];
        quantize_row_iq4_xs(&src, &mut xs);
        let mut y_xs = vec![0.0f32; n];
        dequantize_row_iq4_xs(&xs, &mut y_xs);
        let y_q4k = roundtrip(12, &src);
        let r = rms(&src);
        let (a, b, c) = (
            rms_diff(&y_nl, &src) / r,
            rms_diff(&y_xs, &src) / r,
            rms_diff(&y_q4k, &src) / r,
        );
        println!("{name}: rel RMS error IQ4_NL {a:.4}, IQ4_XS {b:.4}, Q4_K {c:.4}");
        // 4.25–4.5 bits per weight: comparable to Q4_K (4.5 bpw).
        assert!(a < 0.09 && b < 0.09, "{name}: IQ4_NL {a}, IQ4_XS {b}");
        e_nl += a * a * n as f64;
        e_xs += b * b * n as f64;
        e_q4k += c * c * n as f64;
        norm += n as f64;
    }
    assert!(norm > 0.0);
    println!(
        "overall rel RMS: IQ4_NL {:.4}, IQ4_XS {:.4}, Q4_K {:.4}",
        (e_nl / norm).sqrt(),
        (e_xs / norm).sqrt(),
        (e_q4k / norm).sqrt()
    );
    // Degenerate inputs stay finite and zeros stay zero.
    for c in [
        vec![0.0f32; QK_K],
        vec![3.0; QK_K],
        (0..QK_K).map(|i| if i == 5 { -7.0 } else { 0.0 }).collect(),
    ] {
        let mut nl = vec![BlockIQ4_NL::default(); QK_K / QK4_NL];
        quantize_row_iq4_nl(&c, &mut nl);
        let mut xs = [BlockIQ4_XS::zeroed()];
        quantize_row_iq4_xs(&c, &mut xs);
        let (mut a, mut b) = (vec![0.0f32; QK_K], vec![0.0f32; QK_K]);
        dequantize_row_iq4_nl(&nl, &mut a);
        dequantize_row_iq4_xs(&xs, &mut b);
        let scale = c.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        for y in [&a, &b] {
            assert!(y.iter().all(|v| v.is_finite()));
            assert!(rms_diff(y, &c) <= 0.1 * scale + 1e-12, "{c:?} -> {y:?}");
        }
    }
}
