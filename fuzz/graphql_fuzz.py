#!/usr/bin/env python3
"""Fuzzes a real chat-server over HTTP with requests generated from schema.graphql.

Run it through scripts/fuzz (which installs fuzz/requirements.txt into .venv and builds the
server); docs/fuzzing.md describes what is generated, what is asserted and the figures.

Five kinds of requests, under a mix of identities (admin key, agent and customer tokens of
the fuzzer's applications, no token, garbage and forged tokens):
- live: one typed operation per root field with well-formed values (the caller's own
  application, live chat and message numbers, real bodies), from users, so that the data
  grows and changes (chats, messages, edits, deletes, read marks) under the rest;
- generated: queries and mutations from hypothesis-graphql, valid by the schema (and a
  share with one schema violation), with arguments drawn from live values (application
  tokens, chat and message numbers, page tokens the server handed out) and from hostile
  ones (32-bit edges, ints beyond 32 bits, long, blank and unicode strings, forged tokens);
- variables: one typed operation per root field, with fuzzed JSON variables;
- malformed: random bytes, truncated and non-object JSON, deep nesting, huge alias lists,
  fragment cycles, several operations, subscriptions over POST, JSON edge cases;
- other HTTP: other methods and paths.
Every answer goes through oracle.Oracle; afterwards the data goes through invariants.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import graphql
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

import invariants
import watchers
from oracle import Caller, Oracle, documented_error_codes, write_failure
from server import Client, Server, b64url, mint_token, sign_jwt

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
MAX_APPS = 12  # applications the fuzzer keeps secrets of (and checks afterwards)
MAX_POOL = 256
BATCH = 200  # examples per hypothesis run; the time budget is checked between runs
MAX_FAILURES = 25  # stop sending after this many failed requests
INT32_MAX = 2**31 - 1


def load_schema() -> tuple[str, graphql.GraphQLSchema]:
    """schema.graphql with the AppSync built-ins the dev server adds before parsing
    (crates/server/src/schema.rs, APPSYNC_PRELUDE), so both parse the same text."""
    sdl = (ROOT / "schema.graphql").read_text()
    rust = (ROOT / "crates/server/src/schema.rs").read_text()
    m = re.search(r'APPSYNC_PRELUDE: &str = r#"(.*?)"#;', rust, re.S)
    if not m:
        raise SystemExit("APPSYNC_PRELUDE not found in crates/server/src/schema.rs")
    return sdl, graphql.build_schema(m.group(1) + sdl)


# ---------------------------------------------------------------------------------------
# What the fuzzer knows about the server's data, grown from the answers.


@dataclass
class World:
    admin_key: str
    apps: dict[str, str] = field(default_factory=dict)  # token -> secret, the first two anchors
    app_tokens: list[str] = field(default_factory=list)  # every token seen, secret or not
    next_tokens: deque = field(default_factory=lambda: deque(maxlen=MAX_POOL))
    user_ids: list[str] = field(default_factory=lambda: ["alice", "dave", "bob", "carol", "erin"])
    client_ids: list[str] = field(default_factory=lambda: ["cm-1", "cm-2", "retry-me"])
    # The application of the request being drawn (its caller's): most application tokens
    # in its arguments name it, so that many requests get past the access checks.
    focus: str = ""

    def learn(self, data) -> list[str]:
        """Harvests page tokens, user ids and application credentials; the tokens of the
        applications whose secret this answer carried."""
        refreshed = []

        def walk(node) -> None:
            if isinstance(node, list):
                for item in node:
                    walk(item)
                return
            if not isinstance(node, dict):
                return
            if isinstance(node.get("nextToken"), str):
                self.next_tokens.append(node["nextToken"])
            customer = node.get("customerId")
            if isinstance(customer, str) and customer not in self.user_ids and len(self.user_ids) < 64:
                self.user_ids.append(customer)
            app = node.get("application")
            if isinstance(app, dict) and isinstance(app.get("token"), str):
                token = app["token"]
                if token not in self.app_tokens and len(self.app_tokens) < MAX_POOL:
                    self.app_tokens.append(token)
                if isinstance(node.get("secret"), str) and (token in self.apps or len(self.apps) < MAX_APPS):
                    self.apps[token] = node["secret"]
                    refreshed.append(token)
            for value in node.values():
                walk(value)

        walk(data)
        return refreshed


# Hypothesis steers away from choices it has exhausted (a branch with one value is soon
# skipped) and leans to small and boundary integers (0 comes up ~15% of the time). Where
# the fuzzer wants proportions it sets itself, it draws a 64-bit integer and scrambles it
# (splitmix64's finaliser), then folds it onto the choices.
def _scramble(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF  # 0, hypothesis's favourite, too
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


SPREAD = st.integers(0, 2**64 - 1).map(_scramble)


def folded(values_of):
    """One of `values_of()` (a list read at draw time), with equal chances."""
    return SPREAD.map(lambda i: (lambda vs: vs[i % len(vs)] if vs else "")(values_of()))


def uniform(values) -> st.SearchStrategy:
    """Any of a fixed list with equal chances (st.sampled_from leans to the first ones)."""
    values = list(values)
    return SPREAD.map(lambda i: values[i % len(values)])


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, in proportion to their weights (st.one_of would not hold
    them)."""
    total = sum(w for w, _ in choices)

    def choose(i: int) -> st.SearchStrategy:
        i %= total
        for w, strategy in choices:
            if i < w:
                return strategy
            i -= w
        raise AssertionError("unreachable")

    return SPREAD.flatmap(choose)


def pick(pool):
    """A strategy for an element of a pool that grows while the fuzzer runs (read at draw
    time, so later examples see what earlier answers taught)."""
    return folded(lambda: pool)


# ---------------------------------------------------------------------------------------
# Argument values: GraphQL value nodes for the schema's scalars.

