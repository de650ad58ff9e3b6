//! A window stage's keys as small integers: pane tables then hash and order integers, and a string key
//! is hashed once per batch (per dictionary entry), not once per record and table.

use crate::record::{Key, StrKey, Value};

pub type KeyId = u32;

/// Keys with at least one open pane, and those seen in the batch being folded in.
#[derive(Clone, Default)]
pub struct KeyTable {
    ids: hashbrown::HashMap<Key, KeyId, foldhash::fast::FixedState>,
    keys: Vec<Key>,
    /// Open panes per key; a key without any is forgotten.
    panes: Vec<u32>,
    live: Vec<bool>,
    free: Vec<KeyId>,
    /// Ids made since the last sweep.
    fresh: Vec<KeyId>,
}

impl KeyTable {
    pub fn id(&mut self, key: Key) -> KeyId {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = key.clone();
                self.live[id as usize] = true;
                id
            }
            None => {
                self.keys.push(key.clone());
                self.panes.push(0);
                self.live.push(true);
                (self.keys.len() - 1) as KeyId
            }
        };
        self.ids.insert(key, id);
        self.fresh.push(id);
        id
    }

    /// The id of the string key `s`; a key is made only the first time.
    pub fn str_id(&mut self, s: &str) -> KeyId {
        match self.ids.get(&StrKey(s)) {
            Some(&id) => id,
            None => self.id(Key(Value::Str(s.into()))),
        }
    }

    pub fn key(&self, id: KeyId) -> &Key {
        &self.keys[id as usize]
    }

    /// A pane of this key opened.
    pub fn acquire(&mut self, id: KeyId) {
        self.panes[id as usize] += 1;
    }

    /// A pane of this key closed for good.
    pub fn release(&mut self, id: KeyId) {
        self.panes[id as usize] -= 1;
        if self.panes[id as usize] == 0 {
            self.forget(id);
        }
    }

    /// Forgets the keys made since the last sweep that no pane took (their records were set aside).
    pub fn sweep(&mut self) {
        for id in std::mem::take(&mut self.fresh) {
            if self.panes[id as usize] == 0 {
                self.forget(id);
            }
        }
    }

    fn forget(&mut self, id: KeyId) {
        if !std::mem::replace(&mut self.live[id as usize], false) {
            return;
        }
        let key = std::mem::replace(&mut self.keys[id as usize], Key(Value::Null));
        self.ids.remove(&key);
        self.free.push(id);
    }

    /// Keys known, for tests: the table must not grow with keys whose panes are gone.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_without_panes_are_forgotten_and_ids_reused() {
        let mut t = KeyTable::default();
        let a = t.id(Key(Value::Str("a".into())));
        let b = t.id(Key(Value::Str("b".into())));
        assert_eq!(t.id(Key(Value::Str("a".into()))), a);
        t.acquire(a);
        t.sweep();
        assert_eq!(t.len(), 1, "b had no pane");
        let c = t.id(Key(Value::Int(3)));
        assert_eq!(c, b, "b's id is reused");
        t.acquire(c);
        t.acquire(a);
        t.release(a);
        assert_eq!(t.key(a), &Key(Value::Str("a".into())));
        t.release(a);
        t.sweep();
        assert_eq!(t.len(), 1);
        assert_eq!(t.key(c), &Key(Value::Int(3)));
    }

    #[test]
    fn a_borrowed_string_finds_its_key_and_no_other() {
        let mut t = KeyTable::default();
        let a = t.id(Key(Value::Str("a".into())));
        let json = t.id(Key(Value::Json("a".into())));
        assert_ne!(a, json);
        assert_eq!(t.str_id("a"), a, "the string key, not the JSON one");
        let len = t.len();
        let b = t.str_id("b");
        assert_eq!(t.len(), len + 1);
        assert_eq!(t.id(Key(Value::Str("b".into()))), b);
    }
}
