//! Accumulator state as bytes, so the host can checkpoint a window and restore it.

/// An accumulator that can be saved as bytes and loaded back.
///
/// Implemented for numbers, `bool`, `Option`, `String`, `Vec` and tuples, so most accumulators need no
/// code of their own. The encoding is little-endian and fixed-width, stable across plugin rebuilds.
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
num_state!(f64, f32, i64, u64, i32, u32);

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
