//! `metadata.uid` for objects written straight to etcd.

/// A random (version 4) UUID, as the API server makes.
pub fn new_uid() -> String {
    let bits: u128 = rand::random();
    // The version (4) and variant (10) bits of RFC 9562.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 64) & 0xffff,
        (bits >> 48) & 0xffff,
        bits & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_version_4_and_differ() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4", "{uid}");
        assert!(matches!(&uid[19..20], "8" | "9" | "a" | "b"), "{uid}");
        assert_eq!(uid.matches('-').count(), 4, "{uid}");
        assert_ne!(uid, new_uid());
    }
}
