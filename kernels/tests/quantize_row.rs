//! `quantize_row`: every weight type round-trips through `dequantize_row`
//! within its quantization error, also into an unaligned buffer, and bad
//! shapes or types are errors.

use phi_kernels::{dequantize_row, quantize_row, GgmlType, KernelError};

#[test]
fn every_weight_type_round_trips() {
    let n = 512;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    // Relative RMS error each type may have on uniform data.
    let types = [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-3),
        (GgmlType::BF16, 8e-3),
        (GgmlType::Q8_0, 0.01),
        (GgmlType::Q6_K, 0.03),
        (GgmlType::Q5_0, 0.05),
        (GgmlType::Q5_1, 0.05),
        (GgmlType::Q5_K, 0.05),
        (GgmlType::Q4_0, 0.1),
        (GgmlType::Q4_1, 0.1),
        (GgmlType::Q4_K, 0.1),
        (GgmlType::IQ4_NL, 0.1),
        (GgmlType::IQ4_XS, 0.1),
        (GgmlType::Q3_K, 0.2),
        (GgmlType::Q2_K, 0.4),
    ];
    let rms = |v: &[f32]| (v.iter().map(|a| a * a).sum::<f32>() / v.len() as f32).sqrt();
    for (ty, bound) in types {
        let bytes = ty.bytes_for(n as u64).unwrap() as usize;
        // One byte of offset: the output need not be aligned for the block type.
        let mut buf = vec![0u8; bytes + 1];
        quantize_row(ty, &x, &mut buf[1..]).unwrap();
        let mut aligned = vec![0u8; bytes];
        quantize_row(ty, &x, &mut aligned).unwrap();
        assert_eq!(&buf[1..], &aligned[..], "{ty}: result depends on alignment");
        let mut back = vec![0f32; n];
        dequantize_row(ty, &aligned, &mut back).unwrap();
        let err: Vec<f32> = back.iter().zip(&x).map(|(a, b)| a - b).collect();
        let rel = rms(&err) / rms(&x);
        assert!(rel <= bound, "{ty}: relative RMS error {rel} > {bound}");
    }
}

#[test]
fn bad_shapes_and_types_are_errors() {
    let x = vec![0.5f32; 40];
    let mut out = vec![0u8; 100];
    assert!(matches!(
        quantize_row(GgmlType::Q4_0, &x, &mut out),
        Err(KernelError::Shape(_))
    ));
    let x = vec![0.5f32; 32];
    let mut out = vec![0u8; 17];
    assert!(matches!(
        quantize_row(GgmlType::Q4_0, &x, &mut out),
        Err(KernelError::Shape(_))
    ));
    let mut out = vec![0u8; GgmlType::IQ2_XXS.bytes_for(256).unwrap() as usize];
    let x = vec![0.5f32; 256];
    assert!(matches!(
        quantize_row(GgmlType::IQ2_XXS, &x, &mut out),
        Err(KernelError::Unsupported(GgmlType::IQ2_XXS))
    ));
}
