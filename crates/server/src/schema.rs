//! The GraphQL schema of the dev server, built from `schema.graphql` at start-up.
//!
//! Every field of Query and Mutation (and any other field the registry names) resolves by
//! building the event AppSync would send and calling the shared registry; every other field
//! reads the same-named property of its parent object, as AppSync does for fields without a
//! resolver. No field is wired by hand here.

use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, TypeRef,
};
use async_graphql::{ErrorExtensions, Name, Value};
use async_graphql_parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use chat_appsync::Registry;
use chat_appsync::auth::resolver_context;
use chat_appsync::registry::event_for;
use chat_domain::Caller;

/// What AppSync provides without declaring it: its scalars and directives.
pub const APPSYNC_PRELUDE: &str = r#"
scalar AWSDate
scalar AWSTime
scalar AWSDateTime
scalar AWSTimestamp
scalar AWSEmail
scalar AWSJSON
scalar AWSURL
scalar AWSPhone
scalar AWSIPAddress
directive @aws_subscribe(mutations: [String]) on FIELD_DEFINITION
directive @aws_lambda on FIELD_DEFINITION | OBJECT
directive @aws_api_key on FIELD_DEFINITION | OBJECT
directive @aws_iam on FIELD_DEFINITION | OBJECT
directive @aws_oidc on FIELD_DEFINITION | OBJECT
directive @aws_cognito_user_pools(cognito_groups: [String]) on FIELD_DEFINITION | OBJECT
"#;

