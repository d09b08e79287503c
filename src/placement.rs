//! The pinned placement hash: the only functions that decide where a key goes. Exact outputs
//! are part of the crate's contract (golden tests below); they are documented for users in
//! [`crate::hash`].

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of [`key_hash`]: ASCII `"lbkit_ke"` read as a big-endian `u64`.
pub const KEY_SEED: u64 = 0x6c62_6b69_745f_6b65;
/// Seed of [`id_hash`]: ASCII `"lbkit_id"` read as a big-endian `u64`.
pub const ID_SEED: u64 = 0x6c62_6b69_745f_6964;

/// The pinned placement hash of a key: XXH3-64 of its bytes with seed [`KEY_SEED`].
///
/// ```
/// assert_eq!(lbkit::hash::key_hash(b"user-42"), lbkit::hash::key_hash("user-42".as_bytes()));
/// ```
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, KEY_SEED)
}

/// The pinned placement hash of a backend id: XXH3-64 of its UTF-8 bytes with seed
/// [`ID_SEED`].
pub fn id_hash(id: &str) -> u64 {
    xxh3_64_with_seed(id.as_bytes(), ID_SEED)
}

/// Mixes two 64-bit hashes into one well-distributed 64-bit value.
///
/// Precisely: `z = a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15`, then the SplitMix64
/// finaliser: `z = (z ^ z >> 30) * 0xbf58_476d_1ce4_e5b9; z = (z ^ z >> 27) *
/// 0x94d0_49bb_1331_11eb; z ^ z >> 31`, all wrapping on 64 bits.
pub fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15)
}

/// SplitMix64's increment: the odd integer closest to 2^64 / golden ratio.
pub(crate) const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
#[inline]
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: if one of these changes, every fleet running two versions of lbkit
    /// would disagree on placement. Never update them without a major version.
    #[test]
    fn placement_hash_is_pinned() {
        assert_eq!(KEY_SEED.to_be_bytes(), *b"lbkit_ke");
        assert_eq!(ID_SEED.to_be_bytes(), *b"lbkit_id");
        let golden = [
            (key_hash(b""), "key:"),
            (key_hash(b"user-42"), "key:user-42"),
            (id_hash("10.0.0.1:80"), "id:10.0.0.1:80"),
            (mix(1, 2), "mix:1,2"),
        ];
        let got: Vec<String> = golden
            .iter()
            .map(|(h, name)| format!("{name}={h:016x}"))
            .collect();
        assert_eq!(got, GOLDEN);
    }

    /// Cross-checked against the Python `xxhash` package (an independent XXH3 binding):
    /// `xxhash.xxh3_64_intdigest(b"user-42", seed=0x6c626b69745f6b65)`.
    const GOLDEN: [&str; 4] = [
        "key:=d04eb0e5b371352d",
        "key:user-42=4ff17b6b7ea971e2",
        "id:10.0.0.1:80=a2f670584d03bfb9",
        "mix:1,2=b0caed0a7bf9c2c8",
    ];
}
