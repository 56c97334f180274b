//! What a run measures, from the command line: `--quick` for CI, else the
//! full size. `--units`, `--pairs`, `--samples`, `--idle-secs` and `--only raw,cold,…`
//! (cold always runs: the rest needs its cluster) are for experiments;
//! cargo's `--bench` is ignored.

use anyhow::{Result, anyhow};
use std::time::Duration;

pub struct Mode {
    pub quick: bool,
    pub units: usize,
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
        Ok(Mode {
            quick,
            units: number("--units")?.map_or(if quick { 500 } else { 10_000 }, |n| n as usize),
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

    pub fn name(&self) -> &'static str {
        if self.quick { "quick" } else { "full" }
    }
}
