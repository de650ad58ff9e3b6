//! `top_k`: per window and key, the `k` values of a string field `by` with the largest total of a
//! numeric `field`, as up to `k` rows (fewer when the window has fewer distinct values).
//!
//! Config: `field` (the number to total), `by` (the string field to rank), `k` (how many, at least 1),
//! and optionally `mean_as` (a name; see below).
//! Results, one row per ranked value: `rank` (int, 1 for the largest total), the value of `by` under
//! the name `by` gives (a string, e.g. `artist`), and `total` (float). With `mean_as = "genre_avg"`,
//! every row also carries `genre_avg` (float): the mean of `field` over all records of the window and
//! key, summed in arrival order as `average` does, so a sink can rank keys by it (the default pipeline
//! shows the artists of the 5 genres with the largest mean this way, with no join).
//!
//! Ties: equal totals are ranked by the value of `by`, ascending (byte order), so the result does not
//! depend on the order records arrive in; ranks are consecutive (1, 2, 3) even for equal totals.
//!
//! The accumulator keeps a total for every distinct value seen in the window: the top `k` of a merged
//! session or of a window restored from a checkpoint can only be exact if values outside an earlier
//! top `k` are kept too.

use std::collections::BTreeMap;
use tributary_sdk::*;

pub struct TopK {
    field: String,
    by: String,
    k: usize,
    mean_as: Option<String>,
}

/// The total of `field` per value of `by` (ordered by value, so saved state is deterministic), and the
/// sum and count of every record for `mean_as`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    by_value: BTreeMap<String, f64>,
    sum: f64,
    count: u64,
}

impl State for Totals {
    fn save(&self, out: &mut Vec<u8>) {
        (self.by_value.len() as u64).save(out);
        for (value, total) in &self.by_value {
            value.save(out);
            total.save(out);
        }
        self.sum.save(out);
        self.count.save(out);
    }
    fn load(input: &mut &[u8]) -> Result<Self, String> {
        let n = u64::load(input)?;
        let mut by_value = BTreeMap::new();
        for _ in 0..n {
            let value = String::load(input)?;
            by_value.insert(value, f64::load(input)?);
        }
        Ok(Totals {
            by_value,
            sum: f64::load(input)?,
            count: u64::load(input)?,
        })
    }
}

impl TopK {
    /// The `k` largest totals, ties by value ascending.
    fn top<'a>(&self, acc: &'a Totals) -> Vec<(&'a str, f64)> {
        let mut all: Vec<(&str, f64)> =
            acc.by_value.iter().map(|(v, t)| (v.as_str(), *t)).collect();
        // The map is in value order and the sort is stable, so equal totals stay by value ascending.
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(self.k);
        all
    }
}

impl Aggregate for TopK {
    type Acc = Totals;

    fn init(config: &Config) -> Result<Self, String> {
        config.only(&["field", "by", "k", "mean_as"])?;
        let k = match config.get("k") {
            Some(ConfigValue::Integer(k)) if *k >= 1 => *k as usize,
            Some(other) => {
                return Err(format!(
                    "config key `k` must be a whole number of at least 1, like `k = 3`; found {other:?}"
                ))
            }
            None => return Err("missing config key `k`: add `k = 3` to the stage's config table".into()),
        };
        let by = config.str("by")?.to_string();
        if ["rank", "total"].contains(&by.as_str()) {
            return Err(format!(
                "config key `by` is `{by}`, which is also the name of an output; rank a field with another name"
            ));
        }
        let mean_as = match config.get("mean_as") {
            None => None,
            Some(_) => Some(config.str("mean_as")?.to_string()),
        };
        if let Some(m) = &mean_as {
            if ["rank", "total", by.as_str()].contains(&m.as_str()) {
                return Err(format!(
                    "config key `mean_as` is `{m}`, which is already an output; name the mean differently, like `mean_as = \"mean\"`"
                ));
            }
        }
        Ok(TopK {
            field: config.str("field")?.to_string(),
            by,
            k,
            mean_as,
        })
    }

