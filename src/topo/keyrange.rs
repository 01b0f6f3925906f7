//! Key ranges as Vitess names shards: `-80`, `80-`, `40-80`, and `0` or `-`
//! for the whole range. Keyspace ids compare as byte strings.

/// A half-open range [start, end) of keyspace ids; empty bounds are open.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRange {
    /// Inclusive lower bound; empty means from the beginning.
    pub start: Vec<u8>,
    /// Exclusive upper bound; empty means to the end.
    pub end: Vec<u8>,
}

impl KeyRange {
    /// Parses a shard name or key-range string.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s == "0" || s == "-" {
            return Ok(Self::default());
        }
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("invalid key range '{s}': expected START-END in hex"))?;
        let kr = KeyRange {
            start: hex(a).ok_or_else(|| format!("invalid key range '{s}': bad hex '{a}'"))?,
            end: hex(b).ok_or_else(|| format!("invalid key range '{s}': bad hex '{b}'"))?,
        };
        if !kr.end.is_empty() && kr.start >= kr.end {
            return Err(format!("invalid key range '{s}': start is not below end"));
        }
        Ok(kr)
    }

    /// True when `id` falls in this range.
    pub fn contains(&self, id: &[u8]) -> bool {
        self.start.as_slice() <= id && (self.end.is_empty() || id < self.end.as_slice())
    }

    /// Whether `other` lies wholly inside this range.
    pub fn covers(&self, other: &KeyRange) -> bool {
        let starts_inside = self.start <= other.start;
        let ends_inside = self.end.is_empty() || (!other.end.is_empty() && other.end <= self.end);
        starts_inside && ends_inside
    }

    /// True when some id in `[low, high]` (both inclusive) falls in this range.
    pub fn overlaps(&self, low: &[u8], high: &[u8]) -> bool {
        self.start.as_slice() <= high && (self.end.is_empty() || low < self.end.as_slice())
    }

    /// Checks that ranges (sorted by start) cover the whole space without
    /// gaps or overlaps, so every keyspace id has exactly one shard.
    pub fn check_partition<'a>(
        ranges: impl Iterator<Item = (&'a String, &'a KeyRange)>,
    ) -> Result<(), String> {
        let mut expect_start: Vec<u8> = Vec::new();
        let mut last: Option<&String> = None;
        let mut any = false;
        for (name, kr) in ranges {
            any = true;
            if let (Some(prev), true) = (last, expect_start.is_empty()) {
                return Err(format!(
                    "shard {name} overlaps shard {prev} which runs to the end"
                ));
            }
            if kr.start != expect_start {
                return Err(match last {
                    Some(prev) if kr.start < expect_start => {
                        format!("shards {prev} and {name} overlap")
                    }
                    Some(prev) => format!("gap between shards {prev} and {name}"),
                    None => {
                        format!("shard {name} does not start at the beginning of the key space")
                    }
                });
            }
            expect_start = kr.end.clone();
            last = Some(name);
        }
        if any && !expect_start.is_empty() {
            return Err(format!(
                "shard {} does not reach the end of the key space",
                last.unwrap()
            ));
        }
        Ok(())
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    crate::vschema::unhex(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_covers_the_ranges_inside_it() {
        let r = |s: &str| KeyRange::parse(s).unwrap();
        assert!(r("-80").covers(&r("-40")));
        assert!(r("-80").covers(&r("-80")));
        assert!(r("-").covers(&r("80-")));
        assert!(r("40-").covers(&r("80-c0")));
        assert!(!r("-80").covers(&r("40-c0")));
        assert!(!r("-80").covers(&r("80-")));
        assert!(!r("40-80").covers(&r("-")));
    }

    #[test]
    fn parse_and_contains() {
        let lo = KeyRange::parse("-80").unwrap();
        let hi = KeyRange::parse("80-").unwrap();
        let id = [0x16, 0x6b, 0x40, 0xb4];
        assert!(lo.contains(&id) && !hi.contains(&id));
        assert!(hi.contains(&[0x80]) && !lo.contains(&[0x80]));
        assert!(KeyRange::parse("0").unwrap().contains(&[0xff; 8]));
        assert!(KeyRange::parse("80-40").is_err());
        assert!(KeyRange::parse("zz-").is_err());
    }

    #[test]
    fn overlaps_takes_both_bounds_inclusively() {
        let lo = KeyRange::parse("-80").unwrap();
        let hi = KeyRange::parse("80-").unwrap();
        // Ends exactly at the boundary: only the upper shard holds 0x80.
        assert!(!lo.overlaps(&[0x80], &[0x90]) && hi.overlaps(&[0x80], &[0x90]));
        // Ends just below it: only the lower shard.
        assert!(lo.overlaps(&[0x10], &[0x7f, 0xff]) && !hi.overlaps(&[0x10], &[0x7f, 0xff]));
        // Spans it: both.
        assert!(lo.overlaps(&[0x7f], &[0x80]) && hi.overlaps(&[0x7f], &[0x80]));
        let mid = KeyRange::parse("40-80").unwrap();
        assert!(mid.overlaps(&[0x40], &[0x40]) && !mid.overlaps(&[0x00], &[0x3f, 0xff]));
    }

    #[test]
    fn partitions() {
        let n = |s: &str| (s.to_string(), KeyRange::parse(s).unwrap());
        let ok = [n("-40"), n("40-80"), n("80-")];
        assert!(KeyRange::check_partition(ok.iter().map(|(a, b)| (a, b))).is_ok());
        let gap = [n("-40"), n("80-")];
        assert!(KeyRange::check_partition(gap.iter().map(|(a, b)| (a, b)))
            .unwrap_err()
            .contains("gap"));
        let overlap = [n("-80"), n("40-")];
        assert!(
            KeyRange::check_partition(overlap.iter().map(|(a, b)| (a, b)))
                .unwrap_err()
                .contains("overlap")
        );
    }
}
