"""Subscribers attached while the fuzzer runs: who received what.

Each application gets a watcher: an agent's graphql-transport-ws connection subscribed to
every feed of that application (onMessage and onReadReceipt of chats 1-6, onInboxMessage,
onChat), selecting the fields that route events and the sender. While the fuzzer sends its
requests, aliased mutations with other applications' tokens in their arguments among them
(graphql_fuzz.aliased_request), the watchers record every event. Afterwards each event is
checked against the store: it belongs to the watcher's application and chat, and what it
says happened did (the message exists with that sender; a customer's read receipt is that
chat's customer's). A forged event, routed by a caller-shaped answer, fails this.

A watcher whose connection closes (a fuzzed rotation without grace ends its token's
authority) reconnects with the application's current secret; events are checked for
truth, not for completeness.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import websocket

from server import mint_token

CHATS = range(1, 7)
MESSAGE = "appToken chatNumber number senderId senderRole body deleted"
FEEDS = [
    ("onInboxMessage", "subscription($a: ID!) { onInboxMessage(appToken: $a) { " + MESSAGE + " } }", None),
    ("onChat", "subscription($a: ID!) { onChat(appToken: $a) { appToken number customerId status } }", None),
] + [
    (f"onMessage:{c}", "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { " + MESSAGE + " } }", c)
    for c in CHATS
] + [
    (f"onReadReceipt:{c}",
     "subscription($a: ID!, $c: Int!) { onReadReceipt(appToken: $a, chatNumber: $c) { appToken chatNumber readerId readerRole lastReadNumber } }",
     c)
    for c in CHATS
]


@dataclass
class Watcher:
    url: str
    app: str
    secrets: dict  # the fuzzer's app -> current secret (kept up to date by the fuzzer)
    events: list = field(default_factory=list)  # (feed, chat or None, payload)
    reconnects: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self) -> websocket.WebSocket:
        ws = websocket.create_connection(
            self.url.replace("http", "ws", 1) + "/graphql", subprotocols=["graphql-transport-ws"], timeout=5,
        )
        token = mint_token(self.secrets[self.app], self.app, "watcher", "AGENT")
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
        ack = json.loads(ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"watcher of {self.app}: {ack}")
        for name, query, chat in FEEDS:
            variables = {"a": self.app} if chat is None else {"a": self.app, "c": chat}
            ws.send(json.dumps({"type": "subscribe", "id": name, "payload": {"query": query, "variables": variables}}))
        # A ping round trip: every subscription is live once the pong comes back.
        ws.send(json.dumps({"type": "ping"}))
        while json.loads(ws.recv()).get("type") != "pong":
            pass
        ws.settimeout(0.2)
        return ws

    def ready(self) -> None:
        self._ws = self._connect()

    def _run(self) -> None:
        ws = self._ws
        while not self.stop.is_set():
            try:
                text = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                text = None
            if not text:
                # Closed (its token's authority ended, say): reconnect with the current secret.
                if self.stop.is_set():
                    break
                self.reconnects += 1
                time.sleep(0.05)
                try:
                    ws = self._ws = self._connect()
                except (websocket.WebSocketException, OSError, RuntimeError):
                    time.sleep(0.2)
                continue
            message = json.loads(text)
            if message.get("type") == "next":
                feed = message["id"]
                chat = int(feed.split(":")[1]) if ":" in feed else None
                self.events.append((feed.split(":")[0], chat, message["payload"]))
            elif message.get("type") == "ping":
                ws.send(json.dumps({"type": "pong"}))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        try:
            self._ws.close()
        except (websocket.WebSocketException, OSError):
            pass


def start(url: str, secrets: dict) -> list[Watcher]:
    watchers = []
    for app in list(secrets):
        watcher = Watcher(url, app, secrets)
        watcher.ready()
        watcher.start()
        watchers.append(watcher)
    return watchers


MESSAGE_QUERY = "query($a: ID!, $c: Int!, $n: Int!) { message(appToken: $a, chatNumber: $c, number: $n) { senderId senderRole } }"
CHAT_QUERY = "query($a: ID!, $n: Int!) { chat(appToken: $a, number: $n) { customerId } }"


def check(watchers: list[Watcher], client, secrets: dict) -> tuple[int, list[str]]:
    """Every event the watchers received against the store: (events, failures)."""
    failures: list[str] = []
    seen = 0
    cache: dict = {}

    def ask(app: str, query: str, variables: dict) -> dict:
        key = (query, json.dumps(variables, sort_keys=True))
        if key not in cache:
            token = mint_token(secrets[app], app, "auditor", "AGENT")
            ex = client.graphql(token, query, variables)
            cache[key] = ex.json().get("data") or {}
        return cache[key]

    for watcher in watchers:
        app = watcher.app
        for feed, chat, payload in watcher.events:
            seen += 1
            if payload.get("errors"):
                failures.append(f"{feed} of {app}: an error event {payload}")
                continue
            event = (payload.get("data") or {}).get(feed)
            if not isinstance(event, dict):
                failures.append(f"{feed} of {app}: no event object in {payload}")
                continue
            where = f"{feed}({app}{'' if chat is None else f', {chat}'}) got {event}"
            if event.get("appToken") != app:
                failures.append(f"{where}: another application's event")
                continue
            if chat is not None and event.get("chatNumber") != chat:
                failures.append(f"{where}: another chat's event")
                continue
            if feed in ("onMessage", "onInboxMessage"):
                stored = ask(app, MESSAGE_QUERY, {"a": app, "c": event["chatNumber"], "n": event["number"]}).get("message")
                if stored is None:
                    failures.append(f"{where}: no such message in the store")
                elif (stored["senderId"], stored["senderRole"]) != (event["senderId"], event["senderRole"]):
                    failures.append(f"{where}: the stored message was sent by {stored}")
            elif feed == "onChat":
                stored = ask(app, CHAT_QUERY, {"a": app, "n": event["number"]}).get("chat")
                if stored is None or stored["customerId"] != event["customerId"]:
                    failures.append(f"{where}: the store has {stored}")
            elif feed == "onReadReceipt" and event.get("readerRole") == "CUSTOMER":
                stored = ask(app, CHAT_QUERY, {"a": app, "n": event["chatNumber"]}).get("chat")
                if stored is None or stored["customerId"] != event["readerId"]:
                    failures.append(f"{where}: the chat's customer is {stored}")
    return seen, failures
