//! Decoding HPACK's Huffman-coded strings (RFC 7541 §5.2, Appendix B).
//!
//! The code of Appendix B is *canonical*: codes of one length are
//! consecutive integers in the order of their symbols, and each length's
//! first code follows the previous length's last one. So the table is fully
//! given by each symbol's code length ([`CODE_LENGTHS`]), and decoding needs
//! no tree: the next 32 input bits, read as a number, are below the
//! left-aligned end of the length-`l` codes exactly when the next code is at
//! most `l` bits long. A symbol costs a few comparisons, and nothing is
//! allocated. The tests check every symbol against an independent decoder.

/// Why a Huffman-coded string is invalid (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HuffmanError {
    /// The string ends in more than 7 bits of padding, or in padding that
    /// is not a prefix of EOS (all ones).
    #[error("invalid Huffman padding")]
    Padding,
    /// The EOS symbol appears in the string.
    #[error("EOS symbol inside a Huffman-coded string")]
    Eos,
}

/// Code length in bits of each symbol: bytes 0–255, then EOS (256).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20 ' '..'/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30 '0'..'?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40 '@'..'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50 'P'..'_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60 '`'..'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70 'p'..0x7f
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];

const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// The canonical code in decoding form.
struct Code {
    /// For each length `l`: one past the last length-`l` code, shifted to
    /// the top of 32 bits (so `u64`: for `l` = 30 it is exactly 2³²).
    limit: [u64; MAX_LEN + 1],
    /// For each length: its first code (as an `l`-bit number).
    first: [u32; MAX_LEN + 1],
    /// For each length: where its symbols start in `symbols`.
    offset: [u16; MAX_LEN + 1],
    /// Symbols ordered by (code length, symbol): the canonical order.
    symbols: [u16; 257],
    /// The shortest code length.
    min_len: usize,
}

