//! template.yaml, the schema, the registry, the key design and the function binaries agree.

use std::collections::BTreeSet;
use std::path::Path;

use chat_deploy::{
    SCHEMA, TEMPLATE, registry_fields, registry_publishes, schema_fields, workspace_root,
};
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
            registry.contains(field) || schema.iam_only.contains(field),
            "{field}: no resolver in the registry"
        );
        assert!(
            template.contains(field),
            "{field}: no resolver in template.yaml"
        );
    }
    let expected: BTreeSet<String> = registry.union(&schema.iam_only).cloned().collect();
    assert_eq!(
        template, expected,
        "template.yaml resolves exactly the registry's fields and the publish mutations"
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
fn the_stream_mappings_retry_finitely_report_items_and_keep_failures() {
    let template = template();
    let mappings = resources(&template, "AWS::Lambda::EventSourceMapping");
    // The search indexer's and the webhook stream function's, each on the table's stream.
    assert_eq!(mappings.len(), 2);
    for (id, mapping) in &mappings {
        let p = &mapping["Properties"];
        let source = format!("{:?}", p["EventSourceArn"]);
        assert!(
            source.contains("Table") && source.contains("StreamArn"),
            "{id}: {source}"
        );
        assert_eq!(
            p["BisectBatchOnFunctionError"].as_bool(),
            Some(true),
            "{id}"
        );
        assert_eq!(
            p["FunctionResponseTypes"][0].as_str(),
            Some("ReportBatchItemFailures"),
            "{id}"
        );
        let retries = p["MaximumRetryAttempts"].as_i64().unwrap();
        assert!((0..=10_000).contains(&retries), "{id}: finite retries");
        assert!(
            !p["DestinationConfig"]["OnFailure"]["Destination"].is_null(),
            "{id}"
        );
    }
}

#[test]
fn the_webhook_sender_reports_items_and_its_queue_has_a_dead_letter_queue() {
    let template = template();
    let sender = &template["Resources"]["WebhookSenderFunction"]["Properties"];
    let tasks = &sender["Events"]["Tasks"];
    assert_eq!(tasks["Type"].as_str(), Some("SQS"));
    assert_eq!(
        tasks["Properties"]["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let queue = &template["Resources"]["WebhookQueue"]["Properties"];
    assert!(!queue["RedrivePolicy"]["deadLetterTargetArn"].is_null());
    // Lambda's guidance: a visibility timeout of at least six times the function's timeout.
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * sender["Timeout"].as_u64().unwrap()
    );
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

/// The `@aws_subscribe` lists of `schema.graphql`'s subscriptions.
fn subscribed_mutations(sdl: &str) -> BTreeSet<String> {
    use async_graphql_parser::types::{TypeKind, TypeSystemDefinition};
    let document = async_graphql_parser::parse_schema(sdl).unwrap();
    let mut listed = BTreeSet::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let TypeKind::Object(object) = ty.node.kind else {
            continue;
        };
        for field in object.fields {
            for directive in &field.node.directives {
                if directive.node.name.node != "aws_subscribe" {
                    continue;
                }
                let mutations = directive.node.get_argument("mutations").unwrap();
                let names = serde_json::to_value(&mutations.node).unwrap();
                for name in names.as_array().unwrap() {
                    listed.insert(format!("Mutation.{}", name.as_str().unwrap()));
                }
            }
        }
    }
    listed
}

#[test]
fn subscriptions_listen_only_to_iam_only_publish_mutations_resolved_locally() {
    let sdl = std::fs::read_to_string(workspace_root().join(SCHEMA)).unwrap();
    let schema = schema_fields(&sdl).unwrap();
    let listed = subscribed_mutations(&sdl);
    assert!(!listed.is_empty());
    for mutation in &listed {
        assert!(
            schema.iam_only.contains(mutation),
            "{mutation} is in an @aws_subscribe list but clients can call it"
        );
    }
    let publish: BTreeSet<String> = chat_appsync::publish::MUTATIONS
        .iter()
        .map(|(m, _)| format!("Mutation.{m}"))
        .collect();
    assert_eq!(
        schema.iam_only, publish,
        "the IAM-only fields are the publish mutations"
    );

    let template = template();
    let api = &template["Resources"]["Api"]["Properties"];
    assert_eq!(api["AuthenticationType"].as_str(), Some("AWS_LAMBDA"));
    let extra: Vec<&str> = api["AdditionalAuthenticationProviders"]
        .as_sequence()
        .expect("AdditionalAuthenticationProviders")
        .iter()
        .map(|p| p["AuthenticationType"].as_str().unwrap())
        .collect();
    assert_eq!(extra, ["AWS_IAM"]);
    let all = &template["Resources"];
    for (_, resolver) in resources(&template, "AWS::AppSync::Resolver") {
        let p = &resolver["Properties"];
        let field = format!(
            "{}.{}",
            p["TypeName"].as_str().unwrap(),
            p["FieldName"].as_str().unwrap()
        );
        let source = p["DataSourceName"]["Fn::GetAtt"][0].as_str().unwrap();
        let kind = all[source]["Properties"]["Type"].as_str().unwrap();
        if publish.contains(&field) {
            assert_eq!(kind, "NONE", "{field}: a local resolver");
            let code = p["Code"].as_str().unwrap();
            assert!(code.contains("payload: ctx.args.event"), "{field}: {code}");
        } else {
            assert_eq!(kind, "AWS_LAMBDA", "{field}");
        }
    }
}

#[test]
fn only_publishing_functions_may_call_appsync_and_each_only_its_own_publish_mutations() {
    let template = template();
    let publishes = registry_publishes();
    assert!(publishes.contains_key("Mutation.sendMessage"));
    for (id, function) in resources(&template, "AWS::Serverless::Function") {
        let text = serde_json::to_string(&function["Properties"]["Policies"]).unwrap();
        let mut granted: Vec<String> = Vec::new();
        for policy in function["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                let action = serde_json::to_string(&statement["Action"]).unwrap();
                if !action.contains("appsync") {
                    continue;
                }
                assert_eq!(
                    statement["Action"].as_str(),
                    Some("appsync:GraphQL"),
                    "{id}"
                );
                for resource in statement["Resource"].as_sequence().unwrap() {
                    let arn = resource["Fn::Sub"].as_str().unwrap();
                    let (_, field) = arn
                        .rsplit_once("/types/Mutation/fields/")
                        .unwrap_or_else(|| panic!("{id}: {arn} is not one publish field"));
                    granted.push(field.to_owned());
                }
            }
        }
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        // A resolver publishes what the registry says; the presence sweeper, the events
        // of a presence's end.
        let expected: Option<Vec<String>> = if binary == chat_functions::PRESENCE_SWEEPER_BINARY {
            Some(
                chat_appsync::presence::PRESENCE_EVENTS
                    .iter()
                    .map(|m| (*m).to_owned())
                    .collect(),
            )
        } else {
            publishes
                .keys()
                .find(|f| chat_functions::binary_name(f) == binary)
                .map(|f| publishes[f].clone())
        };
        match expected {
            Some(expected) => {
                assert_eq!(granted, expected, "{id}");
                assert!(
                    !function["Properties"]["Environment"]["Variables"]["CHAT_APPSYNC_URL"]
                        .is_null(),
                    "{id}: no CHAT_APPSYNC_URL"
                );
            }
            None => assert!(
                granted.is_empty() && !text.contains("appsync:"),
                "{id}: {text}"
            ),
        }
    }
}

#[test]
fn the_stream_indexer_receives_message_records_only() {
    let template = template();
    let mapping = &template["Resources"]["StreamIndexerMapping"]["Properties"];
    let filters = mapping["FilterCriteria"]["Filters"]
        .as_sequence()
        .expect("FilterCriteria.Filters");
    assert_eq!(filters.len(), 1);
    let pattern: serde_json::Value =
        serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        pattern,
        serde_json::json!({ "dynamodb": { "Keys": { "SK": { "S": [
            { "prefix": chat_dynamodb::table::MESSAGES_FROM }
        ] } } } }),
        "the filter's prefix is the messages' sort-key prefix"
    );
    // Every message key passes; presence leases and counters do not.
    let message_sk = chat_dynamodb::table::message_sk(7);
    assert!(message_sk.starts_with(chat_dynamodb::table::MESSAGES_FROM));
    assert!(!"UNREAD".starts_with(chat_dynamodb::table::MESSAGES_FROM));
}

