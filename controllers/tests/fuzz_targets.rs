//! The fuzz targets of `fuzz/`, driven by proptest on stable toolchains:
//! arbitrary bytes, and mutations of the example units.

mod support;

use proptest::prelude::*;
use support::fuzz_checks::{render_split, spec_json, spec_yaml};

fn seeds() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("examples")
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    seeds.sort();
    seeds
}

/// A seed with a few bytes overwritten, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    )
        .prop_map(move |(i, edits)| {
            let mut data = seeds[i].clone();
            for (at, byte, op) in edits {
                let pos = at.index(data.len() + 1);
                match op {
                    0 if pos < data.len() => data[pos] = byte,
                    1 => data.insert(pos, byte),
                    _ if pos < data.len() => {
                        data.remove(pos);
                    }
                    _ => {}
                }
            }
            data
        })
}

#[test]
fn the_seed_corpus_is_valid() {
    for seed in seeds() {
        assert!(
            spec_yaml(&seed).is_some(),
            "{}",
            String::from_utf8_lossy(&seed)
        );
        render_split(&seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        spec_yaml(&data);
        spec_json(&data);
        render_split(&data);
    }

    #[test]
    fn mutated_examples_never_panic_and_render_safely(data in mutated()) {
        spec_yaml(&data);
        spec_json(&data);
        render_split(&data);
    }
}
