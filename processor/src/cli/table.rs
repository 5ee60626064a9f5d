//! Plain-text tables for the CLI: columns padded to their widest cell,
//! numbers right-aligned, long cells cut with an ellipsis.

use super::layout::cut;

/// Cells wider than this are cut.
const MAX_CELL: usize = 70;

/// A column this narrow is not cut further to fit a width.
const MIN_FLEX: usize = 12;

/// Renders a header and rows as an aligned table.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    render_fit(header, rows, usize::MAX, None)
}

/// Renders a table no wider than `width` when it can: the column `flex`
/// (a text column) gives up characters, cut with an ellipsis, down to
/// [`MIN_FLEX`].
pub fn render_fit(
    header: &[&str],
    rows: &[Vec<String>],
    width: usize,
    flex: Option<usize>,
) -> String {
    let one_line = |s: &str| cut(&s.replace(['\n', '\t'], " "), MAX_CELL);
    let mut rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| one_line(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    if let Some(f) = flex.filter(|f| *f < widths.len())
        && total > width
    {
        let floor = MIN_FLEX.max(header[f].chars().count());
        widths[f] = widths[f].saturating_sub(total - width).max(floor);
        for r in &mut rows {
            if let Some(c) = r.get_mut(f) {
                *c = cut(c, widths[f]);
            }
        }
    }
    let numeric = |s: &str| !s.is_empty() && s.parse::<f64>().is_ok();
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if numeric(c) {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A number with a fixed count of decimals.
pub fn num(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let t = render(
            &["name", "s"],
            &[
                vec!["a".into(), "1.5".into()],
                vec!["long name".into(), "12.25".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "name       s");
        assert_eq!(lines[2], "a            1.5");
        assert_eq!(lines[3], "long name  12.25");
    }

    #[test]
    fn a_flexible_column_gives_up_width_to_fit() {
        let rows = vec![vec!["1".into(), "a".repeat(60), "12.5".into()]];
        let t = render_fit(&["#", "suspect", "share"], &rows, 40, Some(1));
        assert!(t.lines().all(|l| l.chars().count() <= 40), "{t}");
        assert!(t.lines().nth(2).unwrap().contains('…'));
    }

    #[test]
    fn long_and_multi_line_cells_are_cut_to_one_line() {
        let t = render(&["q"], &[vec![format!("{}\nx", "y".repeat(100))]]);
        assert!(t.lines().nth(2).unwrap().ends_with('…'));
        assert_eq!(t.lines().count(), 3);
    }
}
