//! Limits on the shape of an operation (`chat_domain::limits::QUERY_*`), checked before
//! async-graphql validates or runs anything.
//!
//! async-graphql has limits of its own (depth, complexity, recursion, directives), but its
//! checks walk fragment spreads anew at every use: `fragment A on Query { ...B ...B }`,
//! `fragment B on Query { ...C ...C }` ... doubles the work at every level, so a request of
//! a few hundred bytes keeps a core busy for minutes before any limit is compared. Here each
//! fragment is measured once (memoized), so the check is linear in the document; a fragment
//! cycle is refused outright. Its messages say which limit was hit and its value. The
//! schema keeps async-graphql's own limits, at the same values, as a backstop.
//!
//! The same check turns introspection away when the server runs with it off, with a message
//! saying so (async-graphql alone would answer "unknown field __schema").
//!
//! Documents that pass are kept, by their text, in a small bounded cache: clients send the
//! same few operations again and again (the text is fixed; the variables change), and
//! parsing one cost 9 % of the server's CPU for a page of `messages`. A hit is a copy of the
//! parsed document, which already passed the check.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    ErrorExtensionValues, Name, Pos, Positioned, Request, ServerError, ServerResult,
};
use chat_domain::ErrorCode;
use chat_domain::limits::{
    QUERY_DEPTH_MAX, QUERY_DIRECTIVES_PER_FIELD_MAX, QUERY_FIELDS_MAX, QUERY_RECURSION_MAX,
    QUERY_ROOT_FIELDS_MAX,
};

/// What a selection set amounts to with its fragments expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Fields selected, at every level, each alias and each fragment expansion counted.
    pub fields: usize,
    /// Deepest nesting of fields (a leaf field is 1).
    pub depth: usize,
    /// Deepest nesting of selection sets, fragments and inline fragments counted (as
    /// async-graphql's recursion guard counts).
    pub nesting: usize,
    /// Fields at this level itself: an operation's root fields.
    pub top_fields: usize,
    /// `__schema` or `__type` at this level.
    pub top_introspection: bool,
    /// The most directives on one selection.
    pub directives: usize,
}

fn bad_input(message: String, pos: Option<Pos>) -> ServerError {
    let mut error = ServerError::new(message, pos);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", ErrorCode::BadInput.as_str());
    extensions.set("errorType", ErrorCode::BadInput.as_str());
    error.extensions = Some(extensions);
    error
}

fn nesting_error(pos: Pos) -> ServerError {
    bad_input(
        format!(
            "selections are nested more than {QUERY_RECURSION_MAX} levels deep (fragments \
             and inline fragments count as levels); the limit is {QUERY_RECURSION_MAX}"
        ),
        Some(pos),
    )
}

enum Memo {
    InProgress,
    Done(Shape),
}

struct Measure<'a> {
    document: &'a ExecutableDocument,
    fragments: HashMap<&'a Name, Memo>,
}

impl<'a> Measure<'a> {
    /// The shape of `set`, which sits `level` selection sets below its operation's root.
    fn set(&mut self, set: &'a Positioned<SelectionSet>, level: usize) -> ServerResult<Shape> {
        if level > QUERY_RECURSION_MAX {
            return Err(nesting_error(set.pos));
        }
        let mut shape = Shape::default();
        for selection in &set.node.items {
            let inner = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let below = if field.selection_set.node.items.is_empty() {
                        Shape::default()
                    } else {
                        let below = self.set(&field.selection_set, level + 1)?;
                        Shape {
                            nesting: below.nesting + 1,
                            ..below
                        }
                    };
                    let name = field.name.node.as_str();
                    Shape {
                        fields: below.fields.saturating_add(1),
                        depth: below.depth + 1,
                        nesting: below.nesting,
                        top_fields: 1,
                        top_introspection: name == "__schema" || name == "__type",
                        directives: below.directives.max(field.directives.len()),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let inner = self.set(&fragment.node.selection_set, level + 1)?;
                    Shape {
                        nesting: inner.nesting + 1,
                        directives: inner.directives.max(fragment.node.directives.len()),
                        ..inner
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let inner = self.fragment(&spread.node.fragment_name, level + 1)?;
                    Shape {
                        nesting: inner.nesting + 1,
                        directives: inner.directives.max(spread.node.directives.len()),
                        ..inner
                    }
                }
            };
            shape.fields = shape.fields.saturating_add(inner.fields);
            shape.depth = shape.depth.max(inner.depth);
            shape.nesting = shape.nesting.max(inner.nesting);
            shape.top_fields = shape.top_fields.saturating_add(inner.top_fields);
            shape.top_introspection |= inner.top_introspection;
            shape.directives = shape.directives.max(inner.directives);
        }
        Ok(shape)
    }

