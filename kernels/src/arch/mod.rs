//! Per-architecture SIMD bodies. Everything here is `unsafe` and reached
//! only through [`crate::table::ops`], which checks the CPU first.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
