//! template.yaml, the schema, the registry, the key design and the function binaries agree.

use std::collections::BTreeSet;
use std::path::Path;

use chat_deploy::{SCHEMA, TEMPLATE, registry_fields, schema_fields, workspace_root};
use chat_dynamodb::TableDefinition;
use serde_norway::Value as Yaml;

fn template() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join(TEMPLATE)).expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

/// (logical id, resource) of every resource of `kind`.
fn resources<'a>(template: &'a Yaml, kind: &str) -> Vec<(String, &'a Yaml)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(id, resource)| (id.as_str().unwrap().to_owned(), resource))
        .collect()
}

fn template_resolvers(template: &Yaml) -> BTreeSet<String> {
    resources(template, "AWS::AppSync::Resolver")
        .into_iter()
        .map(|(_, r)| {
            let p = &r["Properties"];
            format!(
                "{}.{}",
                p["TypeName"].as_str().unwrap(),
                p["FieldName"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn generated_parts_of_the_template_and_the_binaries_are_up_to_date() {
    let stale = chat_deploy::check(&workspace_root()).unwrap();
    assert!(
        stale.is_empty(),
        "stale: {stale:?}; run `cargo run -p chat-deploy -- generate`"
    );
}

#[test]
fn every_schema_field_has_a_resolver_in_the_registry_and_the_template() {
    let sdl = std::fs::read_to_string(workspace_root().join(SCHEMA)).unwrap();
    let schema = schema_fields(&sdl).unwrap();
    let registry = registry_fields();
    let template = template_resolvers(&template());
    for field in &schema.root {
        assert!(
            registry.contains(field),
            "{field}: no resolver in the registry"
        );
        assert!(
            template.contains(field),
            "{field}: no resolver in template.yaml"
        );
    }
    assert_eq!(
        template, registry,
        "template.yaml resolves exactly the registry's fields"
    );
    for field in &registry {
        assert!(schema.all.contains(field), "{field}: not in schema.graphql");
    }
}

#[test]
fn the_template_table_is_the_code_key_design() {
    let template = template();
    let tables = resources(&template, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "one table");
    let deployed: serde_json::Value = serde_json::to_value(&tables[0].1["Properties"]).unwrap();
    let expected = TableDefinition::current().to_cloudformation();
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&deployed[key], value, "Table.Properties.{key}");
    }
    assert_eq!(
        deployed["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES",
        "the indexer needs both images"
    );
}

#[test]
fn every_function_in_the_template_is_a_binary_and_every_binary_is_deployed() {
    let template = template();
    let bin_dir = workspace_root().join("functions/src/bin");
    let mut deployed = BTreeSet::new();
    for (id, function) in resources(&template, "AWS::Serverless::Function") {
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{id}"
        );
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: no BuildProperties.Binary"));
        assert!(
            bin_dir.join(format!("{binary}.rs")).is_file(),
            "{id}: no functions/src/bin/{binary}.rs"
        );
        assert_eq!(
            function["Properties"]["CodeUri"].as_str(),
            Some("."),
            "{id}"
        );
        deployed.insert(binary.to_owned());
    }
    let binaries: BTreeSet<String> = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| {
            Path::new(&e.unwrap().file_name())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(deployed, binaries, "template functions = functions/src/bin");
}

#[test]
fn the_stream_mapping_retries_finitely_reports_items_and_keeps_failures() {
    let template = template();
    let mappings = resources(&template, "AWS::Lambda::EventSourceMapping");
    assert_eq!(mappings.len(), 1);
    let p = &mappings[0].1["Properties"];
    assert_eq!(p["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert_eq!(
        p["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let retries = p["MaximumRetryAttempts"].as_i64().unwrap();
    assert!((0..=10_000).contains(&retries), "finite retries");
    assert!(!p["DestinationConfig"]["OnFailure"]["Destination"].is_null());
}

#[test]
fn appsync_query_limits_are_the_dev_server_s() {
    use chat_domain::limits::{QUERY_DEPTH_MAX, QUERY_ROOT_FIELDS_MAX};
    let template = template();
    let api = &template["Resources"]["Api"]["Properties"];
    assert_eq!(
        api["QueryDepthLimit"].as_u64(),
        Some(QUERY_DEPTH_MAX as u64)
    );
    // Every resolver is a root field's, so resolvers per request are root fields per
    // operation.
    assert!(
        registry_fields()
            .iter()
            .all(|f| ["Query.", "Mutation.", "Subscription."]
                .iter()
                .any(|root| f.starts_with(root))),
        "a resolver below the roots: ResolverCountLimit no longer equals root fields"
    );
    assert_eq!(
        api["ResolverCountLimit"].as_u64(),
        Some(QUERY_ROOT_FIELDS_MAX as u64)
    );
}
