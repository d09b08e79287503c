//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), for the nginx preset: nginx places
//! servers and keys with it. Slice-by-8 over tables built at compile time (8 KiB), then one
//! slice-by-4 step and at most three single bytes: about one table lookup per byte, at most
//! four steps after the last full eight bytes, and no per-call setup, which matters
//! for the short keys a balancer hashes.

/// `TABLES[0]` is the byte-at-a-time table; `TABLES[k][i]` advances `TABLES[k - 1][i]` by one
/// more zero byte.
const TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The running state of a CRC (pre-inverted, as the algorithm keeps it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    pub(crate) fn new() -> Self {
        Crc32(!0)
    }

    /// Feeds `bytes`.
    #[inline]
    pub(crate) fn update(mut self, mut bytes: &[u8]) -> Self {
        let t = &TABLES;
        let mut crc = self.0;
        while let [a, b, c, d, e, f, g, h, rest @ ..] = bytes {
            let lo = u32::from_le_bytes([*a, *b, *c, *d]) ^ crc;
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][*e as usize]
                ^ t[2][*f as usize]
                ^ t[1][*g as usize]
                ^ t[0][*h as usize];
            bytes = rest;
        }
        // Four of the last seven bytes at once (slice-by-4 over the same tables): a key of
        // 13 bytes takes two table steps after the first eight, not five.
        if let [a, b, c, d, rest @ ..] = bytes {
            let lo = u32::from_le_bytes([*a, *b, *c, *d]) ^ crc;
            crc = t[3][(lo & 0xff) as usize]
                ^ t[2][((lo >> 8) & 0xff) as usize]
                ^ t[1][((lo >> 16) & 0xff) as usize]
                ^ t[0][(lo >> 24) as usize];
            bytes = rest;
        }
        for &byte in bytes {
            crc = t[0][((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
        self
    }

    /// The checksum of everything fed.
    #[inline]
    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `bytes`.
#[inline]
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    Crc32::new().update(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit by bit, straight from the definition: the reference.
    fn reference(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn check_value_and_every_length_agree_with_the_definition() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        let data: Vec<u8> = (0..300u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc32(&data[..len]), reference(&data[..len]), "length {len}");
        }
        // Incremental feeding at every split point gives the same result.
        for split in 0..40 {
            let (a, b) = data[..40].split_at(split);
            assert_eq!(
                Crc32::new().update(a).update(b).finish(),
                reference(&data[..40])
            );
        }
    }
}