#[test]
fn the_webhook_stream_function_receives_events_redeliveries_and_re_enabled_endpoints() {
    use chat_dynamodb::table::item_type;
    use chat_dynamodb::webhooks::{DELIVERY_TYPE, ENDPOINT_TYPE};
    let template = template();
    let mapping = &template["Resources"]["StreamWebhooksMapping"]["Properties"];
    let patterns: Vec<serde_json::Value> = mapping["FilterCriteria"]["Filters"]
        .as_sequence()
        .expect("FilterCriteria.Filters")
        .iter()
        .map(|f| serde_json::from_str(f["Pattern"].as_str().unwrap()).unwrap())
        .collect();
    // The item types the filters let through are the store's.
    let types: Vec<&str> = patterns
        .iter()
        .flat_map(|p| p["dynamodb"]["NewImage"]["type"]["S"].as_array().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            item_type::CHAT,
            item_type::MESSAGE,
            DELIVERY_TYPE,
            ENDPOINT_TYPE
        ]
    );
    // An endpoint's record passes only when it goes from disabled to enabled.
    let endpoint = &patterns[2]["dynamodb"];
    assert_eq!(
        endpoint["NewImage"]["enabled"],
        serde_json::json!({"BOOL": [true]})
    );
    assert_eq!(
        endpoint["OldImage"]["enabled"],
        serde_json::json!({"BOOL": [false]})
    );
}

