//! Fitting the CLI's text to the terminal: its width, wrapped lines, shell
//! commands split over lines, and times shown to the second.

use std::io::IsTerminal;

/// The width used when neither `COLUMNS` nor a terminal says otherwise
/// (output piped to a file or another program).
pub const DEFAULT_WIDTH: usize = 80;
/// Narrower than this, tables cannot stay readable; lines may overflow.
const MIN_WIDTH: usize = 40;

/// The columns to fit: `$COLUMNS` when set to a number, else the width of
/// the terminal on standard output, else [`DEFAULT_WIDTH`].
pub fn width() -> usize {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    from_env
        .or_else(terminal_width)
        .unwrap_or(DEFAULT_WIDTH)
        .max(MIN_WIDTH)
}

/// The width of the terminal on standard output, when it is one.
fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer given, which
    // lives for the call; descriptor 1 is standard output, checked above.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// `text` wrapped at spaces to `width` columns: the first line starts with
/// `first`, the others with `rest`. A word longer than a line is cut.
pub fn wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let needed = line.chars().count() + usize::from(!empty) + word.chars().count();
        if !empty && needed > width {
            lines.push(std::mem::replace(&mut line, rest.to_owned()));
            empty = true;
        }
        let room = width.saturating_sub(line.chars().count() + usize::from(!empty));
        if !empty {
            line.push(' ');
        }
        line.push_str(&cut(word, room.max(1)));
        empty = false;
    }
    if !empty || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Prints `text` wrapped to `width`, continuation lines indented by `rest`.
pub fn print_wrapped(text: &str, width: usize, first: &str, rest: &str) {
    for line in wrap(text, width, first, rest) {
        println!("{line}");
    }
}

/// `text` cut to `max` characters, the last one an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// A shell command split over lines no wider than `width`, each but the
/// last ending in ` \`, so it can be pasted as it is.
pub fn command(words: &[String], width: usize, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = indent.to_owned();
    let more = "    ";
    for word in words {
        let fresh = line.trim().is_empty();
        if !fresh && line.chars().count() + 1 + word.chars().count() + 2 > width {
            line.push_str(" \\");
            lines.push(std::mem::replace(&mut line, format!("{indent}{more}")));
        } else if !fresh {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// An API time with its fraction left out when it is zero
/// (`2026-11-27T10:09:00.000000Z` → `2026-11-27T10:09:00Z`): the same
/// instant, still accepted by `--from` and `--to`.
pub fn whole_seconds(ts: &str) -> String {
    match ts.split_once('.') {
        Some((head, tail)) if tail.trim_end_matches('Z').bytes().all(|b| b == b'0') => {
            format!("{head}{}", if tail.ends_with('Z') { "Z" } else { "" })
        }
        _ => ts.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_spaces_with_a_hanging_indent() {
        let lines = wrap("one two three four five six", 12, "> ", "  ");
        assert_eq!(lines, ["> one two", "  three four", "  five six"]);
        assert!(
            wrap(&"x".repeat(30), 10, "", "")
                .iter()
                .all(|l| l.chars().count() <= 10)
        );
        assert_eq!(wrap("", 10, "a", "b"), ["a"]);
    }

    #[test]
    fn commands_split_with_continuations_within_the_width() {
        let words: Vec<String> =
            "processor report spike --from 2026-11-27T10:09:00Z --to 2026-11-27T10:12:50Z"
                .split(' ')
                .map(str::to_owned)
                .collect();
        let lines = command(&words, 40, "  ");
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        assert!(lines[..lines.len() - 1].iter().all(|l| l.ends_with(" \\")));
    }

    #[test]
    fn times_lose_only_a_zero_fraction() {
        assert_eq!(
            whole_seconds("2026-11-27T10:09:00.000000Z"),
            "2026-11-27T10:09:00Z"
        );
        assert_eq!(
            whole_seconds("2026-11-27T10:09:00.250000Z"),
            "2026-11-27T10:09:00.250000Z"
        );
        assert_eq!(
            whole_seconds("2026-11-27T10:09:00Z"),
            "2026-11-27T10:09:00Z"
        );
    }
}