    fn spec(&self) -> Spec {
        let spec = Spec::new()
            .input(Field::float(&self.field))
            .input(Field::str(&self.by))
            .output(Field::int("rank"))
            .output(Field::str(&self.by))
            .output(Field::float("total"));
        match &self.mean_as {
            Some(m) => spec.output(Field::float(m)),
            None => spec,
        }
    }

    fn add(&self, acc: &mut Self::Acc, row: Row<'_>) -> Result<(), String> {
        let (by, x) = (row.str(1), row.float(0));
        // Look up before inserting: most rows add to a value already seen, with no allocation.
        match acc.by_value.get_mut(by) {
            Some(total) => *total += x,
            None => {
                acc.by_value.insert(by.to_string(), x);
            }
        }
        acc.sum += x;
        acc.count += 1;
        Ok(())
    }

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        for (value, total) in &other.by_value {
            *acc.by_value.entry(value.clone()).or_insert(0.0) += total;
        }
        acc.sum += other.sum;
        acc.count += other.count;
    }

    fn finish(&self, acc: &Self::Acc, _window: &Window, out: &mut RowWriter) {
        for (rank, (value, total)) in self.top(acc).into_iter().enumerate() {
            out.int(rank as i64 + 1).str(value).float(total);
            if self.mean_as.is_some() {
                out.float(acc.sum / acc.count as f64);
            }
        }
    }
}

