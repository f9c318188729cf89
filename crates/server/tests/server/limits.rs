//! Bad input answers BadInput with a clear message: never a panic, a 500 or stored data.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn message_body_limits() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    for bad in ["", "   \n ", &"a".repeat(8 * 1024 + 1), &"é".repeat(4097)] {
        let code = server
            .error_code(
                Some(&c1),
                SEND,
                json!({ "a": app.token, "c": chat, "b": bad }),
            )
            .await;
        assert_eq!(code, "BadInput");
    }
    let max = "a".repeat(8 * 1024);
    assert_eq!(send(&server, &app, &c1, chat, &max).await["number"], 1);
    let data = server
        .ok(&c1, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(
        data["chat"]["messagesCount"], 1,
        "rejected sends stored nothing"
    );
}

#[tokio::test]
async fn numbers_and_limits_out_of_range() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    for (after, before, limit) in [
        (json!(-1), json!(null), json!(null)),
        (json!(null), json!(0), json!(null)),
        (json!(null), json!(null), json!(0)),
        (json!(null), json!(null), json!(101)),
    ] {
        let vars =
            json!({ "a": app.token, "c": chat, "after": after, "before": before, "l": limit });
        assert_eq!(
            server.error_code(Some(&c1), MESSAGES, vars).await,
            "BadInput"
        );
    }
    for number in [0, -5] {
        assert_eq!(
            server
                .error_code(Some(&c1), CHAT, json!({ "a": app.token, "n": number }))
                .await,
            "BadInput"
        );
    }
    // Beyond GraphQL's 32-bit Int: refused by validation.
    let (status, body) = server
        .post(
            Some(&c1),
            CHAT,
            json!({ "a": app.token, "n": 4_294_967_296i64 }),
        )
        .await;
    assert!(status < 500);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BadInput",
        "{body}"
    );
    let (_, body) = server
        .post(
            Some(&c1),
            "query { chats(appToken: \"x\", status: CLOSED) { nextToken } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BadInput",
        "unknown enum value: {body}"
    );
}

#[tokio::test]
async fn identifiers_and_subjects_are_checked() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let bad_customer = server
        .error_code(
            Some(&agent),
            CREATE_CHAT,
            json!({ "a": app.token, "c": "has space" }),
        )
        .await;
    assert_eq!(bad_customer, "BadInput");
    let long_subject = server
        .error_code(
            Some(&agent),
            CREATE_CHAT,
            json!({ "a": app.token, "c": "c1", "s": "s".repeat(201) }),
        )
        .await;
    assert_eq!(long_subject, "BadInput");
    let chat = server
        .ok(&agent, CREATE_CHAT, json!({ "a": app.token, "c": "c1" }))
        .await["createChat"]["number"]
        .as_i64()
        .unwrap();
    let long_key = server
        .error_code(
            Some(&agent),
            SEND,
            json!({ "a": app.token, "c": chat, "b": "x", "k": "k".repeat(65) }),
        )
        .await;
    assert_eq!(long_key, "BadInput");
}

#[tokio::test]
async fn lookalike_ids_and_invisible_bodies_are_refused() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let chat = server
        .ok(&agent, CREATE_CHAT, json!({ "a": app.token, "c": "alice" }))
        .await["createChat"]["number"]
        .as_i64()
        .unwrap();
    // "alice" with a zero-width space, and with a right-to-left override.
    for lookalike in ["ali\u{200B}ce", "\u{202E}ecila"] {
        let (_, body) = server
            .post(
                Some(&agent),
                CREATE_CHAT,
                json!({ "a": app.token, "c": lookalike }),
            )
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BadInput",
            "{body}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("invisible or bidirectional"),
            "{body}"
        );
        let key = server
            .error_code(
                Some(&agent),
                SEND,
                json!({ "a": app.token, "c": chat, "b": "x", "k": lookalike }),
            )
            .await;
        assert_eq!(key, "BadInput");
    }
    // A user token whose sub is a lookalike does not authenticate.
    let (status, _) = server
        .post(
            Some(&app.user("al\u{200D}ice", chat_domain::Role::Customer)),
            CHAT,
            json!({ "a": app.token, "n": chat }),
        )
        .await;
    assert_eq!(status, 401);
    // A body of zero-width characters and Braille blanks is blank.
    for blank in ["\u{200B}\u{200C}\u{FEFF}", "\u{2800} \u{2800}"] {
        let code = server
            .error_code(
                Some(&agent),
                SEND,
                json!({ "a": app.token, "c": chat, "b": blank }),
            )
            .await;
        assert_eq!(code, "BadInput");
    }
    let data = server
        .ok(&agent, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(data["chat"]["messagesCount"], 0, "nothing was stored");
}

