use super::*;

#[test]
fn volume_options_are_measured_with_their_flag() {
    // Rendered as the single word `--opt=<options>`: 1994 bytes of options
    // fit a word alone but not with the flag, and would overflow the line.
    let doc = |options: &str| {
        serde_json::json!({"name": "v", "spec": {"image": "busybox", "volumes": [
            {"id": "data", "path": "/data", "options": options}
        ]}})
        .to_string()
    };
    let err = from_json(&doc(&"o".repeat(1994)), "k").unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].field, "spec.volumes[0].options");
    assert!(err.0[0].message.contains("--opt="), "{err}");
    assert!(from_json(&doc(&"o".repeat(1990)), "k").is_ok());
}
