//! The panes an aggregate's `finish` reads. ABI 0.4 passes them in columns ([`Panes`]); the window
//! operator builds those directly from its key ids. The older ABIs take a record per pane ([`Pane`]),
//! made here from the columns; tests and benchmarks can also start from a list of panes.

use super::bindings::aggregate::exports::tributary::plugin::aggregate::{
    Bounds, KeyColumn, KeyDict, KeyValues, Keys, Panes,
};
use super::bindings::types as wit;
use std::collections::HashMap;

/// One pane as the ABIs before 0.4 pass it: its slot, its window's bounds (`None` for the global
/// window) and its key (`None` without a key, or for a null key).
#[derive(Clone, Debug)]
pub struct Pane {
    pub slot: u32,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub key: Option<wit::Value>,
}

impl Panes {
    /// How many panes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Pane `i`'s key.
    pub fn key(&self, i: usize) -> Option<wit::Value> {
        match &self.keys {
            Keys::AllNull => None,
            Keys::Mixed(keys) => keys[i].clone(),
            Keys::Column(c) => {
                if c.valid.as_ref().is_some_and(|v| !v[i]) {
                    return None;
                }
                Some(match &c.values {
                    KeyValues::Boolean(v) => wit::Value::Boolean(v[i]),
                    KeyValues::Int(v) => wit::Value::Int(v[i]),
                    KeyValues::Float(v) => wit::Value::Float(v[i]),
                    KeyValues::Str(d) => wit::Value::Str(d.dict.get(d.codes[i]).to_string()),
                })
            }
        }
    }

    /// The panes one record each, as the ABIs before 0.4 take them.
    pub fn list(&self) -> Vec<Pane> {
        (0..self.len())
            .map(|i| Pane {
                slot: self.slots[i],
                start: self.bounds.as_ref().map(|b| b.starts[i]),
                end: self.bounds.as_ref().map(|b| b.ends[i]),
                key: self.key(i),
            })
            .collect()
    }

    /// The columns of a list of panes, every one of them bounded or every one global (a stage has
    /// one kind of window). String keys are dictionary-encoded.
    ///
    /// # Panics
    /// When some panes have bounds and others not.
    pub fn from_list(panes: &[Pane]) -> Panes {
        let bounded = panes.first().is_some_and(|p| p.start.is_some());
        assert!(
            panes
                .iter()
                .all(|p| p.start.is_some() == bounded && p.end.is_some() == bounded),
            "the panes of one `finish` call are all bounded or all global"
        );
        let bounds = bounded.then(|| Bounds {
            starts: panes.iter().map(|p| p.start.unwrap_or_default()).collect(),
            ends: panes.iter().map(|p| p.end.unwrap_or_default()).collect(),
        });
        Panes {
            slots: panes.iter().map(|p| p.slot).collect(),
            bounds,
            keys: keys(panes.iter().map(|p| p.key.as_ref())),
        }
    }
}

/// The type of a non-null key, as a key column would hold it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyType {
    Boolean,
    Int,
    Float,
    Str,
}

/// The keys of a `finish` call, from the type of each pane's key (`None` for a null key): how they
/// cross, and, when they make one column, the validity to send with it. The caller then fills the
/// column's values ([`KeyType`] says which), or the `mixed` list.
pub enum KeyShape {
    AllNull,
    Column(KeyType, Option<Vec<bool>>),
    Mixed,
}

pub fn key_shape(types: impl Iterator<Item = Option<KeyType>> + Clone) -> KeyShape {
    let mut common = None;
    let mut nulls = false;
    for ty in types.clone() {
        match (ty, common) {
            (None, _) => nulls = true,
            (Some(t), None) => common = Some(t),
            (Some(t), Some(c)) if t != c => return KeyShape::Mixed,
            _ => {}
        }
    }
    match common {
        None => KeyShape::AllNull,
        Some(ty) => KeyShape::Column(ty, nulls.then(|| types.map(|t| t.is_some()).collect())),
    }
}

