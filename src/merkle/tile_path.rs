//! C2SP `tlog-tiles` resource paths: `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, with `<N>` in zero-padded 3-digit elements, all but the
//! last prefixed `x` (index 1234067 is `x001/x234/067`).

use super::TILE_WIDTH;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileKind {
    /// Hashes at tile level `L`.
    Hashes(u32),
    /// The log entries (record canonical bytes) under level-0 tile `N`.
    Entries,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePath {
    pub kind: TileKind,
    pub index: u64,
    /// Entries in the tile: 256 when full, 1..=255 for a partial tile.
    pub width: u64,
}

impl TilePath {
    /// Parses what follows `tile/`. The error says what is wrong with it.
    pub fn parse(path: &str) -> Result<TilePath, String> {
        let (kind, rest) = match path.split_once('/') {
            Some(("entries", rest)) => (TileKind::Entries, rest),
            Some((level, rest)) => (TileKind::Hashes(parse_level(level)?), rest),
            None => return Err("must be <L>/<N>[.p/<W>] or entries/<N>[.p/<W>]".into()),
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => (index, parse_width(width)?),
            None => (rest, TILE_WIDTH),
        };
        Ok(TilePath {
            kind,
            index: parse_index(index)?,
            width,
        })
    }
}

fn plain_decimal(s: &str) -> Option<u64> {
    let leading_zero = s.len() > 1 && s.starts_with('0');
    if s.is_empty() || leading_zero || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_level(s: &str) -> Result<u32, String> {
    plain_decimal(s)
        .filter(|l| *l <= 63)
        .map(|l| l as u32)
        .ok_or_else(|| format!("level {s:?} must be a decimal from 0 to 63"))
}

fn parse_width(s: &str) -> Result<u64, String> {
    plain_decimal(s)
        .filter(|w| (1..TILE_WIDTH).contains(w))
        .ok_or_else(|| format!("partial width {s:?} must be a decimal from 1 to 255"))
}

fn parse_index(s: &str) -> Result<u64, String> {
    let bad = || format!("tile index {s:?} must be 3-digit elements, all but the last x-prefixed");
    let elements: Vec<&str> = s.split('/').collect();
    let last = elements.len() - 1;
    let mut n: u64 = 0;
    for (i, e) in elements.iter().enumerate() {
        let digits = if i < last {
            e.strip_prefix('x').ok_or_else(bad)?
        } else {
            e
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let d: u64 = digits.parse().map_err(|_| bad())?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or_else(bad)?;
    }
    // Leading zero elements ("x000/x001/...") would give one tile two paths.
    if elements.len() > 1 && elements[0] == "x000" {
        return Err(bad());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path after `tile/`, as the spec writes it (the parser's inverse).
    fn to_path(t: &TilePath) -> String {
        let mut elements: Vec<String> = Vec::new();
        let mut n = t.index;
        loop {
            elements.push(format!("{:03}", n % 1000));
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        elements.reverse();
        let last = elements.len() - 1;
        let index: Vec<String> = elements
            .into_iter()
            .enumerate()
            .map(|(i, e)| if i < last { format!("x{e}") } else { e })
            .collect();
        let kind = match t.kind {
            TileKind::Hashes(level) => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let partial = if t.width < TILE_WIDTH {
            format!(".p/{}", t.width)
        } else {
            String::new()
        };
        format!("{kind}/{}{partial}", index.join("/"))
    }

    #[test]
    fn parses_the_spec_examples_and_round_trips() {
        let t = TilePath::parse("0/x001/x234/067").unwrap();
        assert_eq!(
            t,
            TilePath {
                kind: TileKind::Hashes(0),
                index: 1_234_067,
                width: 256
            }
        );
        assert_eq!(to_path(&t), "0/x001/x234/067");
        let p = TilePath::parse("entries/000.p/17").unwrap();
        assert_eq!((p.kind, p.index, p.width), (TileKind::Entries, 0, 17));
        assert_eq!(to_path(&p), "entries/000.p/17");
        let l2 = TilePath::parse("2/001.p/1").unwrap();
        assert_eq!(to_path(&l2), "2/001.p/1");
        for n in [0u64, 999, 1000, 1_000_000, 123_456_789] {
            let t = TilePath {
                kind: TileKind::Hashes(1),
                index: n,
                width: 5,
            };
            assert_eq!(TilePath::parse(&to_path(&t)).unwrap(), t);
        }
    }

    #[test]
    fn refuses_other_spellings() {
        for bad in [
            "",
            "0",
            "00/000",
            "64/000",
            "0/1",
            "0/0001",
            "0/001/002",
            "0/x001",
            "0/x000/001",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/01",
            "entries/12",
            "-1/000",
            "0/000.p/",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
