//! Shared set-up for Brooklet's criterion benchmarks (`cargo bench -p
//! brooklet-benches`). Each bench file says what it isolates.

use bytes::Bytes;

/// `n` incompressible values of `size` bytes, so no layer can win by
/// compressing them.
pub fn random_values(n: usize, size: usize) -> Vec<Bytes> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            let v: Vec<u8> = (0..size)
                .map(|_| {
                    // xorshift64*: fast, dependency-free, good enough to defeat compression.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
                })
                .collect();
            Bytes::from(v)
        })
        .collect()
}
