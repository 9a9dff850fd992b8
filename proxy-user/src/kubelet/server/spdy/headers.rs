//! SPDY/3 header blocks: a count, then each name and value, every number
//! 32 bits and every string preceded by its length; the whole compressed
//! with zlib from the protocol's dictionary. Each direction of a
//! connection is one zlib stream, each block ending at a sync flush, so a
//! connection's blocks must all go through the same reader (or writer).
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::dictionary::DICTIONARY;

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("a SPDY header block does not inflate: {0}")]
    Inflate(#[from] flate2::DecompressError),
    #[error("a SPDY header block does not deflate: {0}")]
    Deflate(#[from] flate2::CompressError),
    #[error("a SPDY header block is cut short")]
    Truncated,
}

/// A header block's pairs, names lowercase as SPDY/3 sends them.
pub type Headers = Vec<(String, String)>;

/// The value of `name` (lowercase) in `headers`.
pub fn value<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Reads the header blocks a peer sends on one connection.
pub struct HeaderReader {
    inflate: Decompress,
}

impl Default for HeaderReader {
    fn default() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderReader {
    pub fn read(&mut self, mut block: &[u8]) -> Result<Headers, HeaderError> {
        let mut raw = Vec::with_capacity(block.len() * 4 + 64);
        loop {
            let consumed_before = self.inflate.total_in();
            let produced_before = self.inflate.total_out();
            let result = self
                .inflate
                .decompress_vec(block, &mut raw, FlushDecompress::Sync);
            block = &block[(self.inflate.total_in() - consumed_before) as usize..];
            match result {
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(DICTIONARY)?;
                    continue;
                }
                Err(error) => return Err(error.into()),
                Ok(_) => {}
            }
            let full = raw.len() == raw.capacity();
            if block.is_empty() && !full {
                break;
            }
            let progressed = self.inflate.total_out() > produced_before
                || self.inflate.total_in() > consumed_before;
            if !full && !progressed {
                return Err(HeaderError::Truncated);
            }
            raw.reserve(raw.capacity().max(256));
        }
        parse(&raw)
    }
}

fn parse(mut raw: &[u8]) -> Result<Headers, HeaderError> {
    let count = take_u32(&mut raw)?;
    // Each pair takes at least its two lengths: a count beyond that is a lie.
    if count as usize > raw.len() / 8 {
        return Err(HeaderError::Truncated);
    }
    (0..count)
        .map(|_| {
            let name = take_string(&mut raw)?.to_ascii_lowercase();
            Ok((name, take_string(&mut raw)?))
        })
        .collect()
}

fn take_u32(raw: &mut &[u8]) -> Result<u32, HeaderError> {
    let (number, rest) = raw.split_first_chunk::<4>().ok_or(HeaderError::Truncated)?;
    *raw = rest;
    Ok(u32::from_be_bytes(*number))
}

fn take_string(raw: &mut &[u8]) -> Result<String, HeaderError> {
    let length = take_u32(raw)? as usize;
    if raw.len() < length {
        return Err(HeaderError::Truncated);
    }
    let (text, rest) = raw.split_at(length);
    *raw = rest;
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// Writes the header blocks this side sends on one connection.
pub struct HeaderWriter {
    deflate: Compress,
}

impl HeaderWriter {
    pub fn new() -> Result<Self, HeaderError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(DICTIONARY)?;
        Ok(Self { deflate })
    }

    pub fn write(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, HeaderError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for text in headers.iter().flat_map(|(name, value)| [name, value]) {
            raw.extend_from_slice(&(text.len() as u32).to_be_bytes());
            raw.extend_from_slice(text.as_bytes());
        }
        let mut block = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            let consumed_before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut block, FlushCompress::Sync)?;
            input = &input[(self.deflate.total_in() - consumed_before) as usize..];
            if input.is_empty() && block.len() < block.capacity() {
                return Ok(block);
            }
            block.reserve(block.capacity().max(256));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_written_read_back_in_order() {
        let mut writer = HeaderWriter::new().unwrap();
        let mut reader = HeaderReader::default();
        let first = writer
            .write(&[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ])
            .unwrap();
        let second = writer.write(&[("streamtype", "data")]).unwrap();
        let empty = writer.write(&[]).unwrap();
        let read = reader.read(&first).unwrap();
        assert_eq!(value(&read, "port"), Some("8080"));
        assert_eq!(value(&read, "requestid"), Some("0"));
        assert_eq!(
            reader.read(&second).unwrap(),
            [("streamtype".to_owned(), "data".to_owned())]
        );
        assert!(reader.read(&empty).unwrap().is_empty());
    }

    #[test]
    fn blocks_use_the_protocol_dictionary() {
        let mut writer = HeaderWriter::new().unwrap();
        let block = writer.write(&[("content-type", "text/plain")]).unwrap();
        // Without the dictionary the stream cannot be read.
        let mut plain = Decompress::new(true);
        let mut out = Vec::with_capacity(256);
        let error = plain
            .decompress_vec(&block, &mut out, FlushDecompress::Sync)
            .unwrap_err();
        assert!(error.needs_dictionary().is_some());
    }

    #[test]
    fn garbage_is_refused() {
        let mut reader = HeaderReader::default();
        assert!(reader.read(b"not zlib at all").is_err());
        let mut writer = HeaderWriter::new().unwrap();
        let block = writer.write(&[("port", "80")]).unwrap();
        let mut reader = HeaderReader::default();
        assert!(reader.read(&block[..block.len() / 2]).is_err());
    }
}
