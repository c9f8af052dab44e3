//! `docs/API.md`, the project's own API reference, lists exactly the routes the code
//! declares, with what each needs (its generated section is compared with the declarations).

use pulseboard_tests::api_doc::{routes_section, BEGIN, END};

#[test]
fn the_api_reference_lists_every_declared_route() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap())
            .unwrap();
    let path = root.join("docs/API.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (start, end) = (
        text.find(BEGIN)
            .expect("docs/API.md has the routes:begin marker"),
        text.find(END)
            .expect("docs/API.md has the routes:end marker")
            + END.len(),
    );
    let generated = routes_section(&spec);
    if std::env::var("UPDATE_DOCS").is_ok() {
        let updated = format!("{}{generated}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        text[start..end] == generated,
        "docs/API.md's route list is out of date: run `UPDATE_DOCS=1 make test`"
    );
}
