//! The HPACK index space (RFC 7541 §2.3): the static table, then the dynamic
//! table, newest entry first.

use std::collections::VecDeque;

use super::STATIC_TABLE;

/// Per-entry overhead in the size accounting (§4.1).
pub(crate) const ENTRY_OVERHEAD: usize = 32;

/// One dynamic entry: name and value in one allocation.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }
    fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table. Its size (sum of entry sizes) never exceeds `max_size`.
#[derive(Debug)]
pub(crate) struct Table {
    /// Newest first.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl Table {
    pub(crate) fn new(max_size: usize) -> Table {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// The field at `index` (1-based, static first), if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        match index {
            0 => None,
            i if i <= STATIC_TABLE.len() => Some(STATIC_TABLE[i - 1]),
            i => self
                .entries
                .get(i - STATIC_TABLE.len() - 1)
                .map(|e| (e.name(), e.value())),
        }
    }

    /// Inserts a field as the newest entry, evicting the oldest ones to make
    /// room (§4.4). A field larger than the whole table empties it and is
    /// not inserted.
    pub(crate) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        });
        self.size += size;
    }

    /// A dynamic table size update (§6.3), already checked against the
    /// bound the server allows.
    pub(crate) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            let Some(old) = self.entries.pop_back() else {
                break;
            };
            self.size -= old.size();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_entries_come_first_then_the_newest_dynamic_entry() {
        let mut t = Table::new(4096);
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(1), Some((&b":authority"[..], &b""[..])));
        assert_eq!(t.get(61), Some((&b"www-authenticate"[..], &b""[..])));
        assert_eq!(t.get(62), None);
        t.insert(b"a", b"1");
        t.insert(b"b", b"2");
        assert_eq!(t.get(62), Some((&b"b"[..], &b"2"[..])));
        assert_eq!(t.get(63), Some((&b"a"[..], &b"1"[..])));
        assert_eq!(t.get(64), None);
        assert_eq!(t.size(), 2 * 34);
    }

    #[test]
    fn inserting_evicts_the_oldest_entries_and_a_huge_entry_empties_the_table() {
        let mut t = Table::new(100);
        t.insert(b"a", &[b'x'; 30]); // 63
        t.insert(b"b", b""); // 33: 96 in all
        assert_eq!(t.len(), 2);
        t.insert(b"c", b""); // 33: "a" goes
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(63), Some((&b"b"[..], &b""[..])));
        assert_eq!(t.size(), 66);
        t.insert(b"d", &[b'y'; 80]); // 113 > 100
        assert_eq!((t.len(), t.size()), (0, 0));
        t.insert(b"e", b"");
        t.set_max_size(0);
        assert_eq!((t.len(), t.size()), (0, 0));
    }
}
