//! Content hashes: SHA-256 for signatures and digests, and the short form that names
//! objects by their content and tells whether an applied object is current.

use ring::digest;

/// Lower-case hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The first 16 hex digits of the SHA-256 of `data`: enough to tell contents apart, short
/// enough for names and annotations.
pub fn short_hash(data: &[u8]) -> String {
    let mut hex = sha256_hex(data);
    hex.truncate(16);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(short_hash(b"abc"), "ba7816bf8f01cfea");
    }
}
