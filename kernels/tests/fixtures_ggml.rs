//! Against llama.cpp's own files: the fixture GGUFs were quantized by
//! llama.cpp (ggml's `*_ref` quantizers), so dequantizing a block and
//! quantizing it again with our quantizer must give back the same bytes,
//! and `matmul` on real tensors must equal an f64 product.

use phi_gguf::Gguf;
use phi_kernels::formats::{q4_0, q4_1, q5_0, q5_1, q8_0};
use phi_kernels::{
    dequantize_row, dispatch, matmul_with_isa, quantize_activations, table, GgmlType, Isa, Scratch,
    Weights,
};
use std::path::PathBuf;

fn model(name: &str) -> Gguf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(name);
    Gguf::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Re-quantizes the dequantized values of one block of `ty`.
fn requant(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    macro_rules! q {
        ($b:ty, $f:path) => {{
            let mut v = vec![<$b>::default(); x.len() / 32];
            $f(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }};
    }
    match ty {
        GgmlType::Q4_0 => q!(q4_0::BlockQ4_0, q4_0::quantize_row_q4_0),
        GgmlType::Q4_1 => q!(q4_1::BlockQ4_1, q4_1::quantize_row_q4_1),
        GgmlType::Q5_0 => q!(q5_0::BlockQ5_0, q5_0::quantize_row_q5_0),
        GgmlType::Q5_1 => q!(q5_1::BlockQ5_1, q5_1::quantize_row_q5_1),
        GgmlType::Q8_0 => q!(q8_0::BlockQ8_0, q8_0::quantize_row_q8_0),
        _ => unreachable!(),
    }
}

/// Dequantize → re-quantize reproduces llama.cpp's bytes.
///
/// Not asserted at 100%: re-quantizing works from the f16-rounded scale, so
/// `1/d` can differ from the original `1/d` in the last bit and a value that
/// sat within an ulp of a rounding boundary can flip one step (rare).
#[test]
fn requantizing_reproduces_llama_cpp_blocks() {
    for (file, ty) in [
        ("phi3-tiny-q4_0.gguf", GgmlType::Q4_0),
        ("phi3-tiny-q4_1.gguf", GgmlType::Q4_1),
        ("phi3-tiny-q5_0.gguf", GgmlType::Q5_0),
        ("phi3-tiny-q5_1.gguf", GgmlType::Q5_1),
        ("phi3-tiny-q8_0.gguf", GgmlType::Q8_0),
        ("phi3-hd96-q4_0.gguf", GgmlType::Q4_0),
    ] {
        let g = model(file);
        let (mut same, mut total) = (0usize, 0usize);
        for info in g.tensors().iter().filter(|t| t.ggml_type == ty) {
            let t = g.tensor(&info.name).unwrap();
            let n = info.n_elements() as usize;
            let mut x = vec![0.0f32; n];
            dequantize_row(ty, t.data, &mut x).unwrap();
            let back = requant(ty, &x);
            let bs = ty.type_size();
            for (a, b) in t.data.chunks(bs).zip(back.chunks(bs)) {
                total += 1;
                same += (a == b) as usize;
            }
        }
        assert!(total > 1000, "{file}: only {total} {ty} blocks");
        let frac = same as f64 / total as f64;
        eprintln!(
            "{file}: {same}/{total} {ty} blocks bit-identical ({:.4}%)",
            frac * 100.0
        );
        assert!(frac >= 0.99, "{file}: only {same}/{total} blocks reproduce");
    }
}

/// `matmul` on every 2-D tensor of our types in the fixtures, on scalar and
/// the best SIMD path, against f64 on the dequantized weights:
/// * with the activations as `matmul` quantized them: |Δ| ≤ 2e-5·Σ|terms|;
/// * with the raw f32 activations: |Δ| additionally ≤ Σ|w|·|x − x̂|.
#[test]
fn matmul_on_fixture_tensors_matches_f64() {
    let files = [
        "phi3-tiny-f32.gguf",
        "phi3-tiny-f16.gguf",
        "phi3-tiny-q8_0.gguf",
        "phi3-tiny-q4_0.gguf",
        "phi3-tiny-q4_1.gguf",
        "phi3-tiny-q5_0.gguf",
        "phi3-tiny-q5_1.gguf",
        "phi3-hd96-q4_0.gguf",
    ];
    let mut checked = 0;
    for file in files {
        let g = model(file);
        for info in g.tensors() {
            let ty = info.ggml_type;
            if info.dims.len() != 2 || table::ops(ty, Isa::Scalar).is_none() {
                continue;
            }
            let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
            let t = g.tensor(&info.name).unwrap();
            let w = Weights::new(ty, rows, cols, t.data).unwrap();
            let nt = 3;
            let x: Vec<f32> = (0..cols * nt)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let mut wd = vec![0.0f32; rows * cols];
            dequantize_row(ty, t.data, &mut wd).unwrap();
            let act = table::ops(ty, Isa::Scalar).unwrap().act;
            let mut xd = vec![0.0f32; cols * nt];
            for tk in 0..nt {
                let q = quantize_activations(ty, &x[tk * cols..(tk + 1) * cols]).unwrap();
                dequantize_row(act, &q, &mut xd[tk * cols..(tk + 1) * cols]).unwrap();
            }
            for isa in [Isa::Scalar, dispatch::best()] {
                let mut y = vec![0.0f32; rows * nt];
                matmul_with_isa(isa, &w, &x, nt, &mut y, &mut Scratch::default()).unwrap();
                for tk in 0..nt {
                    for r in 0..rows {
                        let wr = &wd[r * cols..(r + 1) * cols];
                        let xr = &xd[tk * cols..(tk + 1) * cols];
                        let xo = &x[tk * cols..(tk + 1) * cols];
                        let exact: f64 =
                            wr.iter().zip(xr).map(|(a, b)| *a as f64 * *b as f64).sum();
                        let raw: f64 = wr.iter().zip(xo).map(|(a, b)| *a as f64 * *b as f64).sum();
                        let mag: f64 = wr
                            .iter()
                            .zip(xr)
                            .map(|(a, b)| (*a as f64 * *b as f64).abs())
                            .sum();
                        let qerr: f64 = wr
                            .iter()
                            .zip(xo.iter().zip(xr))
                            .map(|(a, (b, c))| (*a as f64).abs() * (*b as f64 - *c as f64).abs())
                            .sum();
                        // Q4_1/Q5_1: the m·s term uses s rounded to f16.
                        let slack = if act == GgmlType::Q8_1 {
                            1e-3 * mag
                        } else {
                            0.0
                        };
                        let got = y[tk * rows + r] as f64;
                        let tol = 2e-5 * mag + slack + 1e-6;
                        assert!(
                            (got - exact).abs() <= tol,
                            "{file} {} ({ty}) on {isa}: row {r} tok {tk}: {got} vs {exact}",
                            info.name
                        );
                        assert!((got - raw).abs() <= tol + qerr * 1.01);
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} tensors checked");
}

/// The strong test: quantizing the F32 model's weights with our reference
/// quantizers gives exactly the bytes llama-quantize wrote in each file
/// (same weights, quantized by llama.cpp without an importance matrix).
#[test]
fn quantizing_f32_weights_gives_llama_cpp_bytes() {
    let f32m = model("phi3-tiny-f32.gguf");
    for (file, ty) in [
        ("phi3-tiny-q4_0.gguf", GgmlType::Q4_0),
        ("phi3-tiny-q4_1.gguf", GgmlType::Q4_1),
        ("phi3-tiny-q5_0.gguf", GgmlType::Q5_0),
        ("phi3-tiny-q5_1.gguf", GgmlType::Q5_1),
        ("phi3-tiny-q8_0.gguf", GgmlType::Q8_0),
    ] {
        let g = model(file);
        let (mut same, mut total, mut tensors) = (0usize, 0usize, 0usize);
        for info in g.tensors().iter().filter(|t| t.ggml_type == ty) {
            let q = g.tensor(&info.name).unwrap();
            let f = f32m.tensor(&info.name).unwrap();
            assert_eq!(f.info.ggml_type, GgmlType::F32);
            let x: Vec<f32> = f
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let ours = requant(ty, &x);
            let bs = ty.type_size();
            for (a, b) in q.data.chunks(bs).zip(ours.chunks(bs)) {
                total += 1;
                same += (a == b) as usize;
            }
            tensors += 1;
        }
        eprintln!("{file}: {same}/{total} {ty} blocks from F32 identical ({tensors} tensors)");
        assert!(tensors >= 5 && total > 1000);
        assert_eq!(
            same,
            total,
            "{file}: {} blocks differ from llama.cpp",
            total - same
        );
    }
}

/// F16 tensors of the F16 model are the F32 weights rounded as we round them.
#[test]
fn f16_conversion_matches_llama_cpp() {
    let f32m = model("phi3-tiny-f32.gguf");
    let g = model("phi3-tiny-f16.gguf");
    let mut n = 0;
    for info in g.tensors().iter().filter(|t| t.ggml_type == GgmlType::F16) {
        let f = f32m.tensor(&info.name).unwrap();
        let x: Vec<f32> = f
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut h = vec![half::f16::ZERO; x.len()];
        phi_kernels::formats::float::quantize_row_f16(&x, &mut h);
        assert_eq!(
            bytemuck::cast_slice::<_, u8>(&h),
            g.tensor(&info.name).unwrap().data,
            "{}",
            info.name
        );
        n += 1;
    }
    assert!(n >= 5);
}
