//! Which answers of a run were meant: each request kind of the topology says what it expects on
//! a rung ([`Expect`]), so a 401 to an expired token or a 429 to the noisy consumer is the
//! feature working, not a failure, while a 200 to a forged token, a 401 to a valid one or any
//! 5xx is. Also the rotation's evidence: how the next key's and the retiring key's tokens fared.

use serde::Serialize;

use super::features::Expect;
use super::Features;
use crate::run::RunReport;

/// A run's (or a rung's, summed) answers measured against what their kinds expect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Responses, any status.
    pub completed: u64,
    /// Non-2xx/3xx answers the kind expected (401 to bad tokens, 429 to the noisy consumer).
    pub expected_refusals: u64,
    /// Answers the kind did not expect, transport errors and timeouts: the failures.
    pub unexpected: u64,
    /// 401 responses.
    pub status_401: u64,
    /// 429 responses.
    pub status_429: u64,
    /// Tokens of the key the rotation adds: refused (before it).
    pub next_key_401: u64,
    /// ... and accepted (after it).
    pub next_key_ok: u64,
    /// Tokens of the key the rotation drops: accepted (before it).
    pub retiring_ok: u64,
    /// ... and refused (after it).
    pub retiring_401: u64,
}

impl Accounting {
    /// Adds `o` to this.
    pub fn add(&mut self, o: &Accounting) {
        self.completed += o.completed;
        self.expected_refusals += o.expected_refusals;
        self.unexpected += o.unexpected;
        self.status_401 += o.status_401;
        self.status_429 += o.status_429;
        self.next_key_401 += o.next_key_401;
        self.next_key_ok += o.next_key_ok;
        self.retiring_ok += o.retiring_ok;
        self.retiring_401 += o.retiring_401;
    }

    /// Share of responses that were `n`.
    pub fn share(&self, n: u64) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            n as f64 / self.completed as f64
        }
    }
}

/// Accounts run `r` of a rung with `features` (`None`: direct), whose kinds (in scenario order)
/// expect `expects`. A report without per-kind statuses counts every non-2xx/3xx answer as
/// unexpected.
pub fn account(expects: &[Expect], features: Option<Features>, r: &RunReport) -> Accounting {
    let c = &r.counts;
    let status = |s: &str| c.statuses.get(s).copied().unwrap_or(0);
    let mut a = Accounting {
        completed: c.completed,
        status_401: status("401"),
        status_429: status("429"),
        ..Accounting::default()
    };
    let mut unexpected_ok = 0;
    for (k, expect) in r.kinds.iter().zip(expects) {
        for (s, n) in &k.statuses {
            let Ok(s) = s.parse::<u16>() else { continue };
            let ok = (200..400).contains(&s);
            match (expect.accepts(features, s), ok) {
                (true, false) => a.expected_refusals += n,
                (false, true) => unexpected_ok += n,
                _ => {}
            }
            match (expect, ok, s) {
                (Expect::RotatedIn, true, _) => a.next_key_ok += n,
                (Expect::RotatedIn, false, 401) => a.next_key_401 += n,
                (Expect::RotatedOut, true, _) => a.retiring_ok += n,
                (Expect::RotatedOut, false, 401) => a.retiring_401 += n,
                _ => {}
            }
        }
    }
    let refused = c.completed - c.success.min(c.completed);
    a.unexpected =
        refused.saturating_sub(a.expected_refusals) + unexpected_ok + c.errors + c.timeouts;
    a
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::run::report::{Counts, KindReport};

    fn kind(statuses: &[(&str, u64)]) -> KindReport {
        KindReport {
            name: String::new(),
            weight: 1.0,
            classes: Default::default(),
            statuses: statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            errors: 0,
            timeouts: 0,
        }
    }

    #[test]
    fn expected_refusals_are_not_failures_and_unexpected_answers_are() {
        let expects = [
            Expect::Ok,
            Expect::Refused,
            Expect::RotatedIn,
            Expect::Noisy,
        ];
        let kinds = vec![
            kind(&[("200", 50), ("401", 2), ("502", 1)]),
            kind(&[("401", 5), ("200", 1)]),
            kind(&[("401", 3), ("200", 4)]),
            kind(&[("200", 6), ("429", 7)]),
        ];
        let mut counts = Counts {
            completed: 79,
            success: 61,
            errors: 2,
            ..Counts::default()
        };
        counts.statuses.insert("401".into(), 10);
        counts.statuses.insert("429".into(), 7);
        counts.statuses.insert("502".into(), 1);
        counts.statuses.insert("200".into(), 61);
        let r = RunReport {
            tool: "ringbench".into(),
            version: String::new(),
            verdict: crate::run::Verdict::Valid,
            reasons: Vec::new(),
            target: String::new(),
            started_unix_s: 0.0,
            tls: None,
            window_s: 1.0,
            load: String::new(),
            counts,
            rates: Default::default(),
            latency: Default::default(),
            spectrum: Vec::new(),
            kinds,
            groups: Vec::new(),
            generator: Default::default(),
            target_cpu: None,
            cpu_accounts: Vec::new(),
            response_hist: None,
            intervals: Vec::new(),
        };
        let limit = Some(Features {
            auth: true,
            limit: true,
            ..Features::default()
        });
        let a = account(&expects, limit, &r);
        // 5 + 3 401s and 7 429s expected; a valid token's 401 and the 502 were not, nor was the
        // refused kind's 200, nor the two transport errors.
        assert_eq!(a.expected_refusals, 15);
        assert_eq!(a.unexpected, 3 + 1 + 2);
        assert_eq!((a.next_key_401, a.next_key_ok), (3, 4));
        assert_eq!((a.status_401, a.status_429), (10, 7));
        // Without a gateway every 401 and 429 is unexpected.
        let direct = account(&expects, None, &r);
        assert_eq!(direct.expected_refusals, 0);
        assert_eq!(direct.unexpected, 18 + 2);
    }
}
