//! examples/c/generate.c, built with the system C compiler against
//! libphi.a and phi.h, prints exactly what `phi run --temp 0 --raw` prints.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds libphi.a the way a user would (`cargo build -p phi`) into this
/// test's target directory, and returns its path.
fn libphi() -> PathBuf {
    // The test binary lives in target/<profile>/deps; libphi.a goes to target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .args(["build", "-p", "phi", "--lib", "--features", "capi"])
        .current_dir(root());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        build.arg("--target-dir").arg(target_dir);
    }
    let status = build.status().expect("cannot run cargo");
    let lib = profile_dir.join("libphi.a");
    assert!(
        status.success() && lib.exists(),
        "{} was not built",
        lib.display()
    );
    lib
}

#[test]
fn c_example_prints_what_phi_run_prints() {
    let lib = libphi();
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("generate");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg(root().join("examples/c/generate.c"))
        .arg("-I")
        .arg(root().join("runtime/include"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&bin)
        .status()
        .expect("no C compiler");
    assert!(status.success(), "compiling examples/c/generate.c failed");

    let models = root().join("tests/fixtures/models");
    for (model, prompt) in [
        ("phi3-tiny-q8_0.gguf", "Hello world"),
        ("phi3-tiny-q4_0.gguf", "the model"),
        ("phi3-tiny-q4_k_m.gguf", "once upon a time"),
        ("llama-tiny-q8_0.gguf", "Once upon a time"),
    ] {
        let path = models.join(model);
        let c = Command::new(&bin)
            .arg(&path)
            .arg(prompt)
            .arg("24")
            .output()
            .unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        let phi = Command::new(env!("CARGO_BIN_EXE_phi"))
            .args([
                "run", "--temp", "0", "--raw", "-q", "-n", "24", "-p", prompt, "-m",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            phi.status.success(),
            "{}",
            String::from_utf8_lossy(&phi.stderr)
        );
        assert!(c.stdout.len() > 1, "{model}: nothing generated");
        assert_eq!(
            String::from_utf8_lossy(&c.stdout),
            String::from_utf8_lossy(&phi.stdout),
            "{model}: the C example and phi run differ"
        );
    }

    // A bad model path: exit 1 and a message naming the problem.
    let out = Command::new(&bin)
        .arg("/nonexistent.gguf")
        .arg("hi")
        .arg("4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
}
