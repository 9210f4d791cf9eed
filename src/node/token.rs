//! Allocation tokens: what Allocate hands each container and what every
//! Admit must carry. Minted here, where allocations are recorded.

/// 128 random bits, hex.
pub(super) fn mint() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the daemon keeps of a token: its SHA-256, hex. The node knows an
/// allocation by this key and every call's token is hashed to find it, so
/// neither the allocations file nor the node's memory holds a token that
/// could be read back and used (issue 16, item 1). Tokens are 128 random
/// bits: no salt or slow hash is needed against guessing.
pub fn key(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_is_the_tokens_sha256() {
        assert_eq!(
            super::key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tokens_are_128_bits_of_hex_and_differ() {
        let a = super::mint().unwrap();
        let b = super::mint().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