    /// A named fragment's shape, measured once; `level` is where its selection set sits.
    fn fragment(&mut self, name: &'a Positioned<Name>, level: usize) -> ServerResult<Shape> {
        let Some(definition) = self.document.fragments.get(&name.node) else {
            // Validation reports the unknown fragment.
            return Ok(Shape::default());
        };
        match self.fragments.get(&name.node) {
            Some(Memo::Done(shape)) => {
                if level + shape.nesting > QUERY_RECURSION_MAX {
                    return Err(nesting_error(name.pos));
                }
                return Ok(*shape);
            }
            Some(Memo::InProgress) => {
                return Err(bad_input(
                    format!(
                        "fragment {} spreads itself (directly or through other fragments)",
                        name.node
                    ),
                    Some(name.pos),
                ));
            }
            None => {}
        }
        self.fragments.insert(&name.node, Memo::InProgress);
        let mut shape = self.set(&definition.node.selection_set, level)?;
        shape.directives = shape.directives.max(definition.node.directives.len());
        self.fragments.insert(&name.node, Memo::Done(shape));
        Ok(shape)
    }
}

/// Every operation of `document` against the limits; `introspection` false refuses
/// `__schema` and `__type`.
pub fn check(document: &ExecutableDocument, introspection: bool) -> ServerResult<()> {
    let mut measure = Measure {
        document,
        fragments: HashMap::new(),
    };
    for (_, operation) in document.operations.iter() {
        let shape = measure.set(&operation.node.selection_set, 0)?;
        let at = Some(operation.pos);
        if shape.directives > QUERY_DIRECTIVES_PER_FIELD_MAX {
            return Err(bad_input(
                format!(
                    "a selection has {} directives; the limit is {QUERY_DIRECTIVES_PER_FIELD_MAX}",
                    shape.directives
                ),
                at,
            ));
        }
        if shape.top_fields > QUERY_ROOT_FIELDS_MAX {
            return Err(bad_input(
                format!(
                    "the operation has {} root fields (each alias counts); the limit is \
                     {QUERY_ROOT_FIELDS_MAX}",
                    shape.top_fields
                ),
                at,
            ));
        }
        if shape.depth > QUERY_DEPTH_MAX {
            return Err(bad_input(
                format!(
                    "the operation nests fields {} deep; the limit is {QUERY_DEPTH_MAX}",
                    shape.depth
                ),
                at,
            ));
        }
        if shape.fields > QUERY_FIELDS_MAX {
            return Err(bad_input(
                format!(
                    "the operation selects {} fields (aliases and fragment spreads count \
                     each time); the limit is {QUERY_FIELDS_MAX}",
                    shape.fields
                ),
                at,
            ));
        }
        if !introspection && shape.top_introspection {
            return Err(bad_input(
                "introspection is turned off on this server (__schema and __type are \
                 refused; __typename works)"
                    .to_owned(),
                at,
            ));
        }
    }
    Ok(())
}

/// How many parsed documents the cache keeps (the least recently used goes first).
pub const CACHED_DOCUMENTS: usize = 256;
/// The longest query text the cache keeps a document for: the console's and the SDKs'
/// operations are a few hundred bytes; a larger text is parsed every time.
pub const CACHED_QUERY_BYTES: usize = 8 * 1024;

/// Parsed documents that passed [`check`], by query text; bounded in entries and key size,
/// so distinct queries cannot make it grow.
pub struct DocumentCache {
    documents: Mutex<LruCache<String, Arc<ExecutableDocument>>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache {
            documents: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHED_DOCUMENTS).expect("not zero"),
            )),
        }
    }
}

