//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`):
//! exact, for the sums and comparisons of quota and limits, or as floats
//! for the scheduler's fits.

use std::cmp::Ordering;
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Sub};

use serde_json::Value;

/// What kube-apiserver says of a string that is not a quantity.
pub const SYNTAX_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const BINARY: &[(&str, u32)] = &[
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// A quantity as a whole number of thousandths of its unit (millicores,
/// millibytes), rounded up as kube's `MilliValue`, remembering whether it
/// was written with a binary suffix so that sums print the same way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantity {
    millis: i128,
    binary: bool,
}

impl Quantity {
    pub const ZERO: Self = Self {
        millis: 0,
        binary: false,
    };

    /// `count` whole units (pods, objects).
    pub fn units(count: i64) -> Self {
        Self {
            millis: i128::from(count) * 1000,
            binary: false,
        }
    }

    /// `None` when `text` is not a quantity (or too large to hold).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let (negative, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
        // value = mantissa * 10^(exponent - fraction digits) * 1024^power
        let binary = BINARY.iter().find(|(name, _)| *name == suffix);
        let decimal = DECIMAL.iter().find(|(name, _)| *name == suffix);
        let (mut exponent, power) = match (binary, decimal) {
            (Some(&(_, power)), _) => (0, power),
            (None, Some(&(_, exponent))) => (exponent, 0),
            (None, None) if suffix.starts_with(['e', 'E']) => (suffix[1..].parse::<i32>().ok()?, 0),
            (None, None) => return None,
        };
        let binary = binary.is_some();
        exponent += 3 - i32::try_from(fraction.len()).ok()?;
        let mut millis = mantissa.checked_mul(1024i128.checked_pow(power)?)?;
        if exponent >= 0 {
            millis = millis.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
        } else {
            let divisor = 10i128
                .checked_pow(exponent.unsigned_abs())
                .unwrap_or(i128::MAX);
            millis = millis / divisor + i128::from(millis % divisor != 0);
        }
        Some(Self {
            millis: if negative { -millis } else { millis },
            binary,
        })
    }

    /// A quantity field: a string, or a bare JSON number.
    pub fn of(value: &Value) -> Option<Self> {
        match value {
            Value::String(text) => Self::parse(text),
            Value::Number(number) => Self::parse(&number.to_string()),
            _ => None,
        }
    }

    pub fn is_negative(self) -> bool {
        self.millis < 0
    }

    pub fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// Whether it is a whole number of units.
    pub fn is_whole(self) -> bool {
        self.millis % 1000 == 0
    }

    /// The value in base units (cores, bytes).
    pub fn as_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// `self / other`, as a float (a limit-to-request ratio).
    pub fn ratio(self, other: Self) -> f64 {
        self.millis as f64 / other.millis as f64
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.millis == other.millis
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.millis.cmp(&other.millis)
    }
}

impl Add for Quantity {
    type Output = Self;

    /// Prints like the first term, unless that is zero.
    fn add(self, other: Self) -> Self {
        Self {
            millis: self.millis.saturating_add(other.millis),
            binary: if self.is_zero() {
                other.binary
            } else {
                self.binary
            },
        }
    }
}

impl Sub for Quantity {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self {
            millis: self.millis.saturating_sub(other.millis),
            binary: self.binary,
        }
    }
}

impl Sum for Quantity {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, Add::add)
    }
}

/// The canonical form, as kube prints quantities: `500m`, `2`, `256Mi`,
/// `1G`, the largest suffix that keeps the number whole.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_whole() {
            return write!(f, "{}m", self.millis);
        }
        let units = self.millis / 1000;
        if units == 0 {
            return f.write_str("0");
        }
        if self.binary {
            let suffix = BINARY
                .iter()
                .rev()
                .find(|(_, power)| units % 1024i128.pow(*power) == 0);
            if let Some((suffix, power)) = suffix {
                return write!(f, "{}{suffix}", units / 1024i128.pow(*power));
            }
        }
        let (suffix, exponent) = DECIMAL
            .iter()
            .rev()
            .find(|(_, exponent)| {
                *exponent >= 0 && units % 10i128.pow(exponent.unsigned_abs()) == 0
            })
            .expect("every whole number divides by 10^0");
        write!(f, "{}{suffix}", units / 10i128.pow(exponent.unsigned_abs()))
    }
}

/// The quantity's value in base units (cores, bytes, pods); `None` when it
/// is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    Quantity::parse(text).map(Quantity::as_f64)
}

/// A quantity field: a string, or a bare JSON number.
pub fn of(value: &Value) -> Option<f64> {
    Quantity::of(value).map(Quantity::as_f64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap()
    }

    #[test]
    fn parses_the_quantity_forms() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("1.5"), Some(1.5));
        assert_eq!(parse("128Mi"), Some(134_217_728.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("lots"), None);
        assert_eq!(parse("1.2.3"), None);
        assert_eq!(parse("."), None);
        assert_eq!(of(&json!(3)), Some(3.0));
    }

    #[test]
    fn exact_sums_and_comparisons() {
        assert_eq!(q("100m") + q("200m"), q("0.3"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1n"), q("1m"), "rounded up to thousandths");
        assert!(q("-1").is_negative());
        assert_eq!([q("1"), q("2")].into_iter().sum::<Quantity>(), q("3"));
        assert_eq!(q("1e-3"), q("1m"));
    }

    #[test]
    fn prints_the_canonical_form() {
        let printed = |quantity: Quantity| quantity.to_string();
        assert_eq!(printed(q("100m") + q("400m")), "500m");
        assert_eq!(printed(q("500m") + q("500m")), "1");
        assert_eq!(printed(q("128Mi") + q("128Mi")), "256Mi");
        assert_eq!(printed(q("1Gi") + q("1Gi")), "2Gi");
        assert_eq!(printed(q("1G")), "1G");
        assert_eq!(printed(q("1500")), "1500");
        assert_eq!(printed(Quantity::units(2)), "2");
        assert_eq!(printed(Quantity::ZERO), "0");
        assert_eq!(printed(q("1.5Gi")), "1536Mi");
    }
}