#[test]
fn the_presence_sweeper_runs_every_minute_and_publishes_only_presence_events() {
    let template = template();
    let sweeper = &template["Resources"]["PresenceSweeperFunction"]["Properties"];
    let schedule = &sweeper["Events"]["Sweep"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    assert_eq!(
        schedule["Properties"]["ScheduleExpression"].as_str(),
        Some("rate(1 minute)")
    );
    let text = serde_json::to_string(&serde_json::to_value(&sweeper["Policies"]).unwrap()).unwrap();
    for mutation in chat_appsync::presence::PRESENCE_EVENTS {
        assert!(text.contains(&format!("fields/{mutation}\"")), "{mutation}");
    }
    assert_eq!(
        text.matches("/types/Mutation/fields/").count(),
        chat_appsync::presence::PRESENCE_EVENTS.len(),
        "no other publish mutation"
    );
}

#[test]
fn search_replicas_follow_the_node_count() {
    let template = template();
    // One node, or an even number over two zones (zone awareness needs it).
    let allowed = template["Parameters"]["OpenSearchInstanceCount"]["AllowedValues"]
        .as_sequence()
        .expect("OpenSearchInstanceCount.AllowedValues");
    for count in allowed {
        let count = count.as_u64().unwrap();
        assert!(count == 1 || count % 2 == 0, "{count} nodes");
    }
    // The indexer creates the index with a replica only when there is a second node.
    let replicas = serde_json::to_value(
        &template["Resources"]["StreamIndexerFunction"]["Properties"]["Environment"]["Variables"]
            ["OPENSEARCH_REPLICAS"],
    )
    .unwrap();
    assert_eq!(
        replicas,
        serde_json::json!({ "!If": ["SearchMultiAz", "1", "0"] })
    );
    let multi_az = serde_json::to_value(&template["Conditions"]["SearchMultiAz"]).unwrap();
    assert_eq!(
        multi_az,
        serde_json::json!({ "!Not": [{ "!Equals": [{ "!Ref": "OpenSearchInstanceCount" }, 1] }] })
    );
}

#[test]
fn the_api_logs_no_request_headers_and_its_logs_expire() {
    let template = template();
    let log_config = &template["Resources"]["Api"]["Properties"]["LogConfig"];
    // The verbose sections hold the request headers: the Authorization token among them.
    assert_eq!(log_config["ExcludeVerboseContent"].as_bool(), Some(true));
    assert_eq!(log_config["FieldLogLevel"].as_str(), Some("ERROR"));
    let group = &template["Resources"]["ApiLogGroup"];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    let name = serde_json::to_value(&group["Properties"]["LogGroupName"]).unwrap();
    assert_eq!(
        name,
        serde_json::json!({ "!Sub": "/aws/appsync/apis/${Api.ApiId}" })
    );
    assert!(!group["Properties"]["RetentionInDays"].is_null());
}

#[test]
fn the_keys_are_in_no_function_s_configuration_and_each_reads_only_its_secrets() {
    let template = template();
    let text = std::fs::read_to_string(workspace_root().join(TEMPLATE)).unwrap();
    assert!(
        !text.contains("CHAT_SERVER_KEY:") && !text.contains("CHAT_ADMIN_KEY:"),
        "a key itself in a function's environment"
    );
    for (id, function) in resources(&template, "AWS::Serverless::Function") {
        let variables = &function["Properties"]["Environment"]["Variables"];
        if variables["CHAT_SERVER_KEY_SECRET"].is_null() {
            continue;
        }
        // The secret is named by the parameter, and the function may read that one only.
        let named = serde_json::to_value(&variables["CHAT_SERVER_KEY_SECRET"]).unwrap();
        assert!(
            named == serde_json::json!({ "Ref": "ServerKeySecret" })
                || named == serde_json::json!({ "!Ref": "ServerKeySecret" }),
            "{id}: {named}"
        );
        let policies = serde_json::to_string(
            &serde_json::to_value(&function["Properties"]["Policies"]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            policies.matches("secretsmanager:GetSecretValue").count(),
            1,
            "{id}: {policies}"
        );
        assert!(
            policies.contains(":secret:${ServerKeySecret}-??????"),
            "{id}: {policies}"
        );
        // Only the authorizer may read the admin key.
        assert_eq!(
            policies.contains("${AdminKeySecret}"),
            id == "AuthorizerFunction",
            "{id}: {policies}"
        );
        assert!(!policies.contains("secretsmanager:*"), "{id}");
    }
}

#[test]
fn every_lambda_resolver_raises_its_answer_s_error_and_only_faults_alarm() {
    let template = template();
    let data_sources: BTreeSet<String> = resources(&template, "AWS::AppSync::DataSource")
        .into_iter()
        .filter(|(_, ds)| ds["Properties"]["Type"].as_str() == Some("AWS_LAMBDA"))
        .map(|(id, _)| id)
        .collect();
    let mut lambda_resolvers = 0;
    for (id, resolver) in resources(&template, "AWS::AppSync::Resolver") {
        let p = &resolver["Properties"];
        let source = p["DataSourceName"]["Fn::GetAtt"][0].as_str().unwrap_or("");
        if !data_sources.contains(source) {
            continue;
        }
        lambda_resolvers += 1;
        // No request template: AppSync sends the direct Lambda event the functions parse.
        assert!(p["RequestMappingTemplate"].is_null(), "{id}");
        assert!(
            p["Runtime"].is_null() && p["Code"].is_null(),
            "{id}: VTL, not JS"
        );
        assert_eq!(
            p["ResponseMappingTemplate"].as_str(),
            Some(chat_appsync::lambda::RESPONSE_TEMPLATE),
            "{id}"
        );
    }
    assert_eq!(lambda_resolvers, registry_fields().len());
    let threshold = &template["Parameters"]["ErrorAlarmThreshold"];
    assert_eq!(
        threshold["Default"].as_u64(),
        Some(1),
        "the first fault alarms"
    );
}

#[test]
fn every_function_is_released_through_its_live_alias_and_rolls_back_on_its_faults() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["AutoPublishAlias"].as_str(), Some("live"));
    let deployment_type = serde_json::to_value(&globals["DeploymentPreference"]["Type"]).unwrap();
    assert_eq!(
        deployment_type,
        serde_json::json!({"!Ref": "DeploymentType"})
    );
    let alarms: BTreeSet<String> = resources(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for (id, function) in resources(&template, "AWS::Serverless::Function") {
        let rollback = reference(&function["Properties"]["DeploymentPreference"]["Alarms"][0]);
        assert!(
            rollback.ends_with("ErrorsAlarm") && alarms.contains(&rollback),
            "{id}: rolls back on {rollback:?}"
        );
        assert_eq!(
            alarms_on(&template, &rollback),
            Some(id.clone()),
            "{id}: its rollback alarm watches it"
        );
    }
    // Everything that invokes a function invokes the alias.
    for (id, ds) in resources(&template, "AWS::AppSync::DataSource") {
        let arn = &ds["Properties"]["LambdaConfig"]["LambdaFunctionArn"];
        if !arn.is_null() {
            let target = reference(arn);
            assert!(target.ends_with("Function.Alias"), "{id}: {target}");
        }
    }
    let invoke = &template["Resources"]["AppSyncInvokeRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"][0]["Resource"];
    for arn in invoke.as_sequence().unwrap() {
        assert!(reference(arn).ends_with("Function.Alias"), "{arn:?}");
    }
    let alias = |value: &Yaml| reference(value);
    let api = &template["Resources"]["Api"]["Properties"];
    assert_eq!(
        alias(&api["LambdaAuthorizerConfig"]["AuthorizerUri"]),
        "AuthorizerFunction.Alias"
    );
    assert_eq!(
        alias(&template["Resources"]["AuthorizerPermission"]["Properties"]["FunctionName"]),
        "AuthorizerFunction.Alias"
    );
    assert_eq!(
        alias(&template["Resources"]["StreamIndexerMapping"]["Properties"]["FunctionName"]),
        "StreamIndexerFunction.Alias"
    );
}

/// What a `Ref` names, written as generated (`Ref: X`) or by hand (`!Ref X`, which the
/// YAML reader keeps as a one-key map `{"!Ref": X}`); empty when it is no `Ref`.
fn reference(value: &Yaml) -> String {
    let value = serde_json::to_value(value).unwrap_or_default();
    value["Ref"]
        .as_str()
        .or(value["!Ref"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The function an alarm watches (its `FunctionName` dimension), by logical id.
fn alarms_on(template: &Yaml, alarm: &str) -> Option<String> {
    template["Resources"][alarm]["Properties"]["Dimensions"]
        .as_sequence()?
        .iter()
        .find(|d| d["Name"].as_str() == Some("FunctionName"))
        .map(|d| reference(&d["Value"]))
}

#[test]
fn every_function_logs_into_one_group_that_expires() {
    let template = template();
    let logging = serde_json::to_value(&template["Globals"]["Function"]["LoggingConfig"]).unwrap();
    assert_eq!(
        logging["LogGroup"],
        serde_json::json!({"!Ref": "FunctionsLogGroup"})
    );
    let group = &template["Resources"]["FunctionsLogGroup"]["Properties"];
    let retention = serde_json::to_value(&group["RetentionInDays"]).unwrap();
    assert_eq!(retention, serde_json::json!({"!Ref": "LogRetentionDays"}));
    for (id, function) in resources(&template, "AWS::Serverless::Function") {
        assert!(
            function["Properties"]["LoggingConfig"].is_null(),
            "{id} must not log elsewhere"
        );
    }
}

#[test]
fn the_first_request_s_functions_may_keep_instances_warm_and_nothing_else() {
    let template = template();
    let mut provisioned: Vec<String> = resources(&template, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| !f["Properties"]["ProvisionedConcurrencyConfig"].is_null())
        .map(|(id, f)| {
            let config =
                serde_json::to_value(&f["Properties"]["ProvisionedConcurrencyConfig"]).unwrap();
            // Off unless the parameter is above 0.
            let text = config.to_string();
            assert!(
                text.contains("HasProvisionedConcurrency") && text.contains("AWS::NoValue"),
                "{id}: {text}"
            );
            id
        })
        .collect();
    provisioned.sort();
    assert_eq!(
        provisioned,
        ["AuthorizerFunction", "MutationSendMessageFunction"]
    );
}

#[test]
fn the_dashboard_shows_every_function_and_the_search_domain_has_aws_s_alarms() {
    let template = template();
    let body =
        serde_json::to_value(&template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
            .unwrap();
    let body = body["Fn::Sub"].as_str().expect("a Fn::Sub string");
    let widgets: serde_json::Value = serde_json::from_str(body).expect("the body is JSON");
    let latency = widgets["widgets"][0]["properties"]["metrics"]
        .as_array()
        .unwrap();
    for (id, _) in resources(&template, "AWS::Serverless::Function") {
        assert!(
            latency.iter().any(|m| m[3] == format!("${{{id}}}")),
            "{id} has no latency line"
        );
    }
    assert!(
        body.contains(
            chat_deploy::CLIENT_ERRORS_SEARCH
                .replace('"', "\\\"")
                .as_str()
        )
    );
    for (alarm, metric) in [
        ("SearchRedAlarm", "ClusterStatus.red"),
        ("SearchYellowAlarm", "ClusterStatus.yellow"),
        ("SearchWritesBlockedAlarm", "ClusterIndexWritesBlocked"),
        ("SearchJvmPressureAlarm", "JVMMemoryPressure"),
        ("SearchCpuAlarm", "CPUUtilization"),
        ("SearchSnapshotAlarm", "AutomatedSnapshotFailure"),
        ("ApiLatencyAlarm", "Latency"),
    ] {
        let properties = &template["Resources"][alarm]["Properties"];
        assert_eq!(properties["MetricName"].as_str(), Some(metric), "{alarm}");
        assert!(!properties["AlarmActions"].is_null(), "{alarm} notifies");
    }
    let storage = serde_json::to_value(&template["Resources"]["SearchFreeStorageAlarm"]).unwrap();
    assert_eq!(storage["Properties"]["Threshold"], 0.25);
}

#[test]
fn every_stage_in_samconfig_sets_only_parameters_the_template_has_with_allowed_values() {
    let template = template();
    let samconfig = std::fs::read_to_string(workspace_root().join("samconfig.toml")).unwrap();
    let overrides: Vec<&str> = samconfig
        .lines()
        .filter_map(|l| l.trim().strip_prefix("parameter_overrides = "))
        .collect();
    assert_eq!(overrides.len(), 2, "dev and prod");
    for line in overrides {
        for pair in line.trim_matches('"').split_whitespace() {
            let (name, value) = pair.split_once('=').expect("Name=value");
            let parameter = &template["Parameters"][name];
            assert!(!parameter.is_null(), "{name} is not a template parameter");
            if let Some(allowed) = parameter["AllowedValues"].as_sequence() {
                let allowed: Vec<String> = allowed
                    .iter()
                    .map(|v| {
                        serde_json::to_value(v)
                            .unwrap()
                            .to_string()
                            .trim_matches('"')
                            .to_owned()
                    })
                    .collect();
                assert!(
                    allowed.contains(&value.to_owned()),
                    "{name}={value}: {allowed:?}"
                );
            }
        }
    }
}

/// A resource's `Condition`.
fn condition_of(template: &Yaml, id: &str) -> Option<String> {
    template["Resources"][id]["Condition"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn the_edge_is_optional_a_rate_limit_per_address_and_a_domain_with_its_certificate() {
    let template = template();
    for (id, condition) in [
        ("WebAcl", "HasWaf"),
        ("WebAclAssociation", "HasWaf"),
        ("ApiDomainName", "HasCustomDomain"),
        ("ApiDomainNameAssociation", "HasCustomDomain"),
    ] {
        assert_eq!(
            condition_of(&template, id).as_deref(),
            Some(condition),
            "{id}"
        );
    }
    // Off by default.
    assert_eq!(
        template["Parameters"]["WafRateLimit"]["Default"].as_u64(),
        Some(0)
    );
    assert_eq!(
        template["Parameters"]["CustomDomainName"]["Default"].as_str(),
        Some("")
    );
    let rule = &template["Resources"]["WebAcl"]["Properties"]["Rules"][0];
    let statement = &rule["Statement"]["RateBasedStatement"];
    assert_eq!(statement["AggregateKeyType"].as_str(), Some("IP"));
    assert_eq!(reference(&statement["Limit"]), "WafRateLimit");
    assert!(
        rule["Action"]["Block"].is_mapping(),
        "over the limit is blocked"
    );
    let association = &template["Resources"]["WebAclAssociation"]["Properties"];
    let target = serde_json::to_value(&association["ResourceArn"]).unwrap();
    assert_eq!(target, serde_json::json!({"!GetAtt": "Api.Arn"}));
    // A domain without a certificate is refused before anything is created.
    let assertion = serde_json::to_value(
        &template["Rules"]["CustomDomainNeedsCertificate"]["Assertions"][0]["Assert"],
    )
    .unwrap();
    assert!(
        assertion.to_string().contains("CustomDomainCertificateId"),
        "{assertion}"
    );
}

#[test]
fn a_hosted_console_is_private_behind_https_with_a_csp_that_reaches_only_this_api() {
    let template = template();
    for id in [
        "ConsoleBucket",
        "ConsoleBucketPolicy",
        "ConsoleOriginAccess",
        "ConsoleHeaders",
        "ConsoleDistribution",
    ] {
        assert_eq!(
            condition_of(&template, id).as_deref(),
            Some("HostsConsole"),
            "{id}"
        );
    }
    assert_eq!(
        template["Parameters"]["HostConsole"]["Default"].as_str(),
        Some("false")
    );
    let block =
        &template["Resources"]["ConsoleBucket"]["Properties"]["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    // Only the distribution reads the bucket, and only over TLS.
    let policy = serde_json::to_value(
        &template["Resources"]["ConsoleBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"],
    )
    .unwrap();
    assert_eq!(
        policy[0]["Principal"]["Service"],
        "cloudfront.amazonaws.com"
    );
    assert_eq!(policy[0]["Action"], "s3:GetObject");
    assert!(
        policy[0]["Condition"]["StringEquals"]["AWS:SourceArn"]
            .to_string()
            .contains("distribution/${ConsoleDistribution}")
    );
    assert_eq!(policy[1]["Effect"], "Deny");
    let behavior = &template["Resources"]["ConsoleDistribution"]["Properties"]["DistributionConfig"]
        ["DefaultCacheBehavior"];
    assert_eq!(
        behavior["ViewerProtocolPolicy"].as_str(),
        Some("redirect-to-https")
    );
    let csp = serde_json::to_value(
        &template["Resources"]["ConsoleHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]
            ["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"],
    )
    .unwrap();
    let csp = csp["!Sub"].as_str().expect("a !Sub string");
    let directives: Vec<&str> = csp.split("; ").collect();
    assert!(directives.contains(&"script-src 'self'"), "{csp}");
    assert!(directives.contains(&"frame-ancestors 'none'"), "{csp}");
    assert!(
        directives.contains(&"connect-src 'self' ${Api.GraphQLUrl} ${Api.RealtimeUrl}"),
        "requests reach this API and nothing else: {csp}"
    );
    assert!(!csp.contains("unsafe") && !csp.contains('*'), "{csp}");
}

#[test]
fn the_functions_run_on_arm64_and_check_deploy_builds_the_hot_one_so() {
    let template = template();
    let architectures =
        serde_json::to_value(&template["Globals"]["Function"]["Architectures"]).unwrap();
    assert_eq!(architectures, serde_json::json!(["arm64"]));
    for (id, function) in resources(&template, "AWS::Serverless::Function") {
        assert!(
            function["Properties"]["Architectures"].is_null(),
            "{id} must not choose another architecture"
        );
    }
    let check = std::fs::read_to_string(workspace_root().join("scripts/check-deploy")).unwrap();
    assert!(
        check.contains("cargo lambda build --release --arm64 --locked -p chat-functions --bin mutation-send-message"),
        "check-deploy builds what sam build ships"
    );
}

/// The functions whose throttles an alarm watches: its own `FunctionName` dimension, or those
/// of the metrics of a metric-math alarm.
fn throttles_watched(alarm: &Yaml) -> Vec<String> {
    let properties = &alarm["Properties"];
    if properties["MetricName"].as_str() == Some("Throttles") {
        return properties["Dimensions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|d| reference(&d["Value"]))
            .collect();
    }
    properties["Metrics"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|m| m["MetricStat"]["Metric"]["MetricName"].as_str() == Some("Throttles"))
        .flat_map(|m| {
            m["MetricStat"]["Metric"]["Dimensions"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|d| reference(&d["Value"]))
        })
        .collect()
}

#[test]
fn every_function_s_throttles_alarm_once_within_cloudwatch_s_metric_limit() {
    let template = template();
    let mut watched: Vec<String> = Vec::new();
    for (id, alarm) in resources(&template, "AWS::CloudWatch::Alarm") {
        let metrics = alarm["Properties"]["Metrics"].as_sequence();
        if let Some(metrics) = metrics {
            let stats = metrics
                .iter()
                .filter(|m| !m["MetricStat"].is_null())
                .count();
            assert!(
                stats <= chat_deploy::THROTTLE_ALARM_METRICS,
                "{id}: {stats} metrics"
            );
            let returned = metrics
                .iter()
                .filter(|m| m["ReturnData"].as_bool() == Some(true))
                .count();
            assert_eq!(returned, 1, "{id}: one expression is the alarm's value");
        }
        watched.extend(throttles_watched(alarm));
    }
    let mut functions: Vec<String> = resources(&template, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    functions.sort();
    watched.sort();
    assert_eq!(
        watched, functions,
        "each function's throttles, watched once"
    );
}
