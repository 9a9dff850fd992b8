//! sha256 digests computed while bytes flow, so a blob is checked in the
//! same pass that copies it.
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// Hashes what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// Reads what is left (a tar stream's trailing blocks), then returns
    /// `sha256:<hex>` of everything and its length.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("sha256:{:x}", self.hasher.finalize()), self.read))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Copies `from` into `to`, returning `sha256:<hex>` and the length.
pub fn copy_hashing(from: impl Read, to: &mut impl Write) -> io::Result<(String, u64)> {
    let mut reader = HashingReader::new(from);
    io::copy(&mut reader, to)?;
    reader.finish()
}
