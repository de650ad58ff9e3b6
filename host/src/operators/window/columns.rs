//! The columns between a window stage and its plugin: the panes given to `finish` (slots, bounds, keys),
//! the key column of results, a batch's rows picked for `add`, and the order results go out in.

use super::*;

/// Sorts panes to emit by window end, start, then key (by value, not id), the order results go out in.
/// The few distinct keys are sorted by value once (stable, from id order, as a sort of the panes was
/// before), so the panes sort by integers; (end, start, key) is unique, so an unstable sort is exact.
pub(super) fn order(keys: &KeyTable, rank: &mut Vec<u32>, ready: &mut [schedule::Entry]) {
    if ready.len() < 2 {
        return;
    }
    let top = *ready.iter().map(|(_, _, k)| k).max().expect("not empty") as usize;
    if rank.len() <= top {
        rank.resize(top + 1, 0);
    }
    // The distinct keys, without sorting every pane's: marked in `rank`, then listed once each.
    const UNSEEN: u32 = u32::MAX;
    for &(_, _, key) in ready.iter() {
        rank[key as usize] = UNSEEN;
    }
    let mut ids: Vec<KeyId> = Vec::new();
    for &(_, _, key) in ready.iter() {
        if rank[key as usize] == UNSEEN {
            rank[key as usize] = 0;
            ids.push(key);
        }
    }
    ids.sort_unstable();
    ids.sort_by(|a, b| keys.key(*a).cmp(keys.key(*b)));
    for (i, id) in ids.iter().enumerate() {
        rank[*id as usize] = i as u32;
    }
    // Buckets come out by end, and a fixed window's start follows from its end: then only the panes of
    // each window need sorting, by key.
    if ready.is_sorted_by_key(|&(end, start, _)| (end, start)) {
        for window in ready.chunk_by_mut(|a, b| (a.0, a.1) == (b.0, b.1)) {
            window.sort_unstable_by_key(|&(_, _, key)| rank[key as usize]);
        }
    } else {
        ready.sort_unstable_by_key(|&(end, start, key)| (end, start, rank[key as usize]));
    }
}

/// The key column of result rows when every key is a string: the column `column::from_values` makes of
/// them (a dictionary, its strings in order of first use), built from the key ids without copying a key
/// per row or hashing its string. `None` when some key is not a string, or there is no row.
pub(super) fn string_keys(
    keys: &KeyTable,
    ids: impl Iterator<Item = KeyId> + Clone,
) -> Option<arrow_array::ArrayRef> {
    ids.clone().next()?;
    let mut first = FirstUse::new(ids.clone());
    let mut dict: Vec<&str> = Vec::new();
    let mut codes = Vec::with_capacity(ids.size_hint().0);
    for id in ids {
        let (code, new) = first.code(id);
        if new {
            let Value::Str(s) = &keys.key(id).0 else {
                return None;
            };
            dict.push(s);
        }
        codes.push(code);
    }
    column::strings(&dict, codes)
}

/// Codes for key ids in order of first use (the first id seen is 0), for a dictionary of the keys.
/// Looked up in a table indexed by id when the ids are dense enough, else in a map: a few panes firing
/// among a million keys must not cost a table of a million entries on every fire.
pub(super) struct FirstUse {
    pub(super) dense: Vec<u32>,
    sparse: hashbrown::HashMap<KeyId, u32, foldhash::fast::FixedState>,
    next: u32,
}

impl FirstUse {
    pub(super) fn new(ids: impl Iterator<Item = KeyId>) -> Self {
        let (n, top) = ids.fold((0, 0), |(n, top), id| (n + 1, top.max(id as usize)));
        let dense = if top < 4 * n + 1024 {
            vec![u32::MAX; top + 1]
        } else {
            Vec::new()
        };
        FirstUse {
            dense,
            sparse: hashbrown::HashMap::default(),
            next: 0,
        }
    }

    /// The id's code, and whether this is its first use.
    pub(super) fn code(&mut self, id: KeyId) -> (u32, bool) {
        let c = match self.dense.get_mut(id as usize) {
            Some(c) => c,
            None => self.sparse.entry(id).or_insert(u32::MAX),
        };
        if *c != u32::MAX {
            return (*c, false);
        }
        *c = self.next;
        self.next += 1;
        (*c, true)
    }
}

/// The panes as the plugin's `finish` sees them (ABI 0.4): in columns, made from the key ids, so a
/// string key is copied once per call however many panes (windows) share it, and no pane makes a
/// string of its own. `slots[i]` is the slot of pane `ready[i]`.
pub(super) fn plugin_panes(
    settings: &Settings,
    keys: &KeyTable,
    slots: Vec<u32>,
    ready: &[(i64, i64, KeyId)],
) -> PluginPanes {
    // A stage has one kind of window: its panes are all global or all bounded.
    let bounded = ready
        .first()
        .is_some_and(|&(end, start, _)| !global::is_global((start, end)));
    debug_assert!(ready
        .iter()
        .all(|&(end, start, _)| global::is_global((start, end)) != bounded));
    let bounds = bounded.then(|| Bounds {
        starts: ready.iter().map(|e| e.1).collect(),
        ends: ready.iter().map(|e| e.0).collect(),
    });
    let keys = match settings.key {
        None => PluginKeys::AllNull,
        Some(_) => key_column(keys, ready.iter().map(|e| e.2)),
    };
    PluginPanes {
        slots,
        bounds,
        keys,
    }
}