impl DocumentCache {
    fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query)
            .cloned()
    }

    fn put(&self, query: &str, document: &ExecutableDocument) {
        if query.len() > CACHED_QUERY_BYTES {
            return;
        }
        let document = Arc::new(document.clone());
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(query.to_owned(), document);
    }

    /// How many documents are kept.
    pub fn len(&self) -> usize {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The schema extension that runs [`check`] on every request (HTTP and WebSocket) before
/// async-graphql parses it again, validates or executes it. The parsed document is kept in
/// the request, so a request is parsed once, and in the cache, so an operation's text is
/// parsed once while it is in use.
#[derive(Clone)]
pub struct QueryLimits {
    pub introspection: bool,
    pub documents: Arc<DocumentCache>,
}

impl QueryLimits {
    pub fn new(introspection: bool) -> Self {
        QueryLimits {
            introspection,
            documents: Arc::default(),
        }
    }
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for QueryLimits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(document) = self.documents.get(&request.query) {
            request.set_parsed_query(ExecutableDocument::clone(&document));
            return next.run(ctx, request).await;
        }
        // A document that does not parse is reported by async-graphql as usual. (The
        // WebSocket path may have parsed it already, to tell a subscription.)
        let query = request.query.clone();
        if let Ok(document) = request.parsed_query() {
            check(document, self.introspection)?;
            self.documents.put(&query, document);
        }
        next.run(ctx, request).await
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn shape(query: &str) -> Shape {
        let document = parse_query(query).unwrap();
        let mut measure = Measure {
            document: &document,
            fragments: HashMap::new(),
        };
        let (_, operation) = document.operations.iter().next().unwrap();
        measure.set(&operation.node.selection_set, 0).unwrap()
    }

    fn refusal(query: &str) -> String {
        let document = parse_query(query).unwrap();
        check(&document, true).unwrap_err().message
    }

    /// graphql-js's `getIntrospectionQuery` with every option on and `typeDepth` 9 (the
    /// deepest any version sends; GraphiQL 4's graphql 16 sends 7 levels of `ofType`).
    pub(crate) fn introspection_query() -> String {
        let mut type_ref = String::from("kind name");
        for _ in 0..9 {
            type_ref = format!("kind name ofType {{ {type_ref} }}");
        }
        format!(
            "query IntrospectionQuery {{ __schema {{ description queryType {{ name kind }} \
             mutationType {{ name kind }} subscriptionType {{ name kind }} \
             types {{ ...FullType }} directives {{ name description isRepeatable locations \
             args(includeDeprecated: true) {{ ...InputValue }} }} }} }} \
             fragment FullType on __Type {{ kind name description specifiedByURL isOneOf \
             fields(includeDeprecated: true) {{ name description args(includeDeprecated: true) \
             {{ ...InputValue }} type {{ ...TypeRef }} isDeprecated deprecationReason }} \
             inputFields(includeDeprecated: true) {{ ...InputValue }} interfaces {{ ...TypeRef }} \
             enumValues(includeDeprecated: true) {{ name description isDeprecated \
             deprecationReason }} possibleTypes {{ ...TypeRef }} }} \
             fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} \
             defaultValue isDeprecated deprecationReason }} \
             fragment TypeRef on __Type {{ {type_ref} }}"
        )
    }

    #[test]
    fn the_deepest_introspection_query_fits() {
        let query = introspection_query();
        let measured = shape(&query);
        assert_eq!(measured.depth, 15);
        // __schema 1 + description 1 + the root types 9 + types 178 + directives 41.
        assert_eq!(measured.fields, 230);
        assert_eq!(measured.top_fields, 1);
        assert!(measured.top_introspection);
        check(&parse_query(&query).unwrap(), true).unwrap();
        let off = check(&parse_query(&query).unwrap(), false).unwrap_err();
        assert!(
            off.message.contains("introspection is turned off"),
            "{off:?}"
        );
    }

    #[test]
    fn fragments_count_at_every_use() {
        let measured = shape(
            "query { a: chats(appToken: \"x\") { ...Page } b: chats(appToken: \"x\") { ...Page } } \
             fragment Page on ChatPage { nextToken items { number } }",
        );
        assert_eq!(measured.fields, 2 + 2 * 3);
        assert_eq!(measured.top_fields, 2);
        assert_eq!(measured.depth, 3);
        assert_eq!(measured.nesting, 3);
        assert!(!measured.top_introspection);
    }

    #[test]
    fn a_fragment_bomb_is_measured_without_expanding_it() {
        // 30 levels of fragments, each spreading the next twice: 2^30 fields expanded.
        let mut query = String::from("query { ...F0 }\n");
        for i in 0..30 {
            query.push_str(&format!(
                "fragment F{i} on Query {{ ...F{0} ...F{0} }}\n",
                i + 1
            ));
        }
        query.push_str("fragment F30 on Query { __typename }\n");
        let started = std::time::Instant::now();
        let message = refusal(&query);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(message.contains("root fields"), "{message}");
        let measured = shape(&query);
        assert_eq!(measured.fields, 1 << 30);
        assert_eq!(measured.nesting, 31);
    }

    #[test]
    fn cycles_and_deep_fragment_chains_are_refused() {
        let cycle =
            refusal("query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }");
        assert!(cycle.contains("spreads itself"), "{cycle}");
        let mut chain = String::from("query { ...F0 }\n");
        for i in 0..40 {
            chain.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
        }
        chain.push_str("fragment F40 on Query { __typename }\n");
        let message = refusal(&chain);
        assert!(message.contains("the limit is 32"), "{message}");
    }

    #[test]
    fn each_limit_names_itself_and_its_value() {
        let aliases: String = (0..11).map(|i| format!("a{i}: __typename ")).collect();
        assert_eq!(
            refusal(&format!("{{ {aliases} }}")),
            "the operation has 11 root fields (each alias counts); the limit is 10"
        );
        let mut deep = String::from("__typename");
        for _ in 0..15 {
            deep = format!("lastMessage {{ {deep} }}");
        }
        let message = refusal(&format!(
            "{{ chat(appToken: \"x\", number: 1) {{ {deep} }} }}"
        ));
        assert_eq!(
            message,
            "the operation nests fields 17 deep; the limit is 15"
        );
        let wide: String = (0..600).map(|i| format!("n{i}: number ")).collect();
        let message = refusal(&format!(
            "{{ chat(appToken: \"x\", number: 1) {{ {wide} }} }}"
        ));
        assert!(
            message.starts_with("the operation selects 601 fields"),
            "{message}"
        );
        assert!(message.ends_with("the limit is 500"), "{message}");
        let message =
            refusal("{ __typename @skip(if: false) @include(if: true) @skip(if: false) }");
        assert_eq!(message, "a selection has 3 directives; the limit is 2");
    }

    /// A schema of one field `hello(n: Int): Int` (answering `n`) with the extension.
    fn tiny_schema(limits: QueryLimits) -> async_graphql::dynamic::Schema {
        use async_graphql::dynamic::{Field, FieldFuture, InputValue, Object, Schema, TypeRef};
        let query = Object::new("Query").field(
            Field::new("hello", TypeRef::named(TypeRef::INT), |ctx| {
                FieldFuture::new(async move {
                    let n = ctx.args.try_get("n")?.i64()?;
                    Ok(Some(async_graphql::Value::from(n)))
                })
            })
            .argument(InputValue::new("n", TypeRef::named(TypeRef::INT))),
        );
        Schema::build("Query", None, None)
            .register(query)
            .extension(limits)
            .finish()
            .unwrap()
    }

    #[tokio::test]
    async fn an_operation_is_parsed_once_and_its_variables_still_apply() {
        let limits = QueryLimits::new(true);
        let schema = tiny_schema(limits.clone());
        let text = "query($n: Int) { hello(n: $n) }";
        for n in [1, 2, 3] {
            let request = Request::new(text).variables(async_graphql::Variables::from_json(
                serde_json::json!({"n": n}),
            ));
            let response = schema.execute(request).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            assert_eq!(
                response.data.into_json().unwrap(),
                serde_json::json!({"hello": n})
            );
        }
        assert_eq!(limits.documents.len(), 1);
    }

    #[tokio::test]
    async fn refused_and_oversized_documents_are_not_kept() {
        let limits = QueryLimits::new(false);
        let schema = tiny_schema(limits.clone());
        // Refused (introspection off) both times: a refusal is never cached as a pass.
        for _ in 0..2 {
            let response = schema.execute("{ __schema { queryType { name } } }").await;
            assert!(
                response.errors[0]
                    .message
                    .contains("introspection is turned off"),
                "{:?}",
                response.errors
            );
        }
        let padded = format!("{{ hello(n: 7) }}{}", " ".repeat(CACHED_QUERY_BYTES));
        let response = schema.execute(padded.as_str()).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert!(limits.documents.is_empty());
        // Bounded: more distinct operations than it keeps leave it at its size.
        for n in 0..CACHED_DOCUMENTS + 10 {
            let response = schema.execute(format!("{{ hello(n: {n}) }}")).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
        }
        assert_eq!(limits.documents.len(), CACHED_DOCUMENTS);
    }
}
