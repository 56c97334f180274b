use super::{Exit, Result, load_unit};
use crate::cli::{Output, RenderArgs};
use kaylee_controllers::fleet::records::create_records;
use kaylee_controllers::fleet::{RenderOptions, render};
use serde_json::json;
use std::path::Path;

pub fn options(args: &RenderArgs) -> Result<RenderOptions> {
    let opts = RenderOptions {
        unit_prefix: args.unit_prefix.clone(),
        network_unit: args.network_unit.clone(),
    };
    opts.validate().map_err(Exit::bad_input)?;
    Ok(opts)
}

pub fn run(file: &Path, args: &RenderArgs, restart_marker: &str, output: Output) -> Result {
    let unit = load_unit(file).map_err(Exit::bad_input)?;
    let rendered = render(&unit, restart_marker, &options(args)?);
    match output {
        Output::Text => {
            for (i, u) in rendered.units.iter().enumerate() {
                if i > 0 {
                    crate::output::print("\n")?;
                }
                crate::output::print(&format!("# {}\n{}", u.name.to_name(), u.text))?;
            }
        }
        Output::Json => {
            let units: Vec<_> = rendered
                .units
                .iter()
                .map(|u| {
                    let name = u.name.to_name();
                    let records: Vec<_> = create_records(&name, &u.text)
                        .into_iter()
                        .map(|r| json!({"key": r.key, "value": r.value}))
                        .collect();
                    json!({
                        "name": name,
                        "unit": u.text,
                        "hash": hex(&u.hash),
                        "records": records,
                    })
                })
                .collect();
            let text = serde_json::to_string_pretty(&units).map_err(Exit::runtime)?;
            crate::outln!("{text}")?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