/// The type of a key in a key column (since ABI 0.2 a timestamp key is its milliseconds and a JSON
/// key its text); `None` for a null key.
fn key_type(key: &Key) -> Option<KeyType> {
    Some(match &key.0 {
        Value::Null => return None,
        Value::Bool(_) => KeyType::Boolean,
        Value::Int(_) | Value::Time(_) => KeyType::Int,
        Value::Float(_) => KeyType::Float,
        Value::Str(_) | Value::Json(_) => KeyType::Str,
    })
}

/// The panes' keys, one per pane, given by id: one column when the keys are of one type (a string
/// column's dictionary holds each key once, in order of first use, packed in one string), else a value
/// per pane.
fn key_column(keys: &KeyTable, ids: impl Iterator<Item = KeyId> + Clone) -> PluginKeys {
    let (ty, valid) = match key_shape(ids.clone().map(|id| key_type(keys.key(id)))) {
        KeyShape::AllNull => return PluginKeys::AllNull,
        KeyShape::Mixed => {
            return PluginKeys::Mixed(ids.map(|id| key_value(keys.key(id))).collect())
        }
        KeyShape::Column(ty, valid) => (ty, valid),
    };
    let values = match ty {
        KeyType::Boolean => KeyValues::Boolean(
            ids.map(|id| matches!(keys.key(id).0, Value::Bool(true)))
                .collect(),
        ),
        KeyType::Int => KeyValues::Int(
            ids.map(|id| match keys.key(id).0 {
                Value::Int(i) | Value::Time(i) => i,
                _ => 0,
            })
            .collect(),
        ),
        KeyType::Float => KeyValues::Float(
            ids.map(|id| match keys.key(id).0 {
                Value::Float(f) => f,
                _ => 0.0,
            })
            .collect(),
        ),
        KeyType::Str => {
            let mut first = FirstUse::new(ids.clone());
            let mut dict = wit::PackedStrings::new();
            let codes = ids
                .map(|id| {
                    let (code, new) = first.code(id);
                    if new {
                        match &keys.key(id).0 {
                            Value::Str(s) => dict.push(s),
                            Value::Json(j) => dict.push(j),
                            // A null key's placeholder: `valid` says it is null.
                            _ => dict.push(""),
                        };
                    }
                    code
                })
                .collect();
            KeyValues::Str(KeyDict { dict, codes })
        }
    };
    PluginKeys::Column(KeyColumn { values, valid })
}

/// A free accumulator slot, or a new one.
pub(super) fn alloc_slot(free_slots: &mut Vec<u32>, next_slot: &mut u32) -> u32 {
    free_slots.pop().unwrap_or_else(|| {
        *next_slot += 1;
        *next_slot - 1
    })
}

/// A key as `finish` sees it in a list of keys of different types (ABI 0.4's `mixed`): typed, a
/// timestamp as milliseconds, a JSON key as its text; `None` for a null key.
fn key_value(key: &Key) -> Option<wit::Value> {
    Some(match &key.0 {
        Value::Null => return None,
        Value::Bool(b) => wit::Value::Boolean(*b),
        Value::Int(i) | Value::Time(i) => wit::Value::Int(*i),
        Value::Float(f) => wit::Value::Float(*f),
        Value::Str(s) => wit::Value::Str(s.to_string()),
        Value::Json(j) => wit::Value::Str(j.to_string()),
    })
}

/// The rows of an ABI batch listed in `rows`, in that order.
pub(super) fn gather(input: &wit::Batch, rows: &[u32]) -> wit::Batch {
    let columns = input
        .columns
        .iter()
        .map(|c| match c {
            wit::Column::Float(v) => {
                wit::Column::Float(rows.iter().map(|&r| v[r as usize]).collect())
            }
            wit::Column::Int(v) => wit::Column::Int(rows.iter().map(|&r| v[r as usize]).collect()),
            wit::Column::Boolean(v) => {
                wit::Column::Boolean(rows.iter().map(|&r| v[r as usize]).collect())
            }
            wit::Column::Str(d) => wit::Column::Str(wit::DictColumn {
                dict: d.dict.clone(),
                codes: rows.iter().map(|&r| d.codes[r as usize]).collect(),
            }),
        })
        .collect();
    wit::Batch {
        rows: rows.len() as u32,
        columns,
    }
}
