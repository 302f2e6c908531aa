//! Position-dependent test data.
//!
//! An echo test that sends `aaaa…` cannot tell a lost byte from a duplicated
//! one. Here every byte depends on its stream and its offset, so any byte
//! lost, duplicated, reordered or crossed over from another connection breaks
//! the sequence, and [`first_mismatch`] says at which offset.

/// splitmix64: a tiny, well-mixed hash, so neighbouring blocks look unrelated.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The byte at `offset` of stream `seed`.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    let word = mix((offset >> 3) ^ mix(seed));
    (word >> ((offset & 7) * 8)) as u8
}

/// Fills `buf` with stream `seed`'s bytes starting at `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let seed = mix(seed);
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let word = mix((pos >> 3) ^ seed).to_le_bytes();
        let start = (pos & 7) as usize;
        let take = (8 - start).min(buf.len() - i);
        buf[i..i + take].copy_from_slice(&word[start..start + take]);
        i += take;
        pos += take as u64;
    }
}

/// Stream `seed`'s bytes from `offset`, `len` of them.
pub fn bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(seed, offset, &mut v);
    v
}

/// The first position in `data` that is not stream `seed`'s byte at
/// `offset + position`, if any.
pub fn first_mismatch(seed: u64, offset: u64, data: &[u8]) -> Option<usize> {
    let mut expected = [0u8; 4096];
    let mut done = 0;
    while done < data.len() {
        let n = (data.len() - done).min(expected.len());
        fill(seed, offset + done as u64, &mut expected[..n]);
        // Compare the whole chunk first (a memcmp), and look for the exact
        // position only when it differs: checking is most of a load
        // client's work, and almost every chunk is right.
        let (got, want) = (&data[done..done + n], &expected[..n]);
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b);
            return Some(done + i.unwrap_or(0));
        }
        done += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_from_any_offset() {
        for offset in [0u64, 1, 7, 8, 13, 4095] {
            let v = bytes(42, offset, 100);
            for (i, b) in v.iter().enumerate() {
                assert_eq!(*b, byte_at(42, offset + i as u64));
            }
        }
    }

    #[test]
    fn every_kind_of_damage_is_found_where_it_happens() {
        let good = bytes(7, 0, 10_000);
        assert_eq!(first_mismatch(7, 0, &good), None);

        let mut lost = good.clone();
        lost.remove(5000);
        assert_eq!(first_mismatch(7, 0, &lost), Some(5000));

        let mut duplicated = good.clone();
        duplicated.insert(6000, good[6000]);
        assert!(first_mismatch(7, 0, &duplicated).is_some_and(|i| (6000..6010).contains(&i)));

        let mut swapped = good.clone();
        swapped[8000..8100].rotate_left(50);
        assert!(first_mismatch(7, 0, &swapped).is_some_and(|i| (8000..8010).contains(&i)));

        assert_eq!(
            first_mismatch(8, 0, &good),
            Some(0),
            "another stream's bytes"
        );
    }
}
