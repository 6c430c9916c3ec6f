//! The registry's entry points: `Config` parsing, `prepare` (mapped or
//! packed, decided per type and CPU) and `matmul` on the prepared matrix.

use phi_kernels::{
    dispatch, layout, matmul, matmul_with_isa, prepare, quantize_row, Config, GgmlType, Isa,
    KernelError, Scratch, Weights,
};

fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let row = layout(ty).unwrap().bytes_for(cols).unwrap();
    let mut data = vec![0u8; rows * row];
    for (r, out) in data.chunks_exact_mut(row).enumerate() {
        let x: Vec<f32> = (0..cols)
            .map(|c| (((r * 31 + c * 7) % 23) as f32 - 11.0) / 9.0)
            .collect();
        quantize_row(ty, &x, out).unwrap();
    }
    data
}

#[test]
fn config_parses_the_environment_values() {
    // The front ends' configuration: the defaults, streaming on.
    let front = Config {
        stream: true,
        ..Config::default()
    };
    assert_eq!(Config::parse(None, None).unwrap(), front);
    let c = Config::parse(Some("scalar"), Some("0")).unwrap();
    assert_eq!((c.isa, c.repack), (Some(Isa::Scalar), false));
    assert!(Config::parse(Some(" auto "), Some("1")).unwrap().repack);
    assert!(matches!(
        Config::parse(Some("avx9"), None),
        Err(KernelError::UnknownIsa(_))
    ));
    assert_eq!(Config::default().isa(), dispatch::active());
}

#[test]
fn prepare_keeps_or_packs_and_matmul_agrees_with_the_scalar_path() {
    let (rows, cols, n) = (32, 512, 3);
    let x: Vec<f32> = (0..cols * n)
        .map(|i| ((i % 13) as f32 - 6.0) / 7.0)
        .collect();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::F32,
    ] {
        let data = weights(ty, rows, cols);
        let w = Weights::new(ty, rows, cols, &data).unwrap();
        let mut s = Scratch::default();
        let mut want = vec![0f32; rows * n];
        matmul_with_isa(Isa::Scalar, &w, &x, n, &mut want, &mut s).unwrap();

        // Scalar: never packed, and the same results bit for bit.
        let scalar = Config {
            isa: Some(Isa::Scalar),
            repack: true,
            ..Config::default()
        };
        let m = prepare(&w, &scalar).unwrap();
        assert!(!m.is_packed() && m.isa() == Isa::Scalar, "{ty}");
        let mut y = vec![0f32; rows * n];
        matmul(m.view(&data).unwrap(), &x, n, &mut y, &mut s).unwrap();
        assert_eq!(y, want, "{ty}");
        // A mapped matrix needs exactly its bytes.
        assert!(m.view(&data[1..]).is_err());

        // The process's ISA: packed where the registry has a layout, and
        // streamed instead (with `stream`) where it has a group packer.
        for (repack, stream) in [(false, true), (true, false), (true, true)] {
            let m = prepare(
                &w,
                &Config {
                    isa: None,
                    repack,
                    stream,
                    ..Config::default()
                },
            )
            .unwrap();
            let packable = phi_kernels::packed::packed_isa()
                .is_some_and(|isa| phi_kernels::packed::supports(isa, ty));
            let streamable = phi_kernels::packed::packed_isa().is_some_and(|isa| {
                phi_kernels::packed::StreamedWeights::new(isa, &w)
                    .unwrap()
                    .is_some()
            });
            let streamed = repack && stream && streamable;
            assert_eq!(
                m.is_streamed(),
                streamed,
                "{ty} repack={repack} stream={stream}"
            );
            assert_eq!(
                m.is_packed(),
                repack && packable && !streamed,
                "{ty} repack={repack} stream={stream}"
            );
            // A packed matrix does not read its source any more.
            let src: &[u8] = if m.is_packed() { &[] } else { &data };
            let mut y = vec![0f32; rows * n];
            matmul(m.view(src).unwrap(), &x, n, &mut y, &mut s).unwrap();
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{ty}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn prepare_rejects_bad_weights() {
    let data = weights(GgmlType::Q4_0, 4, 64);
    let bad = Weights {
        ty: GgmlType::Q4_0,
        rows: 5,
        cols: 64,
        data: &data,
    };
    assert!(prepare(&bad, &Config::default()).is_err());
}

#[test]
fn layouts_size_rows() {
    let q8 = layout(GgmlType::Q8_0).unwrap();
    assert_eq!((q8.values, q8.bytes, q8.act), (32, 34, GgmlType::Q8_0));
    assert_eq!(q8.bytes_for(64), Some(68));
    assert_eq!(q8.bytes_for(65), None);
    let q4k = layout(GgmlType::Q4_K).unwrap();
    assert!(q4k.has_min && q4k.act == GgmlType::Q8_K);
    assert!(layout(GgmlType::Q8_K).is_some());
}
