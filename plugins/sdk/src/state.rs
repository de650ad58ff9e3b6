//! Accumulator state as bytes, so the host can checkpoint a window and restore it.

/// An accumulator that can be saved as bytes and loaded back.
///
/// Implemented for numbers, `bool`, `Option`, `String`, `Vec`, `BTreeMap`, `HashMap` and tuples, so most
/// accumulators need no code of their own; a struct of such fields gets it from [`state!`](crate::state).
/// The encoding is little-endian and fixed-width, stable across plugin rebuilds.
pub trait State: Sized {
    fn save(&self, out: &mut Vec<u8>);
    fn load(input: &mut &[u8]) -> Result<Self, String>;
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if input.len() < n {
        return Err(format!(
            "state is truncated: wanted {n} more bytes, {} left",
            input.len()
        ));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

macro_rules! num_state {
    ($($t:ty),*) => {$(
        impl State for $t {
            fn save(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn load(input: &mut &[u8]) -> Result<Self, String> {
                let bytes = take(input, std::mem::size_of::<$t>())?;
                Ok(<$t>::from_le_bytes(bytes.try_into().expect("length checked")))
            }
        }
    )*};
}
num_state!(f64, f32, i64, u64, i32, u32, i16, u16, i8, u8);

/// As a `u64`, so the bytes are the same on every target.
impl State for usize {
    fn save(&self, out: &mut Vec<u8>) {
        (*self as u64).save(out);
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        usize::try_from(u64::load(input)?).map_err(|e| e.to_string())
    }
}

/// A map's entries as saved: their number, then key and value of each.
fn load_entries<K: State, V: State, M: FromIterator<(K, V)>>(
    input: &mut &[u8],
) -> Result<M, String> {
    let n = u64::load(input)? as usize;
    (0..n)
        .map(|_| Ok((K::load(input)?, V::load(input)?)))
        .collect()
}

/// In key order, so equal maps save equal bytes.
impl<K: State + Ord, V: State> State for std::collections::BTreeMap<K, V> {
    fn save(&self, out: &mut Vec<u8>) {
        (self.len() as u64).save(out);
        for (k, v) in self {
            k.save(out);
            v.save(out);
        }
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        load_entries(input)
    }
}

/// In key order too (the map's own order changes from run to run), so equal maps save equal bytes.
impl<K: State + Ord + std::hash::Hash, V: State> State for std::collections::HashMap<K, V> {
    fn save(&self, out: &mut Vec<u8>) {
        let mut entries: Vec<(&K, &V)> = self.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        (entries.len() as u64).save(out);
        for (k, v) in entries {
            k.save(out);
            v.save(out);
        }
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        load_entries(input)
    }
}

/// Implements [`State`] for a struct from its fields, which must have it, saved in the order listed:
///
/// ```
/// use tributary_sdk::{decode, state, State};
///
/// #[derive(Default, Debug, PartialEq)]
/// struct Acc { sum: f64, count: u64, last: Option<String> }
/// state!(Acc { sum, count, last });
///
/// let acc = Acc { sum: 1.5, count: 2, last: Some("x".into()) };
/// let mut bytes = Vec::new();
/// acc.save(&mut bytes);
/// assert_eq!(decode::<Acc>(&bytes).unwrap(), acc);
/// ```
#[macro_export]
macro_rules! state {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::State for $ty {
            fn save(&self, out: &mut Vec<u8>) {
                $($crate::State::save(&self.$field, out);)+
            }
            fn load(input: &mut &[u8]) -> Result<Self, String> {
                Ok($ty { $($field: $crate::State::load(input)?),+ })
            }
        }
    };
}

impl State for bool {
    fn save(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        Ok(take(input, 1)?[0] != 0)
    }
}

impl<T: State> State for Option<T> {
    fn save(&self, out: &mut Vec<u8>) {
        self.is_some().save(out);
        if let Some(v) = self {
            v.save(out);
        }
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        Ok(if bool::load(input)? {
            Some(T::load(input)?)
        } else {
            None
        })
    }
}

impl<T: State> State for Vec<T> {
    fn save(&self, out: &mut Vec<u8>) {
        (self.len() as u64).save(out);
        self.iter().for_each(|v| v.save(out));
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        let n = u64::load(input)? as usize;
        (0..n).map(|_| T::load(input)).collect()
    }
}

impl State for String {
    fn save(&self, out: &mut Vec<u8>) {
        (self.len() as u64).save(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        let n = u64::load(input)? as usize;
        String::from_utf8(take(input, n)?.to_vec()).map_err(|e| e.to_string())
    }
}

macro_rules! tuple_state {
    ($($name:ident),+) => {
        impl<$($name: State),+> State for ($($name,)+) {
            #[allow(non_snake_case)]
            fn save(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.save(out);)+
            }
            fn load(input: &mut &[u8]) -> Result<Self, String> {
                Ok(($($name::load(input)?,)+))
            }
        }
    };
}
tuple_state!(A);
tuple_state!(A, B);
tuple_state!(A, B, C);
tuple_state!(A, B, C, D);

/// Decodes a whole state, rejecting trailing bytes (a sign the plugin's state layout changed).
pub fn decode<T: State>(mut bytes: &[u8]) -> Result<T, String> {
    let v = T::load(&mut bytes)?;
    if !bytes.is_empty() {
        return Err(format!(
            "state has {} unexpected trailing bytes",
            bytes.len()
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_structs_round_trip_and_save_the_same_bytes_for_the_same_map() {
        use std::collections::{BTreeMap, HashMap};
        let b: BTreeMap<String, (f64, u64)> =
            [("b".to_string(), (2.0, 1)), ("a".to_string(), (1.0, 3))].into();
        let mut buf = Vec::new();
        b.save(&mut buf);
        assert_eq!(decode::<BTreeMap<String, (f64, u64)>>(&buf).unwrap(), b);
        let h: HashMap<String, (f64, u64)> = b.clone().into_iter().collect();
        let mut hbuf = Vec::new();
        h.save(&mut hbuf);
        assert_eq!(hbuf, buf, "a HashMap saves in key order, like a BTreeMap");
        assert_eq!(decode::<HashMap<String, (f64, u64)>>(&hbuf).unwrap(), h);

        #[derive(Debug, Default, PartialEq)]
        struct Acc {
            top: BTreeMap<String, f64>,
            seen: usize,
            flag: u8,
        }
        crate::state!(Acc { top, seen, flag });
        let acc = Acc {
            top: [("x".to_string(), 1.5)].into(),
            seen: 9,
            flag: 1,
        };
        let mut buf = Vec::new();
        acc.save(&mut buf);
        assert_eq!(decode::<Acc>(&buf).unwrap(), acc);
        assert!(decode::<Acc>(&buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn round_trips() {
        let v: (f64, u64, Option<String>) = (1.5, 7, Some("x".into()));
        let mut buf = Vec::new();
        v.save(&mut buf);
        assert_eq!(decode::<(f64, u64, Option<String>)>(&buf).unwrap(), v);
        assert!(decode::<(f64, u64)>(&buf[..5])
            .unwrap_err()
            .contains("truncated"));
    }
}