fn type_of(v: &wit::Value) -> KeyType {
    match v {
        wit::Value::Boolean(_) => KeyType::Boolean,
        wit::Value::Int(_) => KeyType::Int,
        wit::Value::Float(_) => KeyType::Float,
        wit::Value::Str(_) => KeyType::Str,
    }
}

/// Keys given one per pane as the column or list that carries them.
fn keys<'a>(keys: impl Iterator<Item = Option<&'a wit::Value>> + Clone) -> Keys {
    let (ty, valid) = match key_shape(keys.clone().map(|k| k.map(type_of))) {
        KeyShape::AllNull => return Keys::AllNull,
        KeyShape::Mixed => return Keys::Mixed(keys.map(|k| k.cloned()).collect()),
        KeyShape::Column(ty, valid) => (ty, valid),
    };
    let values = match ty {
        KeyType::Boolean => KeyValues::Boolean(
            keys.map(|k| matches!(k, Some(wit::Value::Boolean(true))))
                .collect(),
        ),
        KeyType::Int => KeyValues::Int(
            keys.map(|k| match k {
                Some(wit::Value::Int(i)) => *i,
                _ => 0,
            })
            .collect(),
        ),
        KeyType::Float => KeyValues::Float(
            keys.map(|k| match k {
                Some(wit::Value::Float(f)) => *f,
                _ => 0.0,
            })
            .collect(),
        ),
        KeyType::Str => {
            let mut code: HashMap<&str, u32> = HashMap::new();
            let mut dict = wit::PackedStrings::new();
            let codes = keys
                .map(|k| {
                    let s = match k {
                        Some(wit::Value::Str(s)) => s.as_str(),
                        _ => "",
                    };
                    *code.entry(s).or_insert_with(|| dict.push(s))
                })
                .collect();
            KeyValues::Str(KeyDict { dict, codes })
        }
    };
    Keys::Column(KeyColumn { values, valid })
}

impl wit::PackedStrings {
    /// No strings.
    pub fn new() -> Self {
        wit::PackedStrings {
            text: String::new(),
            offsets: vec![0],
        }
    }

    /// Adds a string; returns its index.
    pub fn push(&mut self, s: &str) -> u32 {
        self.text.push_str(s);
        self.offsets.push(self.text.len() as u32);
        self.offsets.len() as u32 - 2
    }

    /// String `i`.
    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        &self.text[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

impl Default for wit::PackedStrings {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(slot: u32, key: Option<wit::Value>) -> Pane {
        Pane {
            slot,
            start: Some(0),
            end: Some(10),
            key,
        }
    }

    /// The generated `Value` has no `PartialEq`.
    fn same(a: &[Pane], b: &[Pane]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn keys_of_one_type_make_a_column_and_a_mix_a_list_and_both_give_back_the_panes() {
        let s = |s: &str| Some(wit::Value::Str(s.into()));
        let strings = [pane(0, s("rock")), pane(1, None), pane(2, s("rock"))];
        let panes = Panes::from_list(&strings);
        let Keys::Column(c) = &panes.keys else {
            panic!("{:?}", panes.keys)
        };
        assert_eq!(c.valid, Some(vec![true, false, true]));
        let KeyValues::Str(d) = &c.values else {
            panic!()
        };
        assert_eq!(
            (d.dict.text.as_str(), d.codes.as_slice()),
            ("rock", &[0, 1, 0][..]),
            "each key once"
        );
        assert_eq!((d.dict.get(0), d.dict.get(1)), ("rock", ""));
        assert!(same(&panes.list(), &strings));
        let mixed = [pane(0, s("7")), pane(1, Some(wit::Value::Int(7)))];
        let panes = Panes::from_list(&mixed);
        assert!(matches!(panes.keys, Keys::Mixed(_)));
        assert!(same(&panes.list(), &mixed));
        let none = [pane(3, None)];
        assert!(matches!(Panes::from_list(&none).keys, Keys::AllNull));
        assert!(same(&Panes::from_list(&none).list(), &none));
    }
}
