//! Quoting untrusted text in messages: escaped, and cut short when long.

/// `s` as a quoted, escaped string of at most `max` characters, noting the full length when cut.
pub fn quote(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head:?}… ({count} characters)")
    }
}

/// Joins reasons into one message no longer than `max` bytes (CodeDeploy and ECS show these).
pub fn join_capped(parts: &[String], sep: &str, max: usize) -> String {
    let full = parts.join(sep);
    if full.len() <= max {
        return full;
    }
    // Keep room for the note that says how many reasons were left out.
    let room = max.saturating_sub(32);
    let mut out = String::new();
    let mut kept = 0;
    for p in parts {
        let extra = if kept == 0 {
            p.len()
        } else {
            sep.len() + p.len()
        };
        if out.len() + extra > room {
            break;
        }
        if kept > 0 {
            out.push_str(sep);
        }
        out.push_str(p);
        kept += 1;
    }
    if kept == 0 {
        // One reason longer than the cap: cut it on a character boundary.
        let mut cut = room;
        while !parts[0].is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&parts[0][..cut]);
        out.push('…');
        kept = 1;
    }
    let left = parts.len() - kept;
    if left > 0 {
        out.push_str(&format!("{sep}… and {left} more"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_counted() {
        let long = "a".repeat(100_000);
        let q = quote(&long, 10);
        assert_eq!(q, "\"aaaaaaaaaa\"… (100000 characters)");
        assert_eq!(quote("x\u{1}y", 10), "\"x\\u{1}y\"");
    }

    #[test]
    fn joined_reasons_stay_under_the_cap() {
        let parts: Vec<String> = (0..50).map(|i| format!("reason number {i}")).collect();
        let j = join_capped(&parts, "; ", 100);
        assert!(j.len() <= 100, "{}", j.len());
        assert!(j.starts_with("reason number 0; reason number 1"));
        assert!(j.contains("more"));
        let one = join_capped(&["é".repeat(200)], "; ", 50);
        assert!(one.len() <= 50 && one.ends_with('…'), "{one}");
        assert_eq!(join_capped(&["a".into(), "b".into()], "; ", 100), "a; b");
    }
}
