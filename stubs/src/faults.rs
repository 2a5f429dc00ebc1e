//! Error injection for the stub upstream: which share of responses become a chosen status, a TCP
//! reset or a hang. One uniform draw per request picks the fault, so a seed fixes the sequence.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Shares (0..=1) of requests that fail, and how. The shares add up to at most 1; the rest are
/// answered normally.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ErrorInjection {
    /// `(status, share)`: answer with this status (a small JSON body) instead of 200.
    pub statuses: Vec<(u16, f64)>,
    /// Share of requests whose connection is reset (SO_LINGER 0 then close) instead of answered.
    pub reset: f64,
    /// Share of requests never answered: the connection stays open and silent until the client
    /// gives up (or the server stops).
    pub hang: f64,
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer with `ErrorInjection::statuses[i]`.
    Status(usize),
    /// Reset the connection.
    Reset,
    /// Never answer.
    Hang,
}

/// An error injection string that does not parse.
#[derive(Debug, Error, PartialEq)]
pub enum FaultError {
    /// An item that is not `KEY=SHARE`.
    #[error("error injection item {0:?}: expected STATUS=SHARE, reset=SHARE or hang=SHARE (e.g. 503=0.01,reset=0.001)")]
    Item(String),
    /// A share outside 0..=1 or shares adding up to more than 1.
    #[error("error injection shares must each be in 0..=1 and add up to at most 1 (got {0})")]
    Share(f64),
    /// A status outside 100..=599.
    #[error("error injection status {0} is not an HTTP status (100..=599)")]
    Status(u16),
}

impl ErrorInjection {
    /// True when no request is ever failed.
    pub fn is_none(&self) -> bool {
        self.reset == 0.0 && self.hang == 0.0 && self.statuses.iter().all(|s| s.1 == 0.0)
    }

    /// Checks shares and statuses.
    pub fn validate(&self) -> Result<(), FaultError> {
        let mut total = self.reset + self.hang;
        for &(status, share) in &self.statuses {
            if !(100..=599).contains(&status) {
                return Err(FaultError::Status(status));
            }
            if !(0.0..=1.0).contains(&share) {
                return Err(FaultError::Share(share));
            }
            total += share;
        }
        for share in [self.reset, self.hang, total] {
            if !(0.0..=1.0 + 1e-9).contains(&share) {
                return Err(FaultError::Share(share));
            }
        }
        Ok(())
    }

    /// Picks the fault for a uniform draw `u` in `[0, 1)`.
    #[inline]
    pub fn pick(&self, u: f64) -> Fault {
        let mut edge = self.reset;
        if u < edge {
            return Fault::Reset;
        }
        edge += self.hang;
        if u < edge {
            return Fault::Hang;
        }
        for (i, &(_, share)) in self.statuses.iter().enumerate() {
            edge += share;
            if u < edge {
                return Fault::Status(i);
            }
        }
        Fault::None
    }
}

impl FromStr for ErrorInjection {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut inj = ErrorInjection::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| FaultError::Item(item.to_string()))?;
            let share: f64 = v
                .trim()
                .parse()
                .map_err(|_| FaultError::Item(item.to_string()))?;
            match k.trim() {
                "reset" => inj.reset = share,
                "hang" => inj.hang = share,
                status => {
                    let code: u16 = status
                        .parse()
                        .map_err(|_| FaultError::Item(item.to_string()))?;
                    inj.statuses.push((code, share));
                }
            }
        }
        inj.validate()?;
        Ok(inj)
    }
}

impl fmt::Display for ErrorInjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, share)| format!("{s}={share}"))
            .collect();
        if self.reset > 0.0 {
            items.push(format!("reset={}", self.reset));
        }
        if self.hang > 0.0 {
            items.push(format!("hang={}", self.hang));
        }
        write!(f, "{}", items.join(","))
    }
}

impl TryFrom<String> for ErrorInjection {
    type Error = FaultError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ErrorInjection> for String {
    fn from(e: ErrorInjection) -> String {
        e.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_statuses_resets_and_hangs() {
        let e: ErrorInjection = "503=0.01,500=0.02,reset=0.001,hang=0.002".parse().unwrap();
        assert_eq!(e.statuses, vec![(503, 0.01), (500, 0.02)]);
        assert_eq!(e.reset, 0.001);
        assert_eq!(e.hang, 0.002);
        assert_eq!(e.to_string().parse::<ErrorInjection>().unwrap(), e);
        assert!("".parse::<ErrorInjection>().unwrap().is_none());
    }

    #[test]
    fn rejects_shares_over_one_and_bad_statuses() {
        assert!(matches!(
            "503=0.7,reset=0.5".parse::<ErrorInjection>(),
            Err(FaultError::Share(_))
        ));
        assert!(matches!(
            "99=0.1".parse::<ErrorInjection>(),
            Err(FaultError::Status(99))
        ));
        assert!(matches!(
            "oops".parse::<ErrorInjection>(),
            Err(FaultError::Item(_))
        ));
    }

    #[test]
    fn pick_splits_the_unit_interval_in_order() {
        let e: ErrorInjection = "503=0.2,reset=0.1,hang=0.1".parse().unwrap();
        assert_eq!(e.pick(0.05), Fault::Reset);
        assert_eq!(e.pick(0.15), Fault::Hang);
        assert_eq!(e.pick(0.35), Fault::Status(0));
        assert_eq!(e.pick(0.45), Fault::None);
    }
}
