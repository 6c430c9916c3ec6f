//! Runs the built `phi quantize` on the fixtures and compares the result with
//! the files llama.cpp's llama_model_quantize made from the same F32 model
//! (tests/fixtures/models, llama.cpp 0c1e57098).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use phi_gguf::{GgmlType, Gguf, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("quantize-{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn phi<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(args)
        .output()
        .expect("run phi")
}

fn quantize(input: &Path, output: &Path, ty: &str, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "quantize".as_ref(),
        input.as_os_str(),
        output.as_os_str(),
        ty.as_ref(),
        "-t".as_ref(),
        "2".as_ref(),
    ];
    args.extend(extra.iter().map(|s| s.as_ref() as &std::ffi::OsStr));
    phi(&args)
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "phi failed: {err}");
    err
}

fn types(g: &Gguf) -> BTreeMap<String, GgmlType> {
    g.tensors()
        .iter()
        .map(|t| (t.name.clone(), t.ggml_type))
        .collect()
}

/// Names of the tensors whose type, shape and bytes are the same in both files
/// (both must have the same tensor names).
fn identical_tensors(a: &Gguf, b: &Gguf) -> Vec<String> {
    assert_eq!(
        types(a).keys().collect::<Vec<_>>(),
        types(b).keys().collect::<Vec<_>>()
    );
    let mut same = Vec::new();
    for t in a.tensor_views() {
        let u = b.tensor(t.name()).unwrap();
        if t.ggml_type() == u.ggml_type() && t.dims() == u.dims() && t.data == u.data {
            same.push(t.name().to_owned());
        }
    }
    same
}

/// Metadata equals the input's except general.file_type = `ftype` and
/// general.quantization_version = 2.
fn check_metadata(input: &Gguf, out: &Gguf, ftype: u32) {
    assert_eq!(out.get("general.file_type"), Some(&Value::U32(ftype)));
    assert_eq!(
        out.get("general.quantization_version"),
        Some(&Value::U32(2))
    );
    assert_eq!(input.metadata().len(), out.metadata().len());
    for (k, v) in input.metadata() {
        if k != "general.file_type" && k != "general.quantization_version" {
            assert_eq!(out.get(k), Some(v), "metadata {k}");
        }
    }
}

