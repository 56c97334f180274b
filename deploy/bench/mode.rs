//! What a run measures, from the command line: `--quick` for CI, else the
//! full size. `--units`, `--v2-units`, `--v2-concurrency 16,64`, `--pairs`, `--v2-pairs`, `--samples`,
//! `--idle-secs`, `--api v2,v3` and `--only raw,cold,…` (cold always runs:
//! the rest needs its cluster) are for experiments; cargo's `--bench` is
//! ignored.

use crate::v2::Api;
use anyhow::{Result, anyhow, bail};
use std::time::Duration;

pub struct Mode {
    pub quick: bool,
    /// Units of v3 runs.
    pub units: usize,
    /// Units of v2 runs: each v2 write is a request, so quick mode writes
    /// fewer.
    pub v2_units: usize,
    /// cold/raw pairs of v2 runs (the v2 raw tries several concurrencies).
    pub v2_pairs: usize,
    /// Requests in flight the v2 raw tries.
    pub v2_concurrencies: Vec<usize>,
    /// Units the v2 raw tries each concurrency on (then all at the best).
    pub v2_probe_units: usize,
    /// The APIs to run, in order.
    pub apis: Vec<Api>,
    pub samples: usize,
    /// cold/raw pairs (see pairs.rs).
    pub pairs: usize,
    pub idle: Duration,
    pub lease_ttl_s: u64,
    only: Option<Vec<String>>,
}

impl Mode {
    pub fn from_args() -> Result<Mode> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let value = |flag: &str| -> Option<Result<&String>> {
            let i = args.iter().position(|a| a == flag)?;
            Some(
                args.get(i + 1)
                    .ok_or_else(|| anyhow!("{flag} needs a value")),
            )
        };
        let number = |flag: &str| -> Result<Option<u64>> {
            value(flag).map(|v| Ok(v?.parse()?)).transpose()
        };
        let units = number("--units")?.map_or(if quick { 500 } else { 10_000 }, |n| n as usize);
        let apis = match value("--api").transpose()? {
            None => vec![Api::V2, Api::V3],
            Some(list) => list
                .split(',')
                .map(|a| match a {
                    "v2" => Ok(Api::V2),
                    "v3" => Ok(Api::V3),
                    other => Err(anyhow!("--api: no API {other:?} (v2, v3)")),
                })
                .collect::<Result<_>>()?,
        };
        if apis.is_empty() {
            bail!("--api needs v2, v3 or both");
        }
        Ok(Mode {
            quick,
            units,
            v2_units: number("--v2-units")?.map_or(if quick { 200 } else { units }, |n| n as usize),
            v2_pairs: number("--v2-pairs")?
                .map_or(if quick { 1 } else { 3 }, |n| n.max(1) as usize),
            v2_concurrencies: match value("--v2-concurrency").transpose()? {
                Some(list) => list
                    .split(',')
                    .map(|c| Ok(c.parse::<usize>()?.max(1)))
                    .collect::<Result<_>>()?,
                None => vec![16, 32, 64, 128],
            },
            v2_probe_units: if quick { 200 } else { 2_000 },
            apis,
            pairs: number("--pairs")?.map_or(if quick { 1 } else { 3 }, |n| n.max(1) as usize),
            samples: number("--samples")?.map_or(if quick { 100 } else { 1_000 }, |n| n as usize),
            idle: Duration::from_secs(number("--idle-secs")?.unwrap_or(if quick {
                10
            } else {
                30
            })),
            // Quick mode keeps the SIGKILL failover short.
            lease_ttl_s: if quick { 3 } else { 10 },
            only: value("--only")
                .transpose()?
                .map(|list| list.split(',').map(str::to_string).collect()),
        })
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }

    pub fn units_for(&self, api: Api) -> usize {
        match api {
            Api::V2 => self.v2_units,
            Api::V3 => self.units,
        }
    }

    pub fn pairs_for(&self, api: Api) -> usize {
        match api {
            Api::V2 => self.v2_pairs,
            Api::V3 => self.pairs,
        }
    }

    pub fn name(&self) -> &'static str {
        if self.quick { "quick" } else { "full" }
    }
}