export_aggregate!(TopK);

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_sdk::aggregate::Instance;

    fn top_k(k: i64) -> Instance<TopK> {
        Instance::new(
            TopK::init(&Config::from_pairs(&[
                ("field", "streams".into()),
                ("by", "artist".into()),
                ("k", ConfigValue::Integer(k)),
            ]))
            .unwrap(),
        )
    }

    /// Rows of (slot, artist, streams) as one batch.
    fn add(agg: &mut Instance<TopK>, rows: &[(u32, &str, f64)]) {
        let mut dict: Vec<String> = Vec::new();
        let codes = rows
            .iter()
            .map(|(_, a, _)| match dict.iter().position(|d| d == a) {
                Some(i) => i as u32,
                None => {
                    dict.push(a.to_string());
                    dict.len() as u32 - 1
                }
            })
            .collect();
        let slots: Vec<u32> = rows.iter().map(|r| r.0).collect();
        let batch = Batch {
            rows: rows.len(),
            columns: vec![
                Column::Float(rows.iter().map(|r| r.2).collect()),
                Column::Str(DictColumn { dict, codes }),
            ],
        };
        assert!(agg.add(&slots, &batch).is_empty());
    }

    /// The result rows as (slot index, rank, artist, total).
    fn rows(f: &Finished) -> Vec<(u32, i64, String, f64)> {
        let (Column::Int(rank), Column::Str(artist), Column::Float(total)) =
            (&f.columns[0], &f.columns[1], &f.columns[2])
        else {
            panic!("columns: {:?}", f.columns)
        };
        (0..f.rows.len())
            .map(|i| (f.rows[i], rank[i], artist.get(i).to_string(), total[i]))
            .collect()
    }

    #[test]
    fn ranks_the_k_largest_totals_per_slot() {
        let mut agg = top_k(2);
        add(
            &mut agg,
            &[
                (0, "a", 1.0),
                (0, "b", 5.0),
                (0, "a", 3.0),
                (0, "c", 2.0),
                (1, "z", 7.0),
            ],
        );
        assert_eq!(
            rows(&agg.finish(&[0, 1, 2])),
            [
                (0, 1, "b".into(), 5.0),
                (0, 2, "a".into(), 4.0),
                (1, 1, "z".into(), 7.0),
            ],
            "slot 1 has one value, the empty slot 2 none"
        );
        assert_eq!(agg.finish(&[0]).valid, vec![None, None, None]);
    }

    #[test]
    fn ties_go_to_the_smaller_value_whatever_the_order_of_arrival() {
        for order in [["b", "a", "c"], ["c", "b", "a"], ["a", "c", "b"]] {
            let mut agg = top_k(2);
            for artist in order {
                add(&mut agg, &[(0, artist, 2.0)]);
            }
            let got: Vec<String> = rows(&agg.finish(&[0])).into_iter().map(|r| r.2).collect();
            assert_eq!(got, ["a", "b"], "arrival order {order:?}");
        }
    }

    #[test]
    fn merge_keeps_values_outside_either_top_k() {
        // `c` is in neither slot's top 1 but is the largest after the merge.
        let mut agg = top_k(1);
        add(
            &mut agg,
            &[(0, "a", 5.0), (0, "c", 4.0), (1, "b", 6.0), (1, "c", 4.0)],
        );
        agg.merge(0, 1);
        assert_eq!(rows(&agg.finish(&[0])), [(0, 1, "c".into(), 8.0)]);
        assert!(
            rows(&agg.finish(&[1])).is_empty(),
            "the merged slot is reset"
        );
    }

    #[test]
    fn state_round_trips_every_total() {
        let mut agg = top_k(3);
        add(
            &mut agg,
            &[(0, "a", 1.5), (0, "b", 2.5), (0, "ünï", 3.5), (0, "d", 0.5)],
        );
        let saved = agg.save(0);
        let mut restored = top_k(3);
        restored.load(4, &saved).unwrap();
        add(&mut restored, &[(4, "d", 10.0)]);
        assert_eq!(
            rows(&restored.finish(&[4])),
            [
                (0, 1, "d".into(), 10.5),
                (0, 2, "ünï".into(), 3.5),
                (0, 3, "b".into(), 2.5),
            ]
        );
        assert!(restored.load(5, &saved[..saved.len() - 1]).is_err());
    }

    #[test]
    fn mean_as_adds_the_mean_of_the_whole_key_to_every_row() {
        let mut agg = Instance::new(
            TopK::init(&Config::from_pairs(&[
                ("field", "streams".into()),
                ("by", "artist".into()),
                ("k", ConfigValue::Integer(1)),
                ("mean_as", "genre_avg".into()),
            ]))
            .unwrap(),
        );
        add(&mut agg, &[(0, "a", 1.0), (0, "b", 2.0), (1, "b", 6.0)]);
        agg.merge(0, 1);
        let saved = agg.save(0);
        let mut restored = Instance::new(
            TopK::init(&Config::from_pairs(&[
                ("field", "streams".into()),
                ("by", "artist".into()),
                ("k", ConfigValue::Integer(1)),
                ("mean_as", "genre_avg".into()),
            ]))
            .unwrap(),
        );
        restored.load(0, &saved).unwrap();
        let f = restored.finish(&[0]);
        assert_eq!(f.columns.len(), 4);
        assert_eq!(f.columns[2], Column::Float(vec![8.0]), "b's total");
        assert_eq!(f.columns[3], Column::Float(vec![3.0]), "(1 + 2 + 6) / 3");
    }

    #[test]
    fn config_errors_say_what_to_write() {
        let init = |pairs: &[(&str, ConfigValue)]| TopK::init(&Config::from_pairs(pairs)).err();
        let base = [("field", "streams".into()), ("by", "artist".into())];
        assert!(init(&base).unwrap().contains("add `k = 3`"));
        let mut zero = base.to_vec();
        zero.push(("k", ConfigValue::Integer(0)));
        assert!(init(&zero).unwrap().contains("at least 1"));
        let mut float = base.to_vec();
        float.push(("k", ConfigValue::Float(2.5)));
        assert!(init(&float).unwrap().contains("whole number"));
        let clash = [
            ("field", "streams".into()),
            ("by", "total".into()),
            ("k", ConfigValue::Integer(3)),
        ];
        assert!(init(&clash).unwrap().contains("name of an output"));
        let mut mean_clash = base.to_vec();
        mean_clash.push(("k", ConfigValue::Integer(3)));
        mean_clash.push(("mean_as", "artist".into()));
        assert!(init(&mean_clash).unwrap().contains("already an output"));
    }
}