#[test]
fn q8_0_pure_equals_llama_cpp_bit_for_bit() {
    let dir = scratch("q8_0");
    let f32_path = model("phi3-tiny-f32.gguf");
    let out = dir.join("q8_0.gguf");
    let err = ok(&quantize(&f32_path, &out, "q8_0", &["--pure"]));
    // Progress: tensor i/n, name, old -> new type.
    assert!(
        err.contains("/15] blk.0.attn_qkv.weight") && err.contains("F32 -> Q8_0"),
        "{err}"
    );
    let ours = Gguf::open(&out).unwrap();
    let theirs = Gguf::open(model("phi3-tiny-q8_0.gguf")).unwrap();
    // llama.cpp's Q8_0 file has every matrix in Q8_0 (output too: a Q8_0 file
    // keeps Q8_0 there) and the norms in F32: all 15 tensors must be equal.
    assert_eq!(types(&ours), types(&theirs));
    assert_eq!(identical_tensors(&ours, &theirs).len(), 15);
    check_metadata(&Gguf::open(&f32_path).unwrap(), &ours, 7);
    // Without --pure the Q8_0 mix is the same.
    let out2 = dir.join("q8_0-mix.gguf");
    ok(&quantize(&f32_path, &out2, "Q8_0", &[]));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn f16_equals_the_f16_fixture() {
    let dir = scratch("f16");
    let out = dir.join("f16.gguf");
    ok(&quantize(&model("phi3-tiny-f32.gguf"), &out, "f16", &[]));
    let ours = Gguf::open(&out).unwrap();
    let theirs = Gguf::open(model("phi3-tiny-f16.gguf")).unwrap();
    assert_eq!(types(&ours), types(&theirs));
    assert_eq!(identical_tensors(&ours, &theirs).len(), 15);
    assert_eq!(ours.get("general.file_type"), Some(&Value::U32(1)));
}

#[test]
fn bf16_rounds_to_nearest_even() {
    let dir = scratch("bf16");
    let out = dir.join("bf16.gguf");
    let f32_path = model("phi3-tiny-f32.gguf");
    ok(&quantize(&f32_path, &out, "BF16", &[]));
    let (ours, input) = (Gguf::open(&out).unwrap(), Gguf::open(&f32_path).unwrap());
    assert_eq!(ours.get("general.file_type"), Some(&Value::U32(32)));
    let mut checked = 0;
    for t in input.tensor_views() {
        let o = ours.tensor(t.name()).unwrap();
        if t.dims().len() == 1 {
            assert_eq!((o.ggml_type(), o.data), (GgmlType::F32, t.data));
            continue;
        }
        assert_eq!(o.ggml_type(), GgmlType::BF16, "{}", t.name());
        for (x, b) in t.data.chunks_exact(4).zip(o.data.chunks_exact(2)) {
            let bits = u32::from_le_bytes(x.try_into().unwrap());
            // Round to nearest, ties to even, on the top 16 bits (finite values).
            let want = ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
            assert_eq!(u16::from_le_bytes(b.try_into().unwrap()), want);
            checked += 1;
        }
    }
    assert!(checked > 1_000_000);
}

/// The 32-element types: llama.cpp's files (made without --pure) keep
/// output.weight in Q6_K and everything else in the type; our Q4_0..Q5_1
/// quantizers are bit-identical to ggml's, so all other tensors are equal.
#[test]
fn legacy_types_match_llama_cpp_except_the_k_quant_output() {
    let dir = scratch("legacy");
    let input = Gguf::open(model("phi3-tiny-f32.gguf")).unwrap();
    for (ty, ftype, ggml) in [
        ("q4_0", 2, GgmlType::Q4_0),
        ("q4_1", 3, GgmlType::Q4_1),
        ("q5_0", 8, GgmlType::Q5_0),
        ("q5_1", 9, GgmlType::Q5_1),
    ] {
        let out = dir.join(format!("{ty}.gguf"));
        ok(&quantize(&model("phi3-tiny-f32.gguf"), &out, ty, &[]));
        let ours = Gguf::open(&out).unwrap();
        let theirs = Gguf::open(model(&format!("phi3-tiny-{ty}.gguf"))).unwrap();
        assert_eq!(types(&ours), types(&theirs), "{ty}");
        assert_eq!(types(&ours)["output.weight"], GgmlType::Q6_K);
        assert_eq!(types(&ours)["blk.1.ffn_down.weight"], ggml);
        let same = identical_tensors(&ours, &theirs);
        let mut want: Vec<String> = types(&theirs)
            .into_keys()
            .filter(|n| n != "output.weight")
            .collect();
        want.sort();
        let mut got: Vec<String> = same.into_iter().filter(|n| n != "output.weight").collect();
        got.sort();
        assert_eq!(got, want, "{ty}");
        check_metadata(&input, &ours, ftype);
        // --pure: the output matrix is in the type too, bit-identical to a
        // ggml quantization of the same F32 rows.
        let pure = dir.join(format!("{ty}-pure.gguf"));
        ok(&quantize(
            &model("phi3-tiny-f32.gguf"),
            &pure,
            ty,
            &["--pure"],
        ));
        let pure = Gguf::open(&pure).unwrap();
        assert!(types(&pure)
            .iter()
            .all(|(n, t)| *t == ggml || (n.ends_with("norm.weight") && *t == GgmlType::F32)));
    }
}

/// The mix rules pick the same type as llama.cpp for every tensor.
#[test]
fn k_mixes_pick_llama_cpp_tensor_types() {
    let dir = scratch("mixes");
    for (ty, fixture, ftype) in [
        ("q4_k_m", "phi3-tiny-q4_k_m.gguf", 15),
        ("q3_k_m", "phi3-tiny-q3_k_m.gguf", 12),
        ("q2_k", "phi3-tiny-q2_k.gguf", 10),
        ("q6_k", "phi3-tiny-q6_k.gguf", 18),
    ] {
        let out = dir.join(format!("{ty}.gguf"));
        ok(&quantize(&model("phi3-tiny-f32.gguf"), &out, ty, &[]));
        let ours = Gguf::open(&out).unwrap();
        let theirs = Gguf::open(model(fixture)).unwrap();
        assert_eq!(types(&ours), types(&theirs), "{ty}");
        assert_eq!(ours.get("general.file_type"), Some(&Value::U32(ftype)));
    }
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn q4_k_m_logits_are_close_to_llama_cpp() {
    let dir = scratch("q4_k_m-logits");
    let out = dir.join("q4_k_m.gguf");
    ok(&quantize(&model("phi3-tiny-f32.gguf"), &out, "q4_k_m", &[]));
    let oracle = fixtures().join("oracle/phi3-tiny-q4_k_m");
    let f32_oracle = fixtures().join("oracle/phi3-tiny-f32");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(oracle.join("manifest.json")).unwrap())
            .unwrap();
    let n_vocab = manifest["n_vocab"].as_u64().unwrap() as usize;
    let (mut positions, mut decided, mut agree) = (0usize, 0usize, 0usize);
    // Sums of |ours - llama.cpp Q4_K_M|, |ours - F32|, |llama.cpp Q4_K_M - F32|.
    let (mut d_llama, mut d_ours_f32, mut d_llama_f32, mut n) = (0f64, 0f64, 0f64, 0usize);
    for seq in manifest["sequences"].as_array().unwrap() {
        let tokens: Vec<String> = seq["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap().to_string())
            .collect();
        let logits_path = dir.join("logits.bin");
        let run = phi(&[
            "logits".as_ref(),
            "-m".as_ref(),
            out.as_os_str(),
            "--tokens".as_ref(),
            tokens.join(",").as_ref(),
            "--out".as_ref(),
            logits_path.as_os_str(),
            "-t".as_ref(),
            "2".as_ref(),
        ] as &[&std::ffi::OsStr]);
        ok(&run);
        let file = seq["logits_file"].as_str().unwrap();
        let ours = read_f32(&logits_path);
        let theirs = read_f32(&oracle.join(file));
        let exact = read_f32(&f32_oracle.join(file));
        assert_eq!(ours.len(), tokens.len() * n_vocab);
        assert_eq!(theirs.len(), ours.len());
        assert_eq!(exact.len(), ours.len());
        let margins = seq["top1_top2_margin"].as_array().unwrap();
        let rows = ours
            .chunks_exact(n_vocab)
            .zip(theirs.chunks_exact(n_vocab))
            .zip(exact.chunks_exact(n_vocab));
        for (p, ((a, b), e)) in rows.enumerate() {
            positions += 1;
            for ((x, y), z) in a.iter().zip(b).zip(e) {
                assert!(x.is_finite());
                d_llama += (x - y).abs() as f64;
                d_ours_f32 += (x - z).abs() as f64;
                d_llama_f32 += (y - z).abs() as f64;
                n += 1;
            }
            let argmax = |v: &[f32]| {
                (0..v.len())
                    .max_by(|&i, &j| v[i].total_cmp(&v[j]).then(j.cmp(&i)))
                    .unwrap()
            };
            if margins[p].as_f64().unwrap() > 0.5 {
                decided += 1;
                agree += usize::from(argmax(a) == argmax(b));
            }
        }
    }
    let (d_llama, d_ours_f32, d_llama_f32) = (
        d_llama / n as f64,
        d_ours_f32 / n as f64,
        d_llama_f32 / n as f64,
    );
    eprintln!(
        "q4_k_m: mean |ours - llama.cpp| {d_llama:.4}, top-1 {agree}/{decided} clear of \
         {positions}; mean |ours - F32| {d_ours_f32:.4}, |llama.cpp - F32| {d_llama_f32:.4}"
    );
    // Why loose: our Q4_K / Q6_K quantizers search the block scales their own
    // way, not bit-for-bit as ggml does: ~73 % of the Q4_K bytes and ~38 % of
    // the Q6_K bytes equal llama.cpp's, with a slightly lower RMS error vs F32
    // but an error nearly independent of ggml's. Two independent Q4_K_M
    // roundings of the same weights differ in the logits about as much as
    // either differs from F32 (llama.cpp F32 vs Q4_K_M: mean 0.34, top-1 84 %,
    // tests/fixtures/README.md); measured here: mean 0.31, top-1 52/57 on
    // positions whose llama.cpp margin is > 0.5. So: a bounded mean, top-1 on
    // most clear positions, and our file no further from F32 than llama.cpp's.
    assert!(d_llama < 0.5, "mean |ours - llama.cpp| {d_llama}");
    assert!(
        agree * 10 >= decided * 8,
        "top-1 agrees on {agree} of {decided} clear positions"
    );
    assert!(
        d_ours_f32 < 1.15 * d_llama_f32,
        "ours is further from F32 ({d_ours_f32}) than llama.cpp's Q4_K_M ({d_llama_f32})"
    );
}

#[test]
fn row_lengths_off_the_k_block_fall_back_like_llama_cpp() {
    // n_embd 384: rows of 384 are not whole 256-blocks. llama.cpp's hd96 Q4_0
    // file has output.weight in Q8_0 (Q6_K falls back); for Q4_K_M the
    // 384-column matrices fall back to Q5_0 (Q6_K ones to Q8_0) and ffn_down
    // (256 columns) stays a K-quant.
    let dir = scratch("fallback");
    let input = model("phi3-hd96-q8_0.gguf");
    let out = dir.join("q4_0.gguf");
    let err = ok(&quantize(&input, &out, "q4_0", &["--allow-requantize"]));
    assert!(
        err.contains("warning:") && err.contains("output.weight"),
        "{err}"
    );
    let theirs = Gguf::open(model("phi3-hd96-q4_0.gguf")).unwrap();
    assert_eq!(types(&Gguf::open(&out).unwrap()), types(&theirs));

    let out = dir.join("q4_k_m.gguf");
    let err = ok(&quantize(&input, &out, "q4_k_m", &["--allow-requantize"]));
    let t = types(&Gguf::open(&out).unwrap());
    assert_eq!(t["output.weight"], GgmlType::Q8_0);
    assert_eq!(t["token_embd.weight"], GgmlType::Q5_0);
    assert_eq!(t["blk.0.attn_output.weight"], GgmlType::Q5_0);
    // One layer: use_more_bits(0, 1) holds, so attn_qkv wants Q6_K -> Q8_0.
    assert_eq!(t["blk.0.attn_qkv.weight"], GgmlType::Q8_0);
    assert_eq!(t["blk.0.ffn_down.weight"], GgmlType::Q6_K);
    assert_eq!(t["blk.0.attn_norm.weight"], GgmlType::F32);
    assert!(err.contains("needed a fallback type"), "{err}");
    // The result runs.
    ok(&phi(&[
        "logits".as_ref(),
        "-m".as_ref(),
        out.as_os_str(),
        "--tokens".as_ref(),
        "1,5,300".as_ref() as &std::ffi::OsStr,
    ]));
}

#[test]
fn rope_factors_and_norms_stay_f32() {
    let dir = scratch("longrope");
    let out = dir.join("q4_0.gguf");
    let input = model("phi3-longrope-q8_0.gguf");
    ok(&quantize(
        &input,
        &out,
        "q4_0",
        &["--allow-requantize", "--pure"],
    ));
    let ours = Gguf::open(&out).unwrap();
    let theirs = Gguf::open(&input).unwrap();
    for name in [
        "rope_factors_long.weight",
        "rope_factors_short.weight",
        "output_norm.weight",
    ] {
        let (a, b) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!(a.ggml_type(), GgmlType::F32);
        assert_eq!(a.data, b.data, "{name}");
    }
    assert_eq!(types(&ours)["blk.0.ffn_up.weight"], GgmlType::Q4_0);
}

fn fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn errors_are_clear_and_exit_1() {
    let dir = scratch("errors");
    let out = dir.join("out.gguf");
    let f32_path = model("phi3-tiny-f32.gguf");

    fails(
        &quantize(&dir.join("missing.gguf"), &out, "q8_0", &[]),
        "cannot read",
    );
    fails(
        &quantize(&f32_path, &out, "q4_k_xl", &[]),
        "unknown quantization type",
    );
    // Not a GGUF file.
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"definitely not gguf").unwrap();
    fails(&quantize(&junk, &out, "q8_0", &[]), "cannot read");
    assert!(!out.exists());

    // OUT == IN (also through another spelling of the path).
    let copy = dir.join("in.gguf");
    std::fs::copy(&f32_path, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    fails(&quantize(&copy, &copy, "q8_0", &[]), "is the input");
    let other_spelling = dir.join(".").join("in.gguf");
    fails(
        &quantize(&copy, &other_spelling, "q8_0", &[]),
        "is the input",
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    // Requantizing needs the flag; nothing is written without it.
    let q8 = model("phi3-tiny-q8_0.gguf");
    fails(&quantize(&q8, &out, "q4_0", &[]), "--allow-requantize");
    assert!(!out.exists());
    ok(&quantize(&q8, &out, "q4_0", &["--allow-requantize"]));
    assert_eq!(
        types(&Gguf::open(&out).unwrap())["blk.0.ffn_up.weight"],
        GgmlType::Q4_0
    );
    // Same type everywhere: nothing is requantized, the tensors are copied.
    let same = dir.join("same.gguf");
    ok(&quantize(&q8, &same, "q8_0", &[]));
    let (a, b) = (Gguf::open(&same).unwrap(), Gguf::open(&q8).unwrap());
    assert_eq!(identical_tensors(&a, &b).len(), 15);

    // An output directory that does not exist.
    fails(
        &quantize(&f32_path, &dir.join("no/such/dir/out.gguf"), "q8_0", &[]),
        "cannot create",
    );
}