SIZES = [1, 2, 63, 64, 65, 127, 128, 129, 199, 200, 201, 512, 513, 4096, 4097, 8191, 8192, 8193, 30000]
UNITS = ["a", "é", "🙂", " ", "\n", "\u200b", "\u0301", "\x00", "\\", '"', "ẞ", "\u202e"]
WORDS = [
    "hello", "Where is order 1234?", "Refunded", "fund", "café", "CAFE", "a", "ab", "é",
    "où est ma commande", "注文はどこですか", "🙂👍🏽", "\u202egnirts", "null", "undefined",
    "' OR 1=1 --", "<script>alert(1)</script>", "${jndi:ldap://x}", "%s%n", "\\u0000", "{}",
]
BLANK = ["", " ", "\t\n", "\u00a0", "\u3000", "\u200b", "\x1c"]


def ints(beyond_share: int = 12) -> st.SearchStrategy[int]:
    """Mostly live chat and message numbers, then 32-bit edges and any 32-bit value, and
    one in `beyond_share` outside GraphQL's Int (which fails the whole document)."""
    live = SPREAD.map(lambda i: 1 + i % 4)
    small = st.integers(-1, 12)
    edges = uniform([0, -1, INT32_MAX, INT32_MAX - 1, -(2**31), 100, 101, 1000, 604800, 604801, 86400])
    beyond = uniform([2**31, 2**32, 2**53 + 1, 2**63, -(2**63) - 1, 10**40])
    return weighted((beyond_share - 6, live), (2, small), (2, edges),
                    (1, st.integers(-(2**31), INT32_MAX)), (1, beyond))


def texts() -> st.SearchStrategy[str]:
    alphabet = st.characters(codec="utf-8", exclude_categories=["Cs"])
    return st.one_of(
        st.text(alphabet, max_size=30),
        uniform(WORDS),
        uniform(BLANK),
        st.builds(lambda unit, n: unit * n, uniform(UNITS), uniform(SIZES)),
    )


def mutated(pool) -> st.SearchStrategy[str]:
    """A page token the server issued, bent: a character changed, cut, extended, or its
    halves swapped with another token's."""

    def bend(args) -> str:
        token, other, how, at = args
        if not token:
            return "x"
        at %= len(token)
        if how == 0:
            return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
        if how == 1:
            return token[:at]
        if how == 2:
            return token + "." + token
        head, _, _ = token.partition(".")
        _, _, tail = (other or token).partition(".")
        return f"{head}.{tail}"

    return st.tuples(pick(pool), pick(pool), st.integers(0, 3), st.integers(0, 10**6)).map(bend)


def forged_page_tokens() -> st.SearchStrategy[str]:
    return st.one_of(
        uniform(["", ".", "..", "abc", "a.b", "=" * 600, "x" * 513]),
        st.binary(max_size=40).map(lambda b: f"{b64url(b)}.{b64url(b[::-1])}"),
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3).map(
            lambda d: f"{b64url(json.dumps(d).encode())}.{b64url(b'0' * 32)}"
        ),
    )


def app_tokens(world: World) -> st.SearchStrategy[str]:
    fake = st.one_of(
        uniform(["", "app_", "app_unknown0000000000000", "x" * 64, "x" * 65, "app_ü", "APP_X"]),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=70),
    )
    anchors = folded(lambda: list(world.apps)[:2])
    focus = folded(lambda: [world.focus or list(world.apps)[0]])
    return weighted((16, focus), (1, anchors), (1, pick(world.app_tokens)), (2, fake))


def custom_scalars(world: World) -> dict:
    # ID arguments are application tokens, customer ids and clientMessageIds.
    ids = weighted(
        (14, app_tokens(world).map(nodes.String)), (2, pick(world.user_ids).map(nodes.String)),
        (2, pick(world.client_ids).map(nodes.String)), (1, texts().map(nodes.String)),
        (1, ints(beyond_share=40).map(nodes.Int)),
    )
    # String arguments are bodies, subjects, names, search queries and page tokens.
    strings = weighted(
        (6, texts()), (3, pick(world.next_tokens)), (1, mutated(world.next_tokens)), (1, forged_page_tokens()),
    ).map(nodes.String)
    # AWSDateTime appears only in the publish mutations' event inputs (which every client is
    # refused): valid times and junk.
    times = weighted(
        (3, uniform(["2026-01-01T00:00:00Z", "2026-12-06T10:00:00.123Z"])), (1, texts()),
    ).map(nodes.String)
    return {"Int": ints(beyond_share=40).map(nodes.Int), "ID": ids, "String": strings, "AWSDateTime": times}


# ---------------------------------------------------------------------------------------
# Identities.

ROLES = ["AGENT", "CUSTOMER"]


@dataclass
class Identity:
    header: str | bytes | None
    caller: Caller


@st.composite
def identities(draw, world: World, users_only: bool = False) -> Identity:
    kind = "user" if users_only else draw(
        weighted((12, st.just("user")), (2, st.just("admin")), (2, st.just("none")), (4, st.just("garbage")))
    )
    if kind == "none":
        return Identity(None, Caller("none"))
    if kind == "admin":
        header = draw(uniform([world.admin_key, f"Bearer {world.admin_key}", f"{world.admin_key} "]))
        return Identity(header, Caller("admin"))
    # Draws never depend on how much the world knows (hypothesis replays choice sequences
    # and requires the same shape): indexes are drawn from fixed ranges, then wrapped.
    apps = list(world.apps)
    app = apps[draw(uniform([0, 0, 0, 1, 1, draw(st.integers(0, MAX_APPS - 1))])) % len(apps)]
    role = draw(uniform(ROLES))
    if kind == "user":
        sub = draw(pick(world.user_ids))
        return Identity(mint_token(world.apps[app], app, sub, role), Caller("user", app, role, sub))
    return Identity(draw(garbage_tokens(world, app, role)), Caller("garbage"))


