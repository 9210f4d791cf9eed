//! Allocation tokens: what Allocate hands each container and what every
//! Admit must carry. Minted here, where allocations are recorded.

/// 128 random bits, hex.
pub(super) fn mint() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_128_bits_of_hex_and_differ() {
        let a = super::mint().unwrap();
        let b = super::mint().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