#[tokio::test]
async fn tokens_that_live_too_long_or_are_not_valid_yet_are_refused() {
    // The default maximum lifetime is a day.
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let query = "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread } }";
    let mint = |claims: serde_json::Value| mint_claims(&app, claims);
    let now = jsonwebtoken_exp(0);
    let base = json!({ "sub": "u1", "app": app.token, "role": "AGENT" });
    let with = |extra: serde_json::Value| {
        let mut claims = base.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        mint(claims)
    };
    let cases = [
        (with(json!({ "exp": now + 2 * 86_400, "iat": now })), 401),
        (with(json!({ "exp": now + 2 * 86_400 })), 401),
        (with(json!({ "exp": now + 600, "nbf": now + 300 })), 401),
        (with(json!({ "exp": now + 600, "iat": now + 300 })), 401),
        (
            with(json!({ "exp": now + 86_400, "iat": now, "nbf": now })),
            200,
        ),
    ];
    for (token, expected) in cases {
        let (status, body) = server
            .post(Some(&token), query, json!({ "a": app.token }))
            .await;
        assert_eq!(status, expected, "{body}");
    }

    // A deployment may allow less.
    let strict = TestServer::start_with_args(&["--max-token-lifetime-secs", "3600"], &[]);
    let app = TestApp::create(&strict, "Acme").await;
    let day = mint_claims(
        &app,
        json!({ "sub": "u1", "app": app.token, "role": "AGENT", "exp": now + 86_400, "iat": now }),
    );
    let (status, body) = strict
        .post(Some(&day), query, json!({ "a": app.token }))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("longer than 3600 s"), "{body}");
    let (status, _) = strict
        .post(Some(&app.agent("u1")), query, json!({ "a": app.token }))
        .await;
    assert_eq!(status, 200, "an hour's token (TestApp's) is fine");
}

