//! `--max-memory SIZE`, shared by `phi run`, `chat`, `bench` and `perplexity`.

/// The memory limit of a context (`ContextParams::max_memory`).
#[derive(clap::Args)]
pub struct MaxMemoryArg {
    /// Refuse a context whose KV cache and buffers need more than this
    /// (bytes, or with a K/M/G suffix; default: the memory available).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<usize>,
}

impl MaxMemoryArg {
    /// The value for `ContextParams::max_memory` (0 = the memory available).
    pub fn bytes(&self) -> usize {
        self.max_memory.unwrap_or(0)
    }
}

/// Parses "4096", "512K", "3M", "4G" (powers of 1024) into bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul: usize = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in `{s}` (use K, M or G)")),
            };
            (&t[..i], mul)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 4096, 512M, 4G)"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_with_and_without_suffix() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size(" 3M "), Ok(3 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
    }

    #[test]
    fn bad_sizes_are_errors() {
        for bad in [
            "",
            "0",
            "0M",
            "-1",
            "1.5G",
            "G",
            "12T",
            "lots",
            "99999999999999999999G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("12T").unwrap_err().contains("suffix"));
    }
}