def header_safe(text: str) -> str:
    """What HTTP allows in a header value (no control characters but tab, RFC 9110 5.5):
    anything else is refused by the HTTP parser (400) before the server's code runs."""
    return re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "", text).lstrip(" \t") or "x"


def garbage_tokens(world: World, app: str, role: str) -> st.SearchStrategy:
    secret = world.apps[app]
    now = int(time.time())
    claims = st.fixed_dictionaries(
        {},
        optional={
            "sub": st.one_of(st.text(max_size=140), st.integers(), st.none(), uniform(["bob", "", " "])),
            "app": st.one_of(st.just(app), st.text(max_size=10), st.integers()),
            "role": st.one_of(uniform(["AGENT", "CUSTOMER", "agent", "ADMIN", ""]), st.integers()),
            "exp": st.one_of(
                uniform([now - 3600, now - 31, now + 3600, 2**63, 2**64, -1, 0]),
                st.floats(allow_nan=False), st.text(max_size=5), st.none(),
            ),
            "nbf": uniform([now + 3600, now]),
        },
    )
    forged_headers = uniform([
        {"alg": "HS256", "typ": "JWT"}, {"alg": "none"}, {"alg": "HS512"}, {"alg": "RS256"},
        {"alg": "HS256", "kid": "../../etc/passwd"}, {},
    ])

    def unsigned(args) -> str:
        header, body = args
        return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}."

    valid = mint_token(secret, app, "bob", role)
    return st.one_of(
        # Signed with the application's real secret, but claims or header are off.
        st.tuples(forged_headers, claims).map(lambda a: sign_jwt(secret, a[0], a[1])),
        st.tuples(forged_headers, claims).map(unsigned),
        st.just(mint_token("sk_wrong", app, "bob", role)),
        st.just(mint_token(secret, app, "bob", role, ttl_s=-3600)),
        st.just(valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")),
        st.just(".".join(valid.split(".")[:2])),
        st.just(valid + ".x"),
        uniform(["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "null", "a.b.c", "...", world.admin_key[:-1]]),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=300).map(
            lambda text: header_safe(text).encode("utf-8")  # sent as UTF-8 bytes
        ),
        st.binary(max_size=64).map(lambda b: header_safe(b.decode("latin-1")).encode("latin-1")),
    )


# ---------------------------------------------------------------------------------------
# Requests.


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes
    content_type: str | None = "application/json"


def as_json(query: str, variables=None, **extra) -> bytes:
    payload = {"query": query, **extra}
    if variables is not None:
        payload["variables"] = variables
    return json.dumps(payload).encode()


def leaf_selection(type_, depth: int) -> str | None:
    """Every scalar leaf of an output type, objects `depth` levels down."""
    type_ = graphql.get_named_type(type_)
    if not isinstance(type_, graphql.GraphQLObjectType):
        return ""
    parts = []
    for name, f in type_.fields.items():
        inner = graphql.get_named_type(f.type)
        if isinstance(inner, (graphql.GraphQLScalarType, graphql.GraphQLEnumType)):
            parts.append(name)
        elif depth > 0:
            sub = leaf_selection(f.type, depth - 1)
            if sub:
                parts.append(f"{name} {sub}")
    return "{ " + " ".join(parts) + " }" if parts else None


@dataclass
class TypedOperation:
    field: str
    text: str
    arguments: dict  # name -> GraphQL input type


def typed_operations(schema: graphql.GraphQLSchema) -> list[TypedOperation]:
    """One operation per Query and Mutation field, every argument a variable."""
    ops = []
    for keyword, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        for name, f in root.fields.items():
            definitions = ", ".join(f"${a}: {arg.type}" for a, arg in f.args.items())
            arguments = ", ".join(f"{a}: ${a}" for a in f.args)
            head = f"{keyword} Fuzz({definitions})" if definitions else f"{keyword} Fuzz"
            call = f"{name}({arguments})" if arguments else name
            ops.append(TypedOperation(name, f"{head} {{ {call} {leaf_selection(f.type, 2) or ''} }}",
                                      {a: arg.type for a, arg in f.args.items()}))
    return ops


@functools.lru_cache(maxsize=None)
def any_json(max_leaves: int = 12) -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=max_leaves)


_VARIABLE_VALUES: dict = {}


def variable_value(world: World, type_) -> st.SearchStrategy:
    """Values for a variable of `type_`: mostly of its type (hostile ones included), some
    null, some any JSON at all. Built once per type."""
    key = (id(world), str(type_))
    if key not in _VARIABLE_VALUES:
        _VARIABLE_VALUES[key] = _variable_value(world, type_)
    return _VARIABLE_VALUES[key]


def _variable_value(world: World, type_) -> st.SearchStrategy:
    named = graphql.get_named_type(type_)
    if isinstance(named, graphql.GraphQLEnumType):
        good = uniform(list(named.values))
    elif named.name == "Int":
        good = st.one_of(ints(), uniform([1.0, 1.5, "1", True]))
    elif named.name == "ID":
        good = st.one_of(app_tokens(world), pick(world.user_ids), pick(world.client_ids), texts(), ints())
    elif named.name == "String":
        good = st.one_of(texts(), pick(world.next_tokens), mutated(world.next_tokens), forged_page_tokens())
    elif named.name == "Boolean":
        good = st.booleans()
    else:
        good = any_json()
    return st.one_of([good] * 6 + [st.none(), any_json()])


@st.composite
def variables_request(draw, world: World, ops: list[TypedOperation]) -> Request:
    op = draw(uniform(ops))
    variables = {}
    for name, type_ in op.arguments.items():
        if draw(st.integers(0, 9)) > 0:  # sometimes missing, required or not
            variables[name] = draw(variable_value(world, type_))
    if draw(st.integers(0, 9)) == 0:
        variables[draw(st.text(max_size=8))] = draw(any_json())
    body = as_json(op.text, variables, operationName=draw(uniform(["Fuzz", "Fuzz", None, "Other"])))
    return Request("variables", "POST", "/graphql", body)


# Live requests: well-formed values for each argument, by its name, so that most of them
# pass every check and change the data (chats, messages, edits, deletes, read marks) that
# the hostile requests then run against and the invariants are checked on afterwards.
LIVE_SKIPPED = {"createApplication", "updateApplication", "rotateApplicationSecret"}
LIVE_EXTRA = {"sendMessage": 5, "createChat": 1, "editMessage": 1, "deleteMessage": 1, "markChatRead": 1}
LIVE_BODIES = [w for w in WORDS if w.strip()] + ["a" * 8192, "é" * 4096]


def live_values(world: World, caller: Caller) -> dict[str, st.SearchStrategy]:
    numbers = SPREAD.map(lambda i: 1 + i % 6)
    maybe = lambda strategy: weighted((3, strategy), (1, st.none()))  # noqa: E731
    own = caller.sub if caller.role == "CUSTOMER" else None
    return {
        "appToken": folded(lambda: [world.focus]),
        "token": folded(lambda: [world.focus]),
        "chatNumber": numbers,
        "number": numbers,
        "upTo": maybe(SPREAD.map(lambda i: 1 + i % 14)),
        "after": maybe(SPREAD.map(lambda i: i % 14)),
        "before": st.none(),
        "limit": maybe(st.integers(1, 100)),
        "nextToken": weighted((3, st.none()), (1, pick(world.next_tokens))),
        "body": uniform(LIVE_BODIES),
        "query": uniform(["order", "Refunded", "fund", "cafe", "ab", "commande"]),
        "subject": maybe(uniform(WORDS)),
        "status": maybe(uniform(["OPEN", "RESOLVED"])),
        "customerId": st.just(own) if own else pick(world.user_ids),
        "clientMessageId": maybe(pick(world.client_ids)),
    }


@st.composite
def live_request(draw, world: World, ops: list[TypedOperation], caller: Caller) -> Request:
    # Sends and new chats weigh more: the data grows, and the invariants have more to check.
    live = [op for op in ops if op.field not in LIVE_SKIPPED]
    op = draw(uniform(live + [op for op in live for _ in range(LIVE_EXTRA.get(op.field, 0))]))
    values = live_values(world, caller)
    variables = {}
    for name, type_ in op.arguments.items():
        strategy = values[name] if name in values else variable_value(world, type_)
        variables[name] = draw(strategy)
    return Request("live", "POST", "/graphql", as_json(op.text, variables))


# Aliased requests: the mutations that publish events, with answers shaped to look like
# another application's or chat's (routing fields aliased over other fields, inline and
# named fragments) and other applications' tokens in every free argument. The watchers
# (watchers.py) check that no event reached anyone the committed write did not concern.
_MESSAGE_FIELDS = ["appToken", "chatNumber", "number", "body", "senderId", "senderRole", "clientMessageId", "createdAt", "deleted"]
_CHAT_FIELDS = ["appToken", "number", "customerId", "subject", "status", "messagesCount", "unreadCount"]
_RECEIPT_FIELDS = ["appToken", "chatNumber", "readerId", "readerRole", "lastReadNumber", "unreadCount"]
ALIASED = {
    "sendMessage": ("Message", _MESSAGE_FIELDS), "editMessage": ("Message", _MESSAGE_FIELDS),
    "deleteMessage": ("Message", _MESSAGE_FIELDS), "createChat": ("Chat", _CHAT_FIELDS),
    "updateChat": ("Chat", _CHAT_FIELDS), "markChatRead": ("ReadReceipt", _RECEIPT_FIELDS),
}
ROUTING = ["appToken", "chatNumber", "number", "customerId", "readerId", "senderId"]


@st.composite
def aliased_request(draw, world: World, ops: list[TypedOperation], caller: Caller) -> Request:
    op = draw(uniform([op for op in ops if op.field in ALIASED]))
    type_name, fields = ALIASED[op.field]
    values = live_values(world, caller)
    others = [a for a in world.apps if a != world.focus] or list(world.apps)
    variables = {}
    for name, type_ in op.arguments.items():
        if name in ("body", "subject", "clientMessageId", "customerId"):
            variables[name] = draw(uniform(others)) if name != "customerId" else draw(values[name])
        else:
            variables[name] = draw(values[name] if name in values else variable_value(world, type_))
    keys, items = set(), []
    for f in draw(st.lists(uniform(fields), min_size=1, max_size=6)):
        alias = draw(weighted((2, st.just(None)), (3, uniform(ROUTING)), (1, uniform(fields))))
        key = alias or f
        if key in keys:
            continue
        keys.add(key)
        items.append(f if key == f else f"{key}: {f}")
    selection = " ".join(items)
    fragment = ""
    shape = draw(st.integers(0, 2))
    if shape == 1:
        selection = f"... on {type_name} {{ {selection} }}"
    elif shape == 2:
        fragment = f" fragment Shaped on {type_name} {{ {selection} }}"
        selection = "...Shaped __typename"
    definitions = ", ".join(f"${a}: {t}" for a, t in op.arguments.items())
    arguments = ", ".join(f"{a}: ${a}" for a in op.arguments)
    text = f"mutation Fuzz({definitions}) {{ {op.field}({arguments}) {{ {selection} }} }}{fragment}"
    return Request("aliased", "POST", "/graphql", as_json(text, variables))


def nested(depth: int, open_: str, close: str, inner: str) -> str:
    return open_ * depth + inner + close * depth


@st.composite
def malformed_request(draw, world: World, generated) -> Request:
    app = list(world.apps)[draw(st.integers(0, 1))]
    depth = draw(uniform([32, 33, 64, 127, 128, 129, 500, 5000, 60000]))
    count = draw(uniform([2, 10, 100, 500, 1000, 2000, 5000]))
    field_call = draw(uniform([
        f'unreadSummary(appToken: "{app}") {{ totalUnread unreadChats }}',
        f'chats(appToken: "{app}", limit: 100) {{ items {{ number messagesCount lastMessage {{ body }} }} nextToken }}',
        f'messages(appToken: "{app}", chatNumber: 1, limit: 100) {{ items {{ number body }} }}',
        f'searchMessages(appToken: "{app}", chatNumber: 1, query: "order") {{ items {{ number }} }}',
        f'application(token: "{app}") {{ chatsCount }}',
        "__typename",
    ]))
    mutation_call = draw(uniform([
        f'sendMessage(appToken: "{app}", chatNumber: 1, body: "alias flood") {{ number }}',
        f'sendMessage(appToken: "{app}", chatNumber: 1, body: "same id", clientMessageId: "alias-flood") {{ number }}',
        f'createChat(appToken: "{app}", subject: "alias flood", customerId: "flood") {{ number }}',
        f'markChatRead(appToken: "{app}", chatNumber: 1) {{ lastReadNumber unreadCount }}',
        f'markAllRead(appToken: "{app}") {{ totalUnread }}',
        f'deleteMessage(appToken: "{app}", chatNumber: 1, number: 1) {{ deleted }}',
        'createApplication(name: "alias flood") { application { token } }',
    ]))
    valid_doc = draw(generated)
    shape = draw(uniform([
        "bytes", "truncated", "not-an-object", "wrong-members", "deep-json", "deep-list-literal",
        "deep-selection", "aliases", "mutation-aliases", "fragments", "operations", "json-edges",
        "introspection", "directives",
    ]))
    if shape == "bytes":
        return Request(shape, "POST", "/graphql", draw(st.binary(max_size=2000)))
    if shape == "truncated":
        body = as_json(valid_doc)
        return Request(shape, "POST", "/graphql", body[: draw(st.integers(0, len(body) - 1))])
    if shape == "not-an-object":
        body = draw(uniform([
            "[]", '[{"query":"{ __typename }"}]', "null", "1", '"{ __typename }"', "true", "{}",
            '{"query":"{ __typename }"} {"query":"{ __typename }"}',
        ]))
        return Request(shape, "POST", "/graphql", body.encode())
    if shape == "wrong-members":
        body = draw(uniform([
            {"query": 1}, {"query": None}, {"query": ["{ __typename }"]}, {"variables": {}},
            {"query": "{ __typename }", "variables": "x"}, {"query": "{ __typename }", "variables": []},
            {"query": "{ __typename }", "operationName": 5}, {"query": "{ __typename }", "extensions": "x"},
            {"query": "{ __typename }", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "00"}}},
            {"query": "query($a: ID!) { __typename }", "variables": {"a": {"$ref": "#"}}},
        ]))
        return Request(shape, "POST", "/graphql", json.dumps(body).encode())
    if shape == "deep-json":
        inner = draw(uniform(["[", "{\"a\":"]))
        close = "]" if inner == "[" else "}"
        vars_ = nested(depth, inner, close, "1")
        body = f'{{"query":"query($v: [Int]) {{ __typename }}","variables":{{"v":{vars_}}}}}'
        return Request(shape, "POST", "/graphql", body.encode())
    if shape == "deep-list-literal":
        query = f'{{ chat(appToken: {nested(depth, "[", "]", json.dumps(app))}, number: 1) {{ number }} }}'
        return Request(shape, "POST", "/graphql", as_json(query))
    if shape == "deep-selection":
        which = draw(uniform(["braces", "introspection", "lastMessage"]))
        if which == "braces":
            query = nested(depth, "{ ", " }", "__typename")
        elif which == "introspection":
            query = "{ __schema { types { " + nested(min(depth, 2000), "ofType { ", " }", "name") + " } } }"
        else:
            query = f'{{ chats(appToken: "{app}") {{ items {{ lastMessage {{ {nested(min(depth, 2000), "x {{ ", " }}", "y")} }} }} }} }}'
        return Request(shape, "POST", "/graphql", as_json(query))
    if shape == "aliases":
        query = "query { " + " ".join(f"a{i}: {field_call}" for i in range(count)) + " }"
        return Request(shape, "POST", "/graphql", as_json(query))
    if shape == "mutation-aliases":
        n = min(count, 300)
        query = "mutation { " + " ".join(f"m{i}: {mutation_call}" for i in range(n)) + " }"
        return Request(shape, "POST", "/graphql", as_json(query))
    if shape == "fragments":
        query = draw(uniform([
            "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            "query { ...F0 } " + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(min(count, 600)))
            + f" fragment F{min(count, 600)} on Query {{ __typename }}",
            "query { " + " ".join("...F" for _ in range(min(count, 3000))) + f' }} fragment F on Query {{ {field_call} }}',
            'query { ...F } fragment F on Mutation { createApplication(name: "x") { secret } }',
            "query { __typename } fragment Unused on Query { __typename }",
            f'query {{ chats(appToken: "{app}") {{ items {{ ... on Message {{ body }} }} }} }}',
        ]))
        return Request(shape, "POST", "/graphql", as_json(query))
    if shape == "operations":
        query = f"query A {{ {field_call} }} query B {{ __typename }} mutation C {{ {mutation_call} }}"
        op_name = draw(uniform([None, "A", "C", "Z", ""]))
        if draw(st.booleans()):
            query = draw(uniform([
                f'subscription {{ onChat(appToken: "{app}") {{ number }} }}',
                f'subscription S {{ onMessage(appToken: "{app}", chatNumber: 1) {{ number body }} }}',
                "query A { __typename } query A { __typename }",
                "{ __typename } { __typename }",
            ]))
        return Request(shape, "POST", "/graphql", as_json(query, {}, operationName=op_name))
    if shape == "json-edges":
        body = draw(uniform([
            b'{"query":"{ __typename \\ud800 }"}',
            b'\xef\xbb\xbf{"query":"{ __typename }"}',
            b'{"query":"{ __typename }","query":"mutation { markAllRead(appToken: \\"x\\") { totalUnread } }"}',
            b'{"query":"query($a: Int) { __typename }","variables":{"a":1e400}}',
            b'{"query":"query($a: Int) { __typename }","variables":{"a":NaN}}',
            b'{"query":"{ __typename }"}garbage',
            b'{"query":"\xff\xfe{ __typename }"}',
            b' ' * 100_000 + b'{"query":"{ __typename }"}',
            b'{"query":"' + b'\\u0000' * 1000 + b'"}',
            b'{"query":"{ __typename }", "variables": {"a": ' + b'9' * 5000 + b'}}',
        ]))
        return Request(shape, "POST", "/graphql", body)
    if shape == "introspection":
        return Request(shape, "POST", "/graphql", as_json(graphql.get_introspection_query(descriptions=True)))
    query = draw(uniform([
        f"{{ {field_call} @skip(if: true) }}",
        f"query($s: Boolean!) {{ {field_call} @include(if: $s) }}",
        f"{{ {field_call} @deprecated }}",
        f'{{ {field_call} @aws_subscribe(mutations: ["sendMessage"]) }}',
        f"{{ {field_call} @unknown }}",
        f'{{ __type(name: "{draw(st.text(max_size=20))}") {{ name fields {{ name }} }} }}',
    ]))
    return Request(shape, "POST", "/graphql", as_json(query, {"s": draw(any_json(3))}))


