//! Decoding header blocks (RFC 7541 §6) while keeping the dynamic table.
//!
//! As strict as h2's decoder where the two could disagree about the table:
//! a dynamic table size update is accepted only before the block's first
//! field and up to the size the server allows (h2 answers anything else
//! with COMPRESSION_ERROR); index 0 and indexes past the table are errors;
//! integers longer than 4 continuation bytes are refused. What h2 checks
//! beyond HPACK (header names, UTF-8, pseudo-headers) is left to h2: the
//! shim forwards what it decodes as it decoded it.

use super::huffman::{self, HuffmanError};
use super::table::Table;

/// Why a header block is not valid HPACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the block ends inside a field")]
    Truncated,
    #[error("an integer is longer than 4 continuation bytes")]
    IntegerOverflow,
    #[error("index {0} is in neither table")]
    BadIndex(usize),
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
    #[error("dynamic table size update to {size} exceeds the allowed {max}")]
    SizeUpdateTooLarge { size: usize, max: usize },
    #[error("dynamic table size update after a header field")]
    SizeUpdateAfterField,
}

/// One connection's decoding state: the client encoder's dynamic table as
/// of the last block decoded.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: Table,
    /// The largest table a size update may ask for: the server's
    /// SETTINGS_HEADER_TABLE_SIZE.
    max_allowed: usize,
    /// Scratch for a name being inserted or Huffman-decoded.
    name_buf: Vec<u8>,
    /// Scratch for a Huffman-decoded value.
    value_buf: Vec<u8>,
}

/// Scratch kept between blocks up to this capacity; beyond it (after a huge
/// literal) it is freed so that an idle connection holds little.
const KEEP_SCRATCH: usize = 4096;

impl Decoder {
    /// A decoder whose table starts at, and may grow up to, `max_allowed`
    /// bytes (§4.2: the initial size is the setting's value).
    pub(crate) fn new(max_allowed: usize) -> Decoder {
        Decoder {
            table: Table::new(max_allowed),
            max_allowed,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Decodes one whole header block, calling `field(name, value,
    /// never_indexed)` for each field in order. On error the table may hold
    /// part of the block's insertions: the connection cannot go on.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8], bool),
    ) -> Result<(), DecodeError> {
        let result = self.decode_inner(block, &mut field);
        for buf in [&mut self.name_buf, &mut self.value_buf] {
            if buf.capacity() > KEEP_SCRATCH {
                *buf = Vec::new();
            }
        }
        result
    }

    fn decode_inner(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8], bool),
    ) -> Result<(), DecodeError> {
        let Decoder {
            table,
            max_allowed,
            name_buf,
            value_buf,
        } = self;
        let mut pos = 0;
        let mut seen_field = false;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(block, &mut pos, 7)?;
                let (name, value) = table.get(index).ok_or(DecodeError::BadIndex(index))?;
                field(name, value, false);
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing (§6.2.1): the name is
                // copied before the insertion may evict its source.
                let index = integer(block, &mut pos, 6)?;
                name_buf.clear();
                if index == 0 {
                    let (huff, raw) = string(block, &mut pos)?;
                    if huff {
                        huffman::decode(raw, name_buf)?;
                    } else {
                        name_buf.extend_from_slice(raw);
                    }
                } else {
                    let (name, _) = table.get(index).ok_or(DecodeError::BadIndex(index))?;
                    name_buf.extend_from_slice(name);
                }
                let value = value_of(block, &mut pos, value_buf)?;
                field(name_buf, value, false);
                table.insert(name_buf, value);
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3), only before any field
                // (§4.2; h2 holds clients to it).
                if seen_field {
                    return Err(DecodeError::SizeUpdateAfterField);
                }
                let size = integer(block, &mut pos, 5)?;
                if size > *max_allowed {
                    return Err(DecodeError::SizeUpdateTooLarge {
                        size,
                        max: *max_allowed,
                    });
                }
                table.set_max_size(size);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                let never_indexed = first & 0x10 != 0;
                let index = integer(block, &mut pos, 4)?;
                let name: &[u8] = if index == 0 {
                    let (huff, raw) = string(block, &mut pos)?;
                    if huff {
                        name_buf.clear();
                        huffman::decode(raw, name_buf)?;
                        name_buf
                    } else {
                        raw
                    }
                } else {
                    table.get(index).ok_or(DecodeError::BadIndex(index))?.0
                };
                let value = value_of(block, &mut pos, value_buf)?;
                field(name, value, never_indexed);
            }
            seen_field = true;
        }
        Ok(())
    }
}

/// An integer with an `prefix`-bit prefix (§5.1), at most 7 bits of prefix.
fn integer(block: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, DecodeError> {
    let mask = (1u8 << prefix) - 1;
    let first = block.get(*pos).ok_or(DecodeError::Truncated)? & mask;
    *pos += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = usize::from(mask);
    let mut shift = 0;
    loop {
        let b = *block.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(DecodeError::IntegerOverflow);
        }
    }
}

/// A string literal's header (§5.2): whether it is Huffman-coded, and its bytes.
fn string<'a>(block: &'a [u8], pos: &mut usize) -> Result<(bool, &'a [u8]), DecodeError> {
    let huff = block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= block.len())
        .ok_or(DecodeError::Truncated)?;
    let bytes = &block[*pos..end];
    *pos = end;
    Ok((huff, bytes))
}

/// A field value: the block's own bytes, or its Huffman decoding in `buf`.
fn value_of<'a>(
    block: &'a [u8],
    pos: &mut usize,
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], DecodeError> {
    let (huff, raw) = string(block, pos)?;
    if !huff {
        return Ok(raw);
    }
    buf.clear();
    huffman::decode(raw, buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests;