/// The repository's schema, compiled in so the binary serves exactly what it was built with.
pub const SCHEMA_SDL: &str = include_str!("../../../schema.graphql");

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema.graphql does not parse: {0}")]
    Parse(#[from] async_graphql_parser::Error),
    #[error("schema.graphql uses {0}, which the dev server does not support yet")]
    Unsupported(String),
    #[error("{0} has no resolver in the registry")]
    MissingResolver(String),
    #[error("the registry resolves {0}, which schema.graphql does not have")]
    UnknownField(String),
    #[error("async-graphql rejected the schema: {0}")]
    Build(#[from] async_graphql::dynamic::SchemaError),
}

fn type_ref(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(name) => TypeRef::named(name.as_str()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    if ty.nullable {
        base
    } else {
        TypeRef::NonNull(Box::new(base))
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    value.clone().into_json().unwrap_or(serde_json::Value::Null)
}

/// Resolves a field through the registry, with the parent object as `source`.
fn registry_field(registry: Arc<Registry>, parent: String, field: String, ty: TypeRef) -> Field {
    let name = field.clone();
    Field::new(name, ty, move |ctx: ResolverContext<'_>| {
        let registry = registry.clone();
        let parent = parent.clone();
        let field = field.clone();
        FieldFuture::new(async move {
            let caller = ctx
                .data_opt::<Caller>()
                .cloned()
                .unwrap_or(Caller::Anonymous);
            let args = serde_json::Value::Object(
                ctx.args
                    .as_index_map()
                    .iter()
                    .map(|(k, v)| (k.to_string(), to_json(v)))
                    .collect(),
            );
            let mut event = event_for(&parent, &field, args, resolver_context(&caller));
            event.source = ctx.parent_value.as_value().map(to_json);
            match registry.resolve(event).await {
                Ok(serde_json::Value::Null) => Ok(None),
                Ok(json) => Ok(Some(FieldValue::value(
                    Value::from_json(json).unwrap_or(Value::Null),
                ))),
                Err(error) => Err(async_graphql::Error::new(error.error_message).extend_with(
                    |_, ext| {
                        ext.set("code", error.error_type.clone());
                        ext.set("errorType", error.error_type.clone());
                    },
                )),
            }
        })
    })
}

/// AppSync's default for a field without a resolver: the parent's property of that name.
fn property_field(field: String, ty: TypeRef) -> Field {
    let name = Name::new(&field);
    Field::new(field, ty, move |ctx: ResolverContext<'_>| {
        let value = match ctx.parent_value.as_value() {
            Some(Value::Object(map)) => map.get(&name).cloned(),
            _ => None,
        };
        FieldFuture::Value(value.filter(|v| *v != Value::Null).map(FieldValue::value))
    })
}

pub fn build(registry: Arc<Registry>) -> Result<Schema, SchemaError> {
    build_from(SCHEMA_SDL, registry)
}

pub fn build_from(sdl: &str, registry: Arc<Registry>) -> Result<Schema, SchemaError> {
    let document = async_graphql_parser::parse_schema(format!("{APPSYNC_PRELUDE}\n{sdl}"))?;
    let mut has_mutation = false;
    let mut has_subscription = false;
    let mut schema_fields = Vec::new();
    let mut types = Vec::new();
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(def) = definition else {
            continue; // directive definitions: metadata for AppSync and us, not types
        };
        let def = &def.node;
        let type_name = def.name.node.to_string();
        match &def.kind {
            TypeKind::Scalar => {
                types.push(async_graphql::dynamic::Type::from(Scalar::new(type_name)))
            }
            TypeKind::Enum(e) => {
                let mut en = Enum::new(type_name);
                for v in &e.values {
                    en = en.item(v.node.value.node.to_string());
                }
                types.push(en.into());
            }
            TypeKind::InputObject(input) => {
                let mut obj = InputObject::new(type_name);
                for f in &input.fields {
                    obj = obj.field(InputValue::new(
                        f.node.name.node.to_string(),
                        type_ref(&f.node.ty.node),
                    ));
                }
                types.push(obj.into());
            }
            TypeKind::Object(object) => {
                match type_name.as_str() {
                    "Mutation" => has_mutation = true,
                    "Subscription" => has_subscription = true,
                    _ => {}
                }
                let root = matches!(type_name.as_str(), "Query" | "Mutation");
                let mut obj = Object::new(type_name.clone());
                for f in &object.fields {
                    let f = &f.node;
                    let field_name = f.name.node.to_string();
                    let key = format!("{type_name}.{field_name}");
                    let ty = type_ref(&f.ty.node);
                    let mut field = if registry.has(&key) {
                        schema_fields.push(key);
                        registry_field(registry.clone(), type_name.clone(), field_name, ty)
                    } else if root {
                        return Err(SchemaError::MissingResolver(key));
                    } else {
                        property_field(field_name, ty)
                    };
                    for arg in &f.arguments {
                        let arg = &arg.node;
                        field = field.argument(InputValue::new(
                            arg.name.node.to_string(),
                            type_ref(&arg.ty.node),
                        ));
                    }
                    obj = obj.field(field);
                }
                types.push(obj.into());
            }
            TypeKind::Interface(_) => {
                return Err(SchemaError::Unsupported(format!("interface {type_name}")));
            }
            TypeKind::Union(_) => {
                return Err(SchemaError::Unsupported(format!("union {type_name}")));
            }
        }
    }
    if has_subscription {
        return Err(SchemaError::Unsupported("subscriptions".into()));
    }
    if let Some(unknown) = registry
        .fields()
        .find(|f| !schema_fields.iter().any(|s| s == f))
    {
        return Err(SchemaError::UnknownField(unknown.to_owned()));
    }
    let mut builder = Schema::build("Query", has_mutation.then_some("Mutation"), None);
    for ty in types {
        builder = builder.register(ty);
    }
    Ok(builder.finish()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use async_graphql_parser::types::TypeKind;
    use chat_domain::{ChatService, ServerKey, SystemClock};
    use chat_embedded::SqliteStore;

    use super::*;

    fn registry() -> Arc<Registry> {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let service = ChatService::new(store, ServerKey::generate(), Arc::new(SystemClock));
        Arc::new(Registry::new(Arc::new(service)))
    }

    /// type -> field -> (type, [(argument, type)]), for object types of an SDL document.
    type Shape = BTreeMap<String, BTreeMap<String, (String, Vec<(String, String)>)>>;

    fn shape(sdl: &str) -> (Shape, BTreeMap<String, Vec<String>>) {
        let doc = async_graphql_parser::parse_schema(sdl).unwrap();
        let mut objects = Shape::new();
        let mut enums = BTreeMap::new();
        for def in doc.definitions {
            let TypeSystemDefinition::Type(def) = def else {
                continue;
            };
            let name = def.node.name.node.to_string();
            match def.node.kind {
                TypeKind::Object(o) => {
                    let fields = o.fields.iter().map(|f| {
                        let args =
                            f.node.arguments.iter().map(|a| {
                                (a.node.name.node.to_string(), a.node.ty.node.to_string())
                            });
                        (
                            f.node.name.node.to_string(),
                            (f.node.ty.node.to_string(), args.collect()),
                        )
                    });
                    objects.insert(name, fields.collect());
                }
                TypeKind::Enum(e) => {
                    let values = e.values.iter().map(|v| v.node.value.node.to_string());
                    enums.insert(name, values.collect());
                }
                _ => {}
            }
        }
        (objects, enums)
    }

    #[test]
    fn served_schema_equals_schema_graphql() {
        let schema = build(registry()).unwrap();
        let served = shape(&schema.sdl());
        let file = shape(&format!("{APPSYNC_PRELUDE}\n{SCHEMA_SDL}"));
        assert_eq!(served, file);
        assert!(served.0["Mutation"].contains_key("sendMessage"));
    }

    #[test]
    fn a_root_field_without_resolver_is_refused_at_start_up() {
        let sdl = SCHEMA_SDL.replace("type Query {", "type Query {\n  secrets: String");
        let error = build_from(&sdl, registry()).unwrap_err();
        assert!(
            matches!(error, SchemaError::MissingResolver(ref f) if f == "Query.secrets"),
            "{error}"
        );
    }

    #[test]
    fn a_resolver_without_schema_field_is_refused_at_start_up() {
        let sdl = SCHEMA_SDL.replace(
            "  deleteMessage(appToken: ID!, chatNumber: Int!, number: Int!): Message!\n",
            "",
        );
        assert_ne!(sdl, SCHEMA_SDL);
        let error = build_from(&sdl, registry()).unwrap_err();
        assert!(
            matches!(error, SchemaError::UnknownField(ref f) if f == "Mutation.deleteMessage"),
            "{error}"
        );
    }
}