@st.composite
def other_http(draw) -> Request:
    method, path = draw(uniform([
        ("GET", "/graphql"), ("GET", "/health"), ("PUT", "/graphql"), ("DELETE", "/graphql"),
        ("PATCH", "/graphql"), ("POST", "/health"), ("POST", "/nope"), ("GET", "/graphql/../health"),
        ("OPTIONS", "/graphql"), ("HEAD", "/graphql"),
    ]))
    return Request("other-http", method, path, draw(st.binary(max_size=100)))


@st.composite
def requests_(draw, world: World, generated, negative, ops) -> tuple[Request, Identity]:
    kind = draw(weighted(
        (6, st.just("live")), (10, st.just("generated")), (2, st.just("negative")), (3, st.just("variables")),
        (3, st.just("malformed")), (1, st.just("other-http")), (2, st.just("aliased")),
    ))
    # Live and aliased requests come from users, to change data; the rest from anyone.
    identity = draw(identities(world, users_only=kind in ("live", "aliased")))
    world.focus = identity.caller.app or draw(folded(lambda: list(world.apps)[:2]))
    if kind == "generated" or kind == "negative":
        doc = draw(generated if kind == "generated" else negative)
        request = Request(kind, "POST", "/graphql", as_json(doc))
    elif kind == "variables":
        request = draw(variables_request(world, ops))
    elif kind == "live":
        request = draw(live_request(world, ops, identity.caller))
    elif kind == "aliased":
        request = draw(aliased_request(world, ops, identity.caller))
    elif kind == "malformed":
        request = draw(malformed_request(world, generated))
        request.kind = f"malformed:{request.kind}"
    else:
        request = draw(other_http())
    request.content_type = draw(uniform(["application/json"] * 8 + [None, "text/plain", "application/x-www-form-urlencoded"]))
    return request, identity


