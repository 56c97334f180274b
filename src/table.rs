//! Plain aligned tables, like kubectl's: upper-case headers, columns
//! separated by three spaces, no borders.
//!
//! Columns are padded by the width a terminal gives each cell
//! (`unicode-width`: a CJK character takes two columns, a combining mark
//! none), not by its count of chars, so names and reasons in any script
//! line up. Cells are printed as they are: tabwriter would be the other
//! choice, but a tab inside a cell (from a value in etcd) would split it.

use unicode_width::UnicodeWidthStr;

/// Spaces between two columns.
const GAP: usize = 3;

pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `headers`, written as given (callers
    /// pass them upper-case).
    pub fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Every row on a line of its own, each cell but the last padded to
    /// its column's width plus [`GAP`]; no trailing blanks.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.width())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c].saturating_sub(cell.width());
                    line.push_str(&" ".repeat(pad + GAP));
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
    use super::Table;
    use unicode_width::UnicodeWidthStr;

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["NAME", "REPLICAS"]);
        t.row(vec!["countly".into(), "4/4".into()]);
        t.row(vec!["a".into(), "1/1".into()]);
        assert_eq!(
            t.render(),
            "NAME      REPLICAS\ncountly   4/4\na         1/1\n"
        );
    }

    /// `数据库` is 3 chars but 6 columns; `café` written with a combining
    /// acute (`e` + U+0301) is 5 chars but 4 columns.
    #[test]
    fn wide_characters_and_combining_marks_align_by_their_width() {
        let combining = "cafe\u{301}";
        let mut t = Table::new(&["NAME", "REPLICAS"]);
        t.row(vec!["数据库".into(), "1/1".into()]);
        t.row(vec![combining.into(), "2/2".into()]);
        t.row(vec!["countly".into(), "4/4".into()]);
        let text = t.render();
        assert_eq!(
            text,
            format!("NAME      REPLICAS\n数据库    1/1\n{combining}      2/2\ncountly   4/4\n")
        );
        // The second column starts at the same terminal column on every line.
        for line in text.lines() {
            let second = line.rfind(' ').map_or(0, |i| i + 1);
            assert_eq!(line[..second].width(), 10, "{line:?}");
        }
    }
}
