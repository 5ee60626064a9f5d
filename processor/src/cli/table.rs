//! Plain-text tables for the CLI: columns padded to their widest cell,
//! numbers right-aligned, long cells cut with an ellipsis.

/// Cells wider than this are cut.
const MAX_CELL: usize = 70;

/// Renders a header and rows as an aligned table.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cut = |s: &str| -> String {
        let one_line = s.replace(['\n', '\t'], " ");
        if one_line.chars().count() > MAX_CELL {
            format!(
                "{}…",
                one_line.chars().take(MAX_CELL - 1).collect::<String>()
            )
        } else {
            one_line
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
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
    fn long_and_multi_line_cells_are_cut_to_one_line() {
        let t = render(&["q"], &[vec![format!("{}\nx", "y".repeat(100))]]);
        assert!(t.lines().nth(2).unwrap().ends_with('…'));
        assert_eq!(t.lines().count(), 3);
    }
}