const fn build() -> Code {
    let mut count = [0u32; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[CODE_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut code = Code {
        limit: [0; MAX_LEN + 1],
        first: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        symbols: [0; 257],
        min_len: 0,
    };
    let (mut next_code, mut next_index) = (0u32, 0u16);
    let mut len = 1;
    while len <= MAX_LEN {
        next_code <<= 1;
        code.first[len] = next_code;
        code.offset[len] = next_index;
        let mut s = 0;
        while s < 257 {
            if CODE_LENGTHS[s] as usize == len {
                code.symbols[next_index as usize] = s as u16;
                next_index += 1;
                next_code += 1;
            }
            s += 1;
        }
        code.limit[len] = (next_code as u64) << (32 - len);
        if code.min_len == 0 && count[len] > 0 {
            code.min_len = len;
        }
        len += 1;
    }
    code
}

static CODE: Code = build();

/// Appends the decoding of the Huffman-coded `input` to `out`.
pub(crate) fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let code = &CODE;
    // Input bits not yet decoded, in the low `avail` bits of `acc`.
    let mut acc: u64 = 0;
    let mut avail: usize = 0;
    let mut bytes = input.iter();
    out.reserve(input.len() + input.len() / 2);
    loop {
        while avail <= 56 {
            match bytes.next() {
                Some(&b) => {
                    acc = acc << 8 | u64::from(b);
                    avail += 8;
                }
                None => break,
            }
        }
        if avail == 0 {
            return Ok(());
        }
        // The next 32 bits, padded with ones past the end (EOS is all ones,
        // so padding never completes a shorter code).
        let window = if avail >= 32 {
            (acc >> (avail - 32)) & 0xffff_ffff
        } else {
            ((acc << (32 - avail)) | ((1u64 << (32 - avail)) - 1)) & 0xffff_ffff
        };
        let mut len = code.min_len;
        while window >= code.limit[len] {
            len += 1;
            // The code is complete: the limit of the longest length is 2³²,
            // above every window.
        }
        if len > avail {
            // What is left is padding: at most 7 bits, all ones.
            let rest = acc & ((1u64 << avail) - 1);
            if avail > 7 || rest != (1u64 << avail) - 1 {
                return Err(HuffmanError::Padding);
            }
            return Ok(());
        }
        let bits = (window >> (32 - len)) as u32;
        let symbol = code.symbols[(code.offset[len] as u32 + bits - code.first[len]) as usize];
        if symbol == EOS {
            return Err(HuffmanError::Eos);
        }
        out.push(symbol as u8);
        avail -= len;
        acc &= (1u64 << avail) - 1;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The canonical code of `symbol`, as (code, length).
    fn code_of(symbol: usize) -> (u32, usize) {
        let len = CODE_LENGTHS[symbol] as usize;
        let index = CODE.symbols[CODE.offset[len] as usize..]
            .iter()
            .position(|&s| s as usize == symbol)
            .expect("every symbol has a code");
        (CODE.first[len] + index as u32, len)
    }

    /// Huffman-encodes `bytes` with the canonical code, EOS-padded.
    pub(crate) fn encode(bytes: &[u8]) -> Vec<u8> {
        let (mut acc, mut bits, mut out) = (0u64, 0usize, Vec::new());
        for &b in bytes {
            let (code, len) = code_of(usize::from(b));
            acc = acc << len | u64::from(code);
            bits += len;
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
                acc &= (1u64 << bits) - 1;
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
        }
        out
    }

    fn decoded(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    #[test]
    fn the_code_lengths_form_a_complete_prefix_code() {
        // Kraft: the sum of 2^-len is exactly 1 (scaled by 2^30).
        let sum: u64 = CODE_LENGTHS.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(sum, 1 << 30);
        assert_eq!(CODE.min_len, 5);
        assert_eq!(CODE.limit[MAX_LEN], 1 << 32);
    }

    #[test]
    fn codes_match_the_rfc_table_where_it_is_easy_to_check() {
        // RFC 7541 Appendix B, a few rows.
        assert_eq!(code_of(usize::from(b'0')), (0x0, 5));
        assert_eq!(code_of(usize::from(b' ')), (0x14, 6));
        assert_eq!(code_of(usize::from(b'a')), (0x3, 5));
        assert_eq!(code_of(usize::from(b'/')), (0x18, 6));
        assert_eq!(code_of(0), (0x1ff8, 13));
        assert_eq!(code_of(0xff), (0x3ffffee, 26));
        assert_eq!(code_of(256), (0x3fffffff, 30));
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 7541 C.4.1–C.4.3 and C.6.1.
        let cases: [(&str, &[u8]); 5] = [
            ("f1e3c2e5f23a6ba0ab90f4ff", b"www.example.com"),
            ("a8eb10649cbf", b"no-cache"),
            ("25a849e95ba97d7f", b"custom-key"),
            ("25a849e95bb8e8b4bf", b"custom-value"),
            ("6402", b"302"),
        ];
        for (hex, want) in cases {
            let input: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            assert_eq!(decoded(&input).as_deref(), Ok(want), "{hex}");
            assert_eq!(encode(want), input);
        }
    }

    #[test]
    fn every_symbol_decodes_like_an_independent_decoder_decodes_it() {
        let mut other = loona_hpack::huffman::HuffmanDecoder::new();
        for b in 0..=255u8 {
            for s in [vec![b], vec![b, b'a', b], vec![b'/', b, b, b]] {
                let coded = encode(&s);
                assert_eq!(decoded(&coded), Ok(s.clone()), "symbol {b:#04x}");
                assert_eq!(other.decode(&coded).ok(), Some(s), "symbol {b:#04x}");
            }
        }
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // "a" is 00011 + 3 bits of padding 111 → 0x1f.
        assert_eq!(decoded(&[0x1f]), Ok(b"a".to_vec()));
        // Padding with a zero bit.
        assert_eq!(decoded(&[0x1e]), Err(HuffmanError::Padding));
        // A whole byte of padding after "a": 8 + 3 bits.
        assert_eq!(decoded(&[0x1f, 0xff]), Err(HuffmanError::Padding));
        // EOS (30 ones) followed by the 2 bits that end the 4th byte.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        assert_eq!(decoded(&[]), Ok(Vec::new()));
    }

    proptest::proptest! {
        #[test]
        fn random_strings_round_trip(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            proptest::prop_assert_eq!(decoded(&encode(&s)), Ok(s));
        }

        #[test]
        fn random_input_is_judged_like_the_independent_decoder_judges_it(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let mut other = loona_hpack::huffman::HuffmanDecoder::new();
            proptest::prop_assert_eq!(decoded(&input).ok(), other.decode(&input).ok());
        }
    }
}