# ---------------------------------------------------------------------------------------
# The run.


@dataclass
class Stats:
    requests: int = 0
    support_requests: int = 0
    failures: int = 0
    kinds: Counter = field(default_factory=Counter)
    callers: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    resolved: int = 0  # answers with data for at least one root field
    slowest_s: float = 0.0
    repeats_skipped: int = 0
    stale_retries: int = 0
    stopped_early: str = ""


class Fuzzer:
    def __init__(self, args, schema_sdl: str, schema: graphql.GraphQLSchema, server: Server, out: Path):
        self.args = args
        self.server = server
        self.client = Client(server.url, args.request_timeout)
        # The fuzzer's own requests (setup, resync) come from another loopback address, as
        # an operator's would: the fuzzed ones, garbage tokens included, may get their
        # address throttled for failed admin-key attempts (crates/server/src/admin_guard.rs).
        self.support_client = Client(server.url, args.request_timeout, source="127.0.0.2")
        self.admin_client = Client(server.url, args.request_timeout, source="127.0.0.3")
        self.world = World(admin_key=ADMIN_KEY)
        self.oracle = Oracle(set(documented_error_codes(schema_sdl)), args.request_timeout, ADMIN_KEY)
        self.stats = Stats()
        self.sent: set[int] = set()
        self.failures_path = out / "failures.jsonl"
        scalars = custom_scalars(self.world)
        # One strategy per root field, so that every resolver gets its share, and documents
        # with several root fields (one bad argument fails them whole) as one more choice.
        roots = [*schema.query_type.fields, *schema.mutation_type.fields]
        self.generated = st.one_of(
            [from_schema(schema, fields=[name], custom_scalars=scalars) for name in roots]
            + [from_schema(schema, custom_scalars=scalars)]
        )
        self.negative = from_schema(schema, custom_scalars=scalars, mode=Mode.NEGATIVE)
        self.ops = typed_operations(schema)
        self.rotates = "rotateApplicationSecret" in schema.mutation_type.fields

    # Setup: two applications with agents, customers, chats and messages to aim at.
    def seed_data(self) -> None:
        for name in ("Fuzz A", "Fuzz B"):
            data = self.support(self.world.admin_key,
                                "mutation($n: String!) { createApplication(name: $n) { application { token } secret } }",
                                {"n": name})
            self.world.learn(data)
            self.world.app_tokens.append(data["createApplication"]["application"]["token"])
        for app, secret in list(self.world.apps.items()):
            agent = mint_token(secret, app, "alice", "AGENT")
            for customer in ("bob", "carol"):
                token = mint_token(secret, app, customer, "CUSTOMER")
                chat = self.support(token, "mutation($a: ID!) { createChat(appToken: $a, subject: \"Seed\") { number } }",
                                    {"a": app})["createChat"]["number"]
                for i, sender in enumerate([token, agent, token] * 3):
                    self.support(sender, "mutation($a: ID!, $c: Int!, $b: String!) { sendMessage(appToken: $a, chatNumber: $c, body: $b) { number } }",
                                 {"a": app, "c": chat, "b": f"seed message {i}"})
            # A first page token of each kind for the fuzzer to replay and bend.
            self.world.learn(self.support(agent, "query($a: ID!) { chats(appToken: $a, limit: 1) { nextToken } }", {"a": app}))
            self.world.learn(self.support(agent, "query($a: ID!) { messages(appToken: $a, chatNumber: 1, limit: 2) { nextToken } }", {"a": app}))

    def support(self, token, query: str, variables: dict) -> dict:
        """A request of the fuzzer's own (setup, resync): must succeed."""
        self.stats.support_requests += 1
        ex = self.support_client.graphql(token, query, variables)
        if ex.status != 200 or ex.json().get("errors"):
            raise SystemExit(f"fuzzer setup request failed: HTTP {ex.status} {ex.response[:500]!r}")
        return ex.json()["data"]

    def resync_secrets(self, request: Request, refreshed: list[str]) -> None:
        """A fuzzed rotateApplicationSecret may have replaced a secret without showing the new
        one: rotate again, through the admin, and keep the new secret."""
        if not self.rotates or b"rotateApplicationSecret" not in request.body:
            return
        text = request.body.decode("utf-8", "replace")
        for app in list(self.world.apps):
            if app in text and app not in refreshed:
                data = self.support(self.world.admin_key,
                                    "mutation($a: ID!) { rotateApplicationSecret(token: $a, graceSeconds: 0) { application { token } secret } }",
                                    {"a": app})
                self.world.learn(data)

    def one(self, request: Request, identity: Identity) -> None:
        # Hypothesis replays and mutates its own examples; an exact repeat teaches nothing
        # new about input handling, so it is skipped (and counted).
        key = hash((request.method, request.path, request.body, request.content_type, identity.header))
        if key in self.sent:
            self.stats.repeats_skipped += 1
            return
        self.sent.add(key)
        headers = {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        if identity.header is not None:
            headers["Authorization"] = identity.header
        # The admin's fuzzed requests come from an address of their own, as an operator's
        # would: the garbage tokens' failed admin-key attempts throttle only their address.
        client = self.admin_client if identity.caller.kind == "admin" else self.client
        ex = client.send(request.method, request.path, request.body, headers,
                              own_connection=request.kind == "other-http")
        self.stats.requests += 1
        self.stats.kinds[request.kind] += 1
        self.stats.callers[identity.caller.kind if identity.caller.kind != "user" else identity.caller.role] += 1
        self.stats.statuses[ex.status] += 1
        self.stats.slowest_s = max(self.stats.slowest_s, ex.elapsed_s)
        self.oracle.secrets = set(self.world.apps.values())
        problems = self.oracle.check(ex, identity.caller, shaped=request.kind == "aliased")
        if not self.server.alive():
            problems.append(f"chat-server exited with {self.server.proc.returncode}")
        refreshed = []
        if ex.status is not None and request.path == "/graphql" and request.method == "POST":
            try:
                body = ex.json()
            except ValueError:
                body = {}
            if isinstance(body, dict):
                for error in body.get("errors") or []:
                    if isinstance(error, dict):
                        self.stats.codes[error.get("extensions", {}).get("code")] += 1
                data = body.get("data")
                if isinstance(data, dict) and any(v is not None for v in data.values()):
                    self.stats.resolved += 1
                refreshed = self.world.learn(data)
        if self.args.trace:
            with self.args.trace.open("a") as f:
                f.write(json.dumps({"kind": request.kind, "caller": identity.caller.__dict__, **ex.reproducer()}) + "\n")
        if problems:
            self.stats.failures += 1
            write_failure(self.failures_path, ex, identity.caller, request.kind, problems)
            print(f"FAIL #{self.stats.failures} ({request.kind}, {identity.caller.kind}): {'; '.join(problems)[:300]}",
                  file=sys.stderr)
            if not self.server.alive():
                raise SystemExit("chat-server died: see the failures and its log")
        self.resync_secrets(request, refreshed)

    def run(self, examples: int | None, deadline: float, base_seed: int) -> None:
        strategy = requests_(self.world, self.generated, self.negative, self.ops)
        batch_index = 0
        while True:
            remaining = None if examples is None else examples - self.stats.requests
            if remaining is not None and remaining <= 0:
                return
            if time.monotonic() >= deadline:
                self.stats.stopped_early = "" if examples is None else f"time cap reached after {self.stats.requests} of {examples}"
                return
            if self.stats.failures >= MAX_FAILURES:
                self.stats.stopped_early = f"stopped after {MAX_FAILURES} failures"
                return
            # Hypothesis repeats itself (exact repeats are skipped), so a batch asks for more
            # examples than are left; the body ignores those past the count.
            size = BATCH if remaining is None else min(BATCH, max(2 * remaining, 20))

            def body(pair) -> None:
                if time.monotonic() < deadline and self.stats.failures < MAX_FAILURES and (
                    examples is None or self.stats.requests < examples
                ):
                    self.one(*pair)

            test = given(strategy)(body)
            test = settings(
                max_examples=size, database=None, deadline=None, derandomize=False,
                phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False,
            )(test)
            seed(base_seed * 100_003 + batch_index)(test)()
            batch_index += 1


def check_invariants(fuzzer: Fuzzer, label: str) -> invariants.Checked:
    checked = invariants.check_through_api(fuzzer.support_client, ADMIN_KEY, dict(fuzzer.world.apps))
    print(f"invariants ({label}): {checked.apps} applications, {checked.chats} chats, "
          f"{checked.messages} messages, {checked.customers} customers' badges "
          f"({checked.requests} requests): {len(checked.failures)} failures")
    for failure in checked.failures:
        print(f"INVARIANT: {failure}", file=sys.stderr)
    return checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-bin", type=Path, default=Path(os.environ.get("CHAT_SERVER_BIN", ROOT / "target/debug/chat-server")))
    parser.add_argument("--examples", type=int, help="stop after this many fuzzed requests")
    parser.add_argument("--seconds", type=float, default=60, help="stop fuzzing after this long (a cap with --examples)")
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: random, printed)")
    parser.add_argument("--memory", action="store_true", help="--memory server (default: a temp data dir, checked on disk too)")
    parser.add_argument("--request-timeout", type=float, default=10, help="seconds an answer may take (a hang beyond it fails)")
    parser.add_argument("--trace", type=Path, help="append every fuzzed exchange to this JSONL file")
    parser.add_argument("--out", type=Path, default=ROOT / "fuzz/out", help="where failures.jsonl and the server log go")
    args = parser.parse_args()
    if not args.server_bin.exists():
        raise SystemExit(f"{args.server_bin} not found (scripts/fuzz builds it)")
    base_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "failures.jsonl").unlink(missing_ok=True)
    log_path = args.out / "chat-server.log"
    log_path.unlink(missing_ok=True)
    schema_sdl, schema = load_schema()
    data_dir = None if args.memory else Path(tempfile.mkdtemp(prefix="chat-fuzz-"))
    server = Server(args.server_bin, ADMIN_KEY, log_path, data_dir)
    server.start()
    print(f"fuzz: seed {base_seed}, server {server.url} ({'memory' if args.memory else data_dir}), "
          f"examples {args.examples or 'unbounded'}, cap {args.seconds:.0f} s")
    failures: list[str] = []
    started = time.monotonic()
    try:
        fuzzer = Fuzzer(args, schema_sdl, schema, server, args.out)
        served = introspected_roots(fuzzer.client)
        wanted = {t.name: set(t.fields) for t in (schema.query_type, schema.mutation_type)}
        if served != wanted:
            raise SystemExit(f"the server's root fields differ from schema.graphql (rebuild chat-server): {served} vs {wanted}")
        fuzzer.seed_data()
        watching = watchers.start(server.url, fuzzer.world.apps)
        fuzzer.run(args.examples, started + args.seconds, base_seed)
        time.sleep(0.3)  # events of the last requests on their way
        for watcher in watching:
            watcher.close()
        events, event_failures = watchers.check(watching, fuzzer.support_client, fuzzer.world.apps)
        print(f"watchers: {events} events received by {len(watching)} subscribers of every feed "
              f"({sum(w.reconnects for w in watching)} reconnects): {len(event_failures)} failures")
        for failure in event_failures:
            print(f"EVENT: {failure}", file=sys.stderr)
        failures += event_failures
        fuzz_s = time.monotonic() - started
        fuzzer.stats.stale_retries = fuzzer.client.stale_retries
        checked = check_invariants(fuzzer, "through the API")
        failures += checked.failures
        panics = [line for line in server.log_text().splitlines() if "panicked" in line or "internal error" in line]
        failures += [f"server log: {line}" for line in panics[:10]]
        disk = {}
        if data_dir is not None:
            code = server.stop()
            if code != 0:
                failures.append(f"chat-server exited with {code} on SIGTERM")
            disk, disk_failures = invariants.check_sqlite(data_dir / "chat.sqlite3")
            print(f"invariants (SQLite file, server stopped): {disk}: {len(disk_failures)} failures")
            failures += disk_failures
            server.start()
            fuzzer.client = Client(server.url, args.request_timeout)
            fuzzer.support_client = Client(server.url, args.request_timeout, source="127.0.0.2")
            fuzzer.admin_client = Client(server.url, args.request_timeout, source="127.0.0.3")
            again = check_invariants(fuzzer, "after a restart")
            failures += again.failures
            if again.snapshot != checked.snapshot:
                failures.append("the data after a restart differs from the data before it")
    finally:
        server.kill()
    s = fuzzer.stats
    total_s = time.monotonic() - started
    print(f"fuzz: {s.requests} fuzzed requests in {fuzz_s:.1f} s ({s.requests / max(fuzz_s, 1e-9):.0f}/s), "
          f"{s.support_requests} setup requests, whole run {total_s:.1f} s; slowest answer {s.slowest_s:.2f} s"
          + (f"; {s.stopped_early}" if s.stopped_early else "")
          + f"; {s.repeats_skipped} exact repeats of hypothesis skipped"
          + f"; {s.stale_retries} retried on a new connection")
    print(f"  kinds:    {dict(s.kinds.most_common())}")
    print(f"  callers:  {dict(s.callers.most_common())}")
    print(f"  statuses: {dict(s.statuses.most_common())}")
    print(f"  codes:    {dict(s.codes.most_common())}; answers with data: {s.resolved}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    failed = s.failures + len(failures)
    if s.failures:
        print(f"failing requests: {args.out / 'failures.jsonl'}; server log: {log_path}", file=sys.stderr)
    if data_dir is not None and not failed:
        shutil.rmtree(data_dir, ignore_errors=True)
    elif data_dir is not None:
        print(f"data dir kept for inspection: {data_dir}", file=sys.stderr)
    print(f"fuzz: {s.requests - s.failures} passed, {failed} failed")
    return 1 if failed else 0


def introspected_roots(client: Client) -> dict:
    ex = client.graphql(ADMIN_KEY, "{ __schema { queryType { name fields { name } } mutationType { name fields { name } } } }")
    schema = ex.json()["data"]["__schema"]
    return {t["name"]: {f["name"] for f in t["fields"]} for t in (schema["queryType"], schema["mutationType"])}


if __name__ == "__main__":
    sys.exit(main())
