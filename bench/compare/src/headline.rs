//! The headline figures of a run, per server: the protected/bare
//! throughput ratio, the extra server CPU per request and the in-process
//! middleware cost, each as the median over rounds with the min–max spread.
//! The report's tables and the chart both read them from here.

use crate::report::{cpu_us_per_req, median};
use crate::servers::Kind;
use crate::ServerResults;

/// Median and spread of one figure over rounds (NaN when no round has it).
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Rounds that had a finite value.
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        Spread {
            median: median(v.clone()),
            min: v.iter().copied().reduce(f64::min).unwrap_or(f64::NAN),
            max: v.iter().copied().reduce(f64::max).unwrap_or(f64::NAN),
            n: v.len(),
        }
    }

    pub fn is_known(&self) -> bool {
        self.n > 0
    }
}

/// One server's headline figures.
#[derive(Debug, Clone)]
pub struct Headline {
    pub kind: Kind,
    /// Protected req/s ÷ bare req/s, per round (both routes of a round).
    pub ratio: Spread,
    /// Server CPU µs per request, protected − bare, per round.
    pub extra_cpu_us: Spread,
    /// In-process middleware cost (thread CPU ns, protected − bare), per repetition.
    pub in_process_ns: Option<Spread>,
}

impl Headline {
    /// None for a server that was not run.
    pub fn of(kind: Kind, r: &ServerResults) -> Option<Headline> {
        if r.skipped.is_some() {
            return None;
        }
        // Pairs are one round's bare and protected runs of this server.
        let pairs = || r.bare.iter().zip(&r.protected);
        Some(Headline {
            kind,
            ratio: Spread::of(pairs().map(|(b, p)| p.rps / b.rps)),
            extra_cpu_us: Spread::of(
                pairs().filter_map(|(b, p)| Some(cpu_us_per_req(p)? - cpu_us_per_req(b)?)),
            ),
            in_process_ns: match &r.micro {
                Some(Ok(m)) => Some(Spread::of(
                    m.bare_ns.iter().zip(&m.protected_ns).map(|(b, p)| p - b),
                )),
                _ => None,
            },
        })
    }

    pub fn all(results: &[(Kind, ServerResults)]) -> Vec<Headline> {
        results.iter().filter_map(|(k, r)| Headline::of(*k, r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_ignores_missing_rounds() {
        let s = Spread::of([1.0, f64::NAN, 0.5, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (1.0, 0.5, 2.0, 3));
        let none = Spread::of([]);
        assert!(!none.is_known() && none.median.is_nan() && none.min.is_nan());
    }
}
