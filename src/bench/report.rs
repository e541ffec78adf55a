//! Percentiles and the final table of `mbus-bench`.

use std::fmt::Write as _;
use std::time::Duration;

/// The `p`-th percentile (0..=100) of sorted `samples` by nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank, ceil(p/100 × n), with a little slack for binary fractions (99.9 % of
    // 1000 is 999.0000000000001 in floating point, and must be rank 999).
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A plain text table: a header row and right-aligned columns (the first left-aligned).
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|s| (*s).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table, one line per row.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c == 0 {
                    let _ = write!(line, "{cell:<w$}", w = width[c]);
                } else {
                    let _ = write!(line, "  {cell:>w$}", w = width[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = ms(&(1..=1000).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(500));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(990));
        assert_eq!(percentile(&s, 99.9), Duration::from_millis(999));
        assert_eq!(percentile(&s, 100.0), Duration::from_millis(1000));
        assert_eq!(percentile(&ms(&[7]), 99.9), Duration::from_millis(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["daemon", "p50"]);
        t.row(vec!["4803@10.0.0.1".into(), "12.5".into()]);
        t.row(vec!["x".into(), "1000.0".into()]);
        assert_eq!(
            t.render(),
            "daemon            p50\n4803@10.0.0.1    12.5\nx              1000.0\n"
        );
    }
}
