//! The keys fleet's engine and agents write, and their values byte for byte
//! as fleet v1.0.0's Go code marshals them (fields in declaration order,
//! maps sorted by key, Go's string escaping).

use crate::status::Status;
use kaylee_controllers::fleet::records::go_json_string;
use std::collections::BTreeMap;

/// fleet's version, as its agents report it.
pub const VERSION: &str = "1.0.0";
/// The engine version fleet v1.0.0 runs at (`engine/version`).
pub const ENGINE_VERSION: &str = "1";
/// The engine's leadership lease.
pub const ENGINE_LEASE: &str = "lease/engine-leader";
/// The cluster's engine version.
pub const ENGINE_VERSION_KEY: &str = "engine/version";

/// `machines/<id>/object`.
pub fn machine_key(id: &str) -> String {
    format!("machines/{id}/object")
}

/// `job/<name>/object`.
pub fn job_object_key(name: &str) -> String {
    format!("job/{name}/object")
}

/// `job/<name>/target`: the machine the engine scheduled it to.
pub fn target_key(name: &str) -> String {
    format!("job/{name}/target")
}

/// `job/<name>/job-state`: the machine that has it launched (a heartbeat).
pub fn job_state_key(name: &str) -> String {
    format!("job/{name}/job-state")
}

/// `states/<name>/<machine>`.
pub fn state_key(name: &str, machine: &str) -> String {
    format!("states/{name}/{machine}")
}

/// `state/<name>`: fleet still writes this older single-machine form.
pub fn legacy_state_key(name: &str) -> String {
    format!("state/{name}")
}

/// `unit/<hash>`.
pub fn unit_key(hash_hex: &str) -> String {
    format!("unit/{hash_hex}")
}

fn go_map(map: &BTreeMap<String, String>) -> String {
    let fields: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{}", go_json_string(k), go_json_string(v)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A machine's `MachineState`: `engine` false sets the DISABLE_ENGINE
/// capability, as `fleetd --disable_engine` does.
pub fn machine_value(
    id: &str,
    public_ip: &str,
    metadata: &BTreeMap<String, String>,
    engine: bool,
) -> String {
    format!(
        "{{\"ID\":{},\"PublicIP\":{},\"Metadata\":{},\"Capabilities\":{{\"DISABLE_ENGINE\":{},\"GRPC\":false}},\"Version\":{}}}",
        go_json_string(id),
        go_json_string(public_ip),
        go_map(metadata),
        !engine,
        go_json_string(VERSION)
    )
}

/// A unit state as fleet's agent publishes it: its `machineState` carries
/// only the machine id (the other fields are Go's zero values).
pub fn state_value(status: &Status, machine: &str, hash_hex: &str) -> String {
    format!(
        "{{\"loadState\":{},\"activeState\":{},\"subState\":{},\"machineState\":{{\"ID\":{},\"PublicIP\":\"\",\"Metadata\":null,\"Capabilities\":null,\"Version\":\"\"}},\"unitHash\":{}}}",
        go_json_string(status.load()),
        go_json_string(status.active()),
        go_json_string(status.sub()),
        go_json_string(machine),
        go_json_string(hash_hex)
    )
}

/// The engine lease's value.
pub fn engine_lease_value(machine: &str) -> String {
    format!(
        "{{\"MachineID\":{},\"Version\":{ENGINE_VERSION}}}",
        go_json_string(machine)
    )
}

/// Lowercase hex of a unit hash (the `unit/` key and `unitHash`).
pub fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_objects_are_go_marshalled_machine_states() {
        let md = BTreeMap::from([
            ("ssd".to_string(), "true".to_string()),
            ("region".to_string(), "eu".to_string()),
        ]);
        assert_eq!(
            machine_value("m1", "10.0.0.1", &md, true),
            r#"{"ID":"m1","PublicIP":"10.0.0.1","Metadata":{"region":"eu","ssd":"true"},"Capabilities":{"DISABLE_ENGINE":false,"GRPC":false},"Version":"1.0.0"}"#
        );
        assert_eq!(
            machine_value("m2", "", &BTreeMap::new(), false),
            r#"{"ID":"m2","PublicIP":"","Metadata":{},"Capabilities":{"DISABLE_ENGINE":true,"GRPC":false},"Version":"1.0.0"}"#
        );
    }

    #[test]
    fn states_are_fleet_unit_state_models() {
        assert_eq!(
            state_value(&Status::Running, "m1", "ab01"),
            r#"{"loadState":"loaded","activeState":"active","subState":"running","machineState":{"ID":"m1","PublicIP":"","Metadata":null,"Capabilities":null,"Version":""},"unitHash":"ab01"}"#
        );
        assert!(kaylee_controllers::fleet::records::state_is_running(
            state_value(&Status::Running, "m1", "ab01").as_bytes()
        ));
    }

    #[test]
    fn engine_lease_and_hex() {
        assert_eq!(
            engine_lease_value("m1"),
            r#"{"MachineID":"m1","Version":1}"#
        );
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
