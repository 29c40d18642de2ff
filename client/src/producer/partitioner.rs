//! Choosing a partition for a record.
//!
//! Keyed records go to `to_positive(murmur2(key)) % partition_count`, the
//! Java client's default partitioner (and librdkafka's `murmur2_random`), so
//! a key lands on the same partition whichever of those clients wrote it.
//! Records without a key stick to one partition until the batch they opened
//! there is closed, then move to another (KIP-480), which fills batches
//! instead of spreading single records over every partition.

use rand::Rng;

/// The seed of Kafka's murmur2 (`Utils.murmur2` in the Java client).
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// The multiplication constant of murmur2.
const MURMUR2_M: u32 = 0x5bd1_e995;
/// The shift of murmur2's mixing step.
const MURMUR2_R: u32 = 24;

/// Kafka's 32-bit murmur2 hash of `data`, bit for bit as the Java client's
/// `Utils.murmur2` computes it (little-endian 4-byte words, seed `0x9747b28c`).
pub fn murmur2(data: &[u8]) -> i32 {
    let length = data.len();
    let mut h: u32 = MURMUR2_SEED ^ (length as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> MURMUR2_R;
        k = k.wrapping_mul(MURMUR2_M);
        h = h.wrapping_mul(MURMUR2_M);
        h ^= k;
    }
    let tail = words.remainder();
    // Java's switch falls through from case 3 to case 1; the multiply only
    // happens when there is a tail at all.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(MURMUR2_M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(MURMUR2_M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`, which would
/// overflow on `i32::MIN` and map two hashes to one).
pub fn to_positive(hash: i32) -> i32 {
    hash & 0x7fff_ffff
}

/// The partition of a keyed record among `partition_count` partitions.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partition_count
}

/// A fresh sticky partition for records without a key: random, and different
/// from `previous` when there is a choice, so a closed batch hands the
/// traffic to another partition.
pub fn next_sticky_partition(previous: Option<i32>, partition_count: i32) -> i32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    let mut rng = rand::thread_rng();
    match previous {
        Some(previous) if partition_count > 1 && (0..partition_count).contains(&previous) => {
            // Pick among the other partitions uniformly.
            let offset = rng.gen_range(1..partition_count);
            (previous + offset) % partition_count
        }
        _ => rng.gen_range(0..partition_count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client_on_librdkafka_reference_vectors() {
        // These expected hashes are the Java client's, as listed in librdkafka's
        // own murmur2 unit test (src/rdmurmur2.c), covering every tail length.
        let unaligned = "PreAmbleWillBeRemoved,ThePrePartThatIs";
        let cases: [(&str, u32); 11] = [
            ("kafka", 0xd067cf64),
            ("giberish123456789", 0x8f552b0c),
            ("1234", 0x9fc97b14),
            ("234", 0xe7c009ca),
            ("34", 0x873930da),
            ("4", 0x5a4b5ca1),
            (unaligned, 0x78424f1c),
            (&unaligned[1..], 0x4a62b377),
            (&unaligned[2..], 0xe0e4e09e),
            (&unaligned[3..], 0x62b8b43f),
            ("", 0x106e08d9),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()), expected as i32, "murmur2({key:?})");
        }
    }

    #[test]
    fn murmur2_matches_the_java_client_on_kafka_utils_test_vectors() {
        // Vectors from the Java client's UtilsTest.testMurmur2, signed as Java prints them.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn to_positive_clears_the_sign_bit_instead_of_negating() {
        // i32::MIN maps to 0 and -1 to i32::MAX, as Java's Utils.toPositive does.
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(42), 42);
    }

    #[test]
    fn keyed_partition_is_positive_hash_modulo_partition_count() {
        // "kafka" hashes to 0xd067cf64; with the sign bit cleared that is 0x5067cf64.
        assert_eq!(partition_for_key(b"kafka", 1), 0);
        assert_eq!(partition_for_key(b"kafka", 7), (0x5067_cf64_i32) % 7);
        for count in 1..50 {
            let p = partition_for_key(b"some key", count);
            assert!((0..count).contains(&p));
        }
    }

    #[test]
    fn next_sticky_partition_moves_away_from_the_previous_one() {
        // With more than one partition the new sticky partition always differs from the old one.
        for _ in 0..200 {
            let next = next_sticky_partition(Some(2), 4);
            assert!((0..4).contains(&next) && next != 2, "{next}");
        }
        assert_eq!(next_sticky_partition(Some(0), 1), 0);
        assert!((0..3).contains(&next_sticky_partition(None, 3)));
    }
}
