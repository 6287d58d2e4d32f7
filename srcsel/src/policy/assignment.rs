//! What a cgroup is bound to: an uplink and a mode. The same text labels a
//! run's cgroup (`usb0 strict`) and is read back by `srcsel status`.
use std::{fmt, str::FromStr};

/// `strict`: while the uplink can't carry a connection, it fails at once;
/// `fallback`: normal routing meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Strict,
    Fallback,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Strict, Mode::Fallback];

    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Fallback => "fallback",
        }
    }

    pub const fn is_strict(self) -> bool {
        matches!(self, Mode::Strict)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a mode (strict or fallback)"))
    }
}

/// A cgroup's binding to an uplink.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assignment {
    pub via: String,
    pub mode: Mode,
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.via, self.mode)
    }
}

impl FromStr for Assignment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (via, mode) = s
            .split_once(' ')
            .ok_or_else(|| format!("{s:?} is not an assignment label"))?;
        Ok(Self {
            via: via.to_owned(),
            mode: mode.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        let a = Assignment {
            via: "usb0".into(),
            mode: Mode::Fallback,
        };
        assert_eq!(a.to_string(), "usb0 fallback");
        assert_eq!("usb0 fallback".parse::<Assignment>(), Ok(a));
        assert!("usb0".parse::<Assignment>().is_err());
        assert!("usb0 loose".parse::<Assignment>().is_err());
    }
}
