//! One table definition: `pulseboard create-table` and `template.yaml` must agree.

use serde_yaml::Value;

#[test]
fn template_table_matches_create_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let props = &template["Resources"]["Table"]["Properties"];
    let def = platform::table::definition();

    let key_schema = |v: &Value| -> Vec<(String, String)> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_owned(),
                    k["KeyType"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        key_schema(&props["KeySchema"]),
        vec![
            (def.hash_key.into(), "HASH".into()),
            (def.range_key.into(), "RANGE".into())
        ]
    );
    assert_eq!(props["BillingMode"].as_str(), Some(def.billing_mode));
    assert_eq!(
        props["StreamSpecification"]["StreamViewType"].as_str(),
        Some(def.stream_view)
    );
    assert_eq!(
        props["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(def.ttl_attribute)
    );
    assert_eq!(
        props["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(def.point_in_time_recovery)
    );

    let indexes: Vec<(String, String, String)> = props["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["Projection"]["ProjectionType"].as_str(), Some("ALL"));
            let keys = key_schema(&i["KeySchema"]);
            assert_eq!((keys[0].1.as_str(), keys[1].1.as_str()), ("HASH", "RANGE"));
            (
                i["IndexName"].as_str().unwrap().to_owned(),
                keys[0].0.clone(),
                keys[1].0.clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = def
        .indexes
        .iter()
        .map(|(n, h, r)| (n.to_string(), h.to_string(), r.to_string()))
        .collect();
    assert_eq!(indexes, expected);

    let mut attributes: Vec<String> = props["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["AttributeType"].as_str(), Some("S"));
            a["AttributeName"].as_str().unwrap().to_owned()
        })
        .collect();
    attributes.sort();
    let mut expected: Vec<String> = [def.hash_key, def.range_key]
        .into_iter()
        .chain(def.indexes.iter().flat_map(|(_, h, r)| [*h, *r]))
        .map(str::to_owned)
        .collect();
    expected.sort();
    assert_eq!(attributes, expected);
}
