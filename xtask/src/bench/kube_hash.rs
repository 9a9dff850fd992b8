//! The hash kube-proxy puts in its chain names: base32 of the SHA-256 of
//! the name it stands for (pkg/proxy/iptables and pkg/proxy/nftables).

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

/// The first `len` characters of base32(sha256(`text`)).
pub fn hash(text: &str, len: usize) -> String {
    let mut encoded = BASE32.encode(&Sha256::digest(text.as_bytes()));
    encoded.truncate(len);
    encoded
}