fn mint_claims(app: &TestApp, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn malformed_requests_get_json_errors_not_500() {
    let server = TestServer::start();
    let url = format!("{}/graphql", server.url);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"{{{".to_vec()),
        ("batch", br#"[{"query":"{ __typename }"}]"#.to_vec()),
        ("syntax", br#"{"query":"query {"}"#.to_vec()),
        (
            "too big",
            format!(r#"{{"query":"{}"}}"#, "a".repeat(200 * 1024)).into_bytes(),
        ),
    ];
    for (name, body) in cases {
        let response = server
            .client()
            .post(&url)
            .header("Authorization", ADMIN_KEY)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let expected = match name {
            "too big" => 413,
            "syntax" => 200, // a GraphQL error: the request itself was readable
            _ => 400,
        };
        assert_eq!(status, expected, "{name}");
        // Every refusal in GraphQL's shape, the body limit's too (found by scripts/fuzz:
        // it was axum's plain-text "length limit exceeded").
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BadInput",
            "{name}: {body}"
        );
    }
}

#[tokio::test]
async fn health_and_graphiql_are_served() {
    let server = TestServer::start();
    let health: serde_json::Value = server
        .client()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let page = server
        .client()
        .get(format!("{}/graphql", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.to_lowercase().contains("graphiql"));
    // Off outside development (not loopback) unless asked for; here asked off.
    let off = TestServer::start_with_args(&["--graphiql", "false"], &[]);
    let response = off
        .client()
        .get(format!("{}/graphql", off.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("--graphiql")
    );
    // Introspection works without a token (GraphiQL needs it); data does not.
    let (_, body) = server
        .post(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

/// The first error's code and message: both are part of the contract here.
async fn refusal(
    server: &TestServer,
    token: Option<&str>,
    query: &str,
    variables: serde_json::Value,
) -> (String, String) {
    let (status, body) = server.post(token, query, variables).await;
    assert!(status < 500, "{status}: {body}");
    let error = &body["errors"][0];
    let code = error["extensions"]["code"].as_str();
    let code = code.unwrap_or_else(|| panic!("expected an error with a code: {body}"));
    (
        code.to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

/// graphql-js's `getIntrospectionQuery` with every option on and `ofType` nested
/// `type_depth` times (graphql 16, GraphiQL's, sends 7; graphql 17 defaults to 9).
fn introspection_query(type_depth: usize) -> String {
    let mut type_ref = String::from("kind name");
    for _ in 0..type_depth {
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

#[tokio::test]
async fn aliased_root_fields_beyond_ten_are_refused_before_any_resolver_runs() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let sends = |n: usize| {
        let fields: String = (0..n)
            .map(|i| format!("m{i}: sendMessage(appToken: $a, chatNumber: $c, body: \"hi {i}\") {{ number }} "))
            .collect();
        format!("mutation($a: ID!, $c: Int!) {{ {fields} }}")
    };
    let vars = json!({ "a": app.token, "c": chat });

    let (code, message) = refusal(&server, Some(&c1), &sends(11), vars.clone()).await;
    assert_eq!(code, "BadInput");
    assert_eq!(
        message,
        "the operation has 11 root fields (each alias counts); the limit is 10"
    );
    let count = server
        .ok(&c1, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(count["chat"]["messagesCount"], 0, "no resolver ran");

    // The classic: the same list a thousand times under aliases.
    let pages: String = (0..1000)
        .map(|i| format!("a{i}: chats(appToken: $a, limit: 100) {{ items {{ number }} }} "))
        .collect();
    let (code, message) = refusal(
        &server,
        Some(&c1),
        &format!("query($a: ID!) {{ {pages} }}"),
        json!({ "a": app.token }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert!(message.contains("1000 root fields"), "{message}");

    // Ten is allowed: ten messages.
    let data = server.ok(&c1, &sends(10), vars).await;
    assert_eq!(data["m9"]["number"], 10);
}

#[tokio::test]
async fn depth_and_field_count_are_limited_and_introspection_fits() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");

    // The deepest introspection query any GraphQL client sends (depth 15) is answered...
    let (status, body) = server.post(None, &introspection_query(9), json!({})).await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Chat"));
    // ... one level more is not.
    let (code, message) = refusal(&server, None, &introspection_query(10), json!({})).await;
    assert_eq!(code, "BadInput");
    assert_eq!(
        message,
        "the operation nests fields 16 deep; the limit is 15"
    );

    // 500 fields are fine, 501 are not (aliases count each time).
    let fields = |n: usize| -> String {
        let aliases: String = (0..n).map(|i| format!("n{i}: number ")).collect();
        format!("query($a: ID!) {{ chat(appToken: $a, number: 1) {{ {aliases} }} }}")
    };
    let vars = json!({ "a": app.token });
    let data = server.ok(&agent, &fields(499), vars.clone()).await;
    assert!(data["chat"].is_null());
    let (code, message) = refusal(&server, Some(&agent), &fields(500), vars).await;
    assert_eq!(code, "BadInput");
    assert_eq!(
        message,
        "the operation selects 501 fields (aliases and fragment spreads count each time); \
         the limit is 500"
    );

    let (code, message) = refusal(
        &server,
        Some(&agent),
        "{ __typename @skip(if: false) @include(if: true) @skip(if: false) }",
        json!({}),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "a selection has 3 directives; the limit is 2");
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_at_once() {
    let server = TestServer::start();
    // 2^40 expansions of a field, in 1.5 KB: async-graphql's own checks would walk them all.
    let mut query = String::from("query { ...F0 }\n");
    for i in 0..40 {
        query.push_str(&format!(
            "fragment F{i} on Query {{ ...F{0} ...F{0} }}\n",
            i + 1
        ));
    }
    query.push_str("fragment F40 on Query { __typename }\n");
    let started = std::time::Instant::now();
    let (code, message) = refusal(&server, Some(ADMIN_KEY), &query, json!({})).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(code, "BadInput");
    assert!(message.contains("the limit is 32"), "{message}");

    let cycle =
        "query { ...A } fragment A on Query { ...B } fragment B on Query { __typename ...A }";
    let (code, message) = refusal(&server, Some(ADMIN_KEY), cycle, json!({})).await;
    assert_eq!(code, "BadInput");
    assert!(message.contains("fragment"), "{message}");
    // The server is still there.
    let data = server.ok(ADMIN_KEY, "{ __typename }", json!({})).await;
    assert_eq!(data["__typename"], "Query");
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let flag = TestServer::start_with_args(&["--no-introspection"], &[]);
    let env = TestServer::start_with_args(&[], &[("CHAT_INTROSPECTION", "false")]);
    for server in [&flag, &env] {
        let (code, message) = refusal(
            server,
            None,
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
        assert_eq!(code, "BadInput");
        assert!(message.contains("introspection is turned off"), "{message}");
        let (code, _) = refusal(
            server,
            None,
            "{ __type(name: \"Chat\") { name } }",
            json!({}),
        )
        .await;
        assert_eq!(code, "BadInput");
        // __typename is not introspection; the API itself works.
        let app = TestApp::create(server, "Acme").await;
        let data = server
            .ok(&app.agent("a1"), "{ __typename }", json!({}))
            .await;
        assert_eq!(data["__typename"], "Query");
        open_chat(server, &app, &app.customer("c1")).await;
    }
    // On by default (GraphiQL), and CHAT_INTROSPECTION=true keeps it on.
    let on = TestServer::start_with_args(&[], &[("CHAT_INTROSPECTION", "true")]);
    let data = on
        .ok(ADMIN_KEY, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn page_sizes_numbers_enums_and_tokens_name_their_limits() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    const CHATS: &str = "query($a: ID!, $s: ChatStatus, $l: Int, $t: String) { chats(appToken: $a, status: $s, limit: $l, nextToken: $t) { items { number } nextToken } }";

    for limit in [0, -1, 101, i64::from(i32::MIN)] {
        let (code, message) = refusal(
            &server,
            Some(&agent),
            CHATS,
            json!({ "a": app.token, "l": limit }),
        )
        .await;
        assert_eq!(code, "BadInput", "{limit}");
        assert_eq!(message, "limit must be between 1 and 100", "{limit}");
    }
    let page = server
        .ok(&agent, CHATS, json!({ "a": app.token, "l": 100 }))
        .await;
    assert_eq!(page["chats"]["items"].as_array().unwrap().len(), 1);

    // Int overflow, as a literal and as a variable; the largest Int is a valid number.
    let (code, _) = refusal(
        &server,
        Some(&agent),
        "query($a: ID!) { chat(appToken: $a, number: 2147483648) { number } }",
        json!({ "a": app.token }),
    )
    .await;
    assert_eq!(code, "BadInput");
    let (code, _) = refusal(
        &server,
        Some(&agent),
        MESSAGES,
        json!({ "a": app.token, "c": chat, "l": 2_147_483_648i64 }),
    )
    .await;
    assert_eq!(code, "BadInput");
    let data = server
        .ok(&agent, CHAT, json!({ "a": app.token, "n": i32::MAX }))
        .await;
    assert!(data["chat"].is_null());
    const MESSAGE: &str = "query($a: ID!, $c: Int!, $n: Int!) { message(appToken: $a, chatNumber: $c, number: $n) { number } }";
    for n in [0, -1] {
        let (code, message) = refusal(
            &server,
            Some(&agent),
            MESSAGE,
            json!({ "a": app.token, "c": chat, "n": n }),
        )
        .await;
        assert_eq!(code, "BadInput");
        assert_eq!(message, "message number must be between 1 and 2147483647");
    }
    let (code, message) = refusal(
        &server,
        Some(&agent),
        SEND,
        json!({ "a": app.token, "c": 0, "b": "hi" }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "chat number must be between 1 and 2147483647");

    // An unknown enum value as a variable (the literal case is above).
    let (code, message) = refusal(
        &server,
        Some(&agent),
        CHATS,
        json!({ "a": app.token, "s": "CLOSED" }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert!(message.contains("CLOSED"), "{message}");

    // Page tokens: forged, and oversized.
    for (token, expected) in [
        (
            "garbage".to_owned(),
            "nextToken is invalid or was issued for another query",
        ),
        (
            "x".repeat(513),
            "nextToken is invalid: longer than 512 characters",
        ),
    ] {
        let (code, message) = refusal(
            &server,
            Some(&agent),
            MESSAGES,
            json!({ "a": app.token, "c": chat, "t": token }),
        )
        .await;
        assert_eq!(code, "BadInput");
        assert_eq!(message, expected);
    }
}

#[tokio::test]
async fn string_limits_accept_their_maximum_and_refuse_one_more() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");

    let (code, message) = refusal(
        &server,
        Some(&agent),
        CREATE_CHAT,
        json!({ "a": "a".repeat(65), "c": "c1" }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(
        message,
        "appToken is not a valid application token (1 to 64 characters of A-Z, a-z, 0-9, _ and -)"
    );

    let (code, message) = refusal(
        &server,
        Some(&agent),
        CREATE_CHAT,
        json!({ "a": app.token, "c": "c".repeat(129) }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "user id must be 1 to 128 characters");
    let (code, message) = refusal(
        &server,
        Some(&agent),
        CREATE_CHAT,
        json!({ "a": app.token, "c": "c1", "s": "s".repeat(201) }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "subject must be at most 200 characters");
    let created = server
        .ok(
            &agent,
            CREATE_CHAT,
            json!({ "a": app.token, "c": "c".repeat(128), "s": "s".repeat(200) }),
        )
        .await;
    let chat = created["createChat"]["number"].as_i64().unwrap();
    assert_eq!(
        created["createChat"]["subject"].as_str().unwrap().len(),
        200
    );

    let (code, message) = refusal(
        &server,
        Some(&agent),
        SEND,
        json!({ "a": app.token, "c": chat, "b": "x", "k": "k".repeat(65) }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "clientMessageId must be 1 to 64 characters");
    let sent = server
        .ok(
            &agent,
            SEND,
            json!({ "a": app.token, "c": chat, "b": "x", "k": "k".repeat(64) }),
        )
        .await;
    assert_eq!(sent["sendMessage"]["number"], 1);
    let (code, message) = refusal(
        &server,
        Some(&agent),
        SEND,
        json!({ "a": app.token, "c": chat, "b": "b".repeat(8 * 1024 + 1) }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "body must be at most 8192 bytes of UTF-8");

    const NAME: &str =
        "mutation($n: String!) { createApplication(name: $n) { application { name } } }";
    let (code, message) = refusal(
        &server,
        Some(ADMIN_KEY),
        NAME,
        json!({ "n": "n".repeat(101) }),
    )
    .await;
    assert_eq!(code, "BadInput");
    assert_eq!(message, "name must be 1 to 100 characters");
    let data = server
        .ok(ADMIN_KEY, NAME, json!({ "n": "n".repeat(100) }))
        .await;
    assert_eq!(
        data["createApplication"]["application"]["name"]
            .as_str()
            .unwrap()
            .len(),
        100
    );
}
