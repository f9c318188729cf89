"""The data's invariants after fuzzing: through the API (any store), and on the SQLite file
of a stopped server (the embedded store's tables, read-only).

Through the API, for every application with a known secret: chats numbered 1..n with n its
chatsCount; every chat's messages numbered 1..messagesCount, whether paged up or down;
watermarks within the chat; unread counts and both kinds of badges (the agents' team and
each customer's) equal to a recount; times never going backwards along the numbers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from server import Client, mint_token

PAGE = 100
# Rust's `char::is_whitespace` (Unicode White_Space), which the server trims by; Python's
# str.isspace also counts U+001C..U+001F.
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
CHECKER = "fuzz-invariant-checker"

CHAT_FIELDS = """number customerId status messagesCount unreadCount customerLastRead
  agentsLastRead lastMessage { number } createdAt"""
CHATS = f"""query($a: ID!, $s: ChatStatus, $t: String) {{
  chats(appToken: $a, status: $s, limit: {PAGE}, nextToken: $t) {{ items {{ {CHAT_FIELDS} }} nextToken }} }}"""
MESSAGE_FIELDS = "appToken chatNumber number body senderId senderRole clientMessageId createdAt deleted"
MESSAGES_UP = f"""query($a: ID!, $c: Int!, $t: String) {{
  messages(appToken: $a, chatNumber: $c, limit: {PAGE}, nextToken: $t) {{ items {{ {MESSAGE_FIELDS} }} nextToken }} }}"""
MESSAGES_DOWN = f"""query($a: ID!, $c: Int!, $b: Int, $t: String) {{
  messages(appToken: $a, chatNumber: $c, before: $b, limit: {PAGE}, nextToken: $t) {{ items {{ number }} nextToken }} }}"""
MESSAGE = f"""query($a: ID!, $c: Int!, $n: Int!) {{ message(appToken: $a, chatNumber: $c, number: $n) {{ {MESSAGE_FIELDS} }} }}"""
SUMMARY = "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats } }"
APPLICATION = "query($a: ID!) { application(token: $a) { chatsCount } }"


class InvariantError(AssertionError):
    pass


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantError(message)


@dataclass
class Checked:
    apps: int = 0
    chats: int = 0
    messages: int = 0
    customers: int = 0
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    # (app, chat number) -> the chat and its messages as seen: compared across a restart.
    snapshot: dict = field(default_factory=dict)


def _ok(client: Client, checked: Checked, token: str, query: str, variables: dict) -> dict:
    checked.requests += 1
    ex = client.graphql(token, query, variables)
    ensure(ex.status == 200, f"HTTP {ex.status} {ex.error or ''} for {query[:60]!r} {variables}")
    body = ex.json()
    ensure(not body.get("errors"), f"errors {body.get('errors')} for {query[:60]!r} {variables}")
    return body["data"]


def _pages(client, checked, token, query, variables, key, bound) -> list[dict]:
    """Every item of a paged field, following nextToken for at most `bound` pages."""
    items, next_token = [], None
    for _ in range(bound):
        page = _ok(client, checked, token, query, {**variables, "t": next_token})[key]
        items += page["items"]
        next_token = page["nextToken"]
        if next_token is None:
            return items
    raise InvariantError(f"{key} still had a nextToken after {bound} pages ({variables})")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_application(client: Client, admin_key: str, app: str, secret: str, checked: Checked) -> None:
    agent = mint_token(secret, app, CHECKER, "AGENT")
    chats_count = _ok(client, checked, admin_key, APPLICATION, {"a": app})["application"]["chatsCount"]
    bound = chats_count // PAGE + 2
    chats = _pages(client, checked, agent, CHATS, {"a": app}, "chats", bound)
    numbers = [c["number"] for c in chats]
    ensure(len(numbers) == len(set(numbers)), f"{app}: a chat listed twice: {sorted(numbers)}")
    ensure(sorted(numbers) == list(range(1, chats_count + 1)),
           f"{app}: chats {sorted(numbers)[:20]}... are not 1..{chats_count} (chatsCount)")
    by_status = [
        {c["number"] for c in _pages(client, checked, agent, CHATS, {"a": app, "s": s}, "chats", bound)}
        for s in ("OPEN", "RESOLVED")
    ]
    ensure(not (by_status[0] & by_status[1]) and by_status[0] | by_status[1] == set(numbers),
           f"{app}: the OPEN and RESOLVED listings do not partition the chats")

    team, per_customer = [0, 0], {}
    for chat in sorted(chats, key=lambda c: c["number"]):
        n, mc = chat["number"], chat["messagesCount"]
        where = f"{app} chat {n}"
        ensure(0 <= chat["customerLastRead"] <= mc and 0 <= chat["agentsLastRead"] <= mc,
               f"{where}: watermarks {chat['customerLastRead']}/{chat['agentsLastRead']} outside 0..{mc}")
        ensure(chat["unreadCount"] == mc - chat["agentsLastRead"],
               f"{where}: an agent's unreadCount {chat['unreadCount']} != {mc} - {chat['agentsLastRead']}")
        ensure((chat["lastMessage"] or {}).get("number") == (mc or None),
               f"{where}: lastMessage {chat['lastMessage']} but messagesCount {mc}")
        messages = _pages(client, checked, agent, MESSAGES_UP, {"a": app, "c": n}, "messages", mc // PAGE + 2)
        ensure([m["number"] for m in messages] == list(range(1, mc + 1)),
               f"{where}: message numbers are not 1..{mc}: {[m['number'] for m in messages][:30]}")
        if 0 < mc < 2**31 - 1:
            down = _pages(client, checked, agent, MESSAGES_DOWN, {"a": app, "c": n, "b": mc + 1},
                          "messages", mc // PAGE + 2)
            ensure(sorted(m["number"] for m in down) == list(range(1, mc + 1)),
                   f"{where}: paging down does not give 1..{mc} exactly once")
        client_ids = [m["clientMessageId"] for m in messages if m["clientMessageId"] is not None]
        ensure(len(client_ids) == len(set(client_ids)), f"{where}: a clientMessageId used twice")
        previous = _time(chat["createdAt"])
        for m in messages:
            here = f"{where} message {m['number']}"
            ensure(m["appToken"] == app and m["chatNumber"] == n, f"{here}: wrong place {m}")
            ensure(_time(m["createdAt"]) >= previous, f"{here}: createdAt goes backwards")
            previous = _time(m["createdAt"])
            ensure(m["body"] == "" if m["deleted"] else m["body"].strip(RUST_WHITESPACE) != "",
                   f"{here}: body {m['body'][:40]!r} with deleted={m['deleted']}")
            ensure(m["senderRole"] == "AGENT" or m["senderId"] == chat["customerId"],
                   f"{here}: a CUSTOMER message by {m['senderId']!r} in {chat['customerId']!r}'s chat")
        for probe in {1, mc} if mc else set():
            single = _ok(client, checked, agent, MESSAGE, {"a": app, "c": n, "n": probe})["message"]
            ensure(single == messages[probe - 1], f"{where}: message({probe}) differs from the page")
        agents_unread = mc - chat["agentsLastRead"]
        team[0] += agents_unread
        team[1] += agents_unread > 0
        customer = per_customer.setdefault(chat["customerId"], [0, 0, set()])
        customer_unread = mc - chat["customerLastRead"]
        customer[0] += customer_unread
        customer[1] += customer_unread > 0
        customer[2].add(n)
        checked.chats += 1
        checked.messages += mc
        checked.snapshot[(app, n)] = (
            chat["customerId"], chat["status"], chat["customerLastRead"], chat["agentsLastRead"],
            tuple((m["number"], m["body"], m["senderId"], m["deleted"], m["clientMessageId"]) for m in messages),
        )

    summary = _ok(client, checked, agent, SUMMARY, {"a": app})["unreadSummary"]
    ensure([summary["totalUnread"], summary["unreadChats"]] == team,
           f"{app}: the agents' unreadSummary {summary} != recount {team}")
    for customer_id, (total, unread_chats, own) in per_customer.items():
        token = mint_token(secret, app, customer_id, "CUSTOMER")
        summary = _ok(client, checked, token, SUMMARY, {"a": app})["unreadSummary"]
        ensure([summary["totalUnread"], summary["unreadChats"]] == [total, unread_chats],
               f"{app}: customer {customer_id!r}'s unreadSummary {summary} != recount {[total, unread_chats]}")
        seen = {c["number"] for c in _pages(client, checked, token, CHATS, {"a": app}, "chats", bound)}
        ensure(seen == own, f"{app}: customer {customer_id!r} lists chats {sorted(seen)}, owns {sorted(own)}")
        checked.customers += 1
    checked.apps += 1


def check_through_api(client: Client, admin_key: str, apps: dict[str, str]) -> Checked:
    checked = Checked()
    for app, secret in apps.items():
        try:
            check_application(client, admin_key, app, secret, checked)
        except InvariantError as e:
            checked.failures.append(str(e))
    return checked


def check_sqlite(db: Path) -> tuple[dict, list[str]]:
    """The embedded store's invariants on its file (the server stopped): SQLite's own
    integrity and foreign-key checks, dense numbers, counts equal to their rows, watermarks
    in range, unread counters equal to a recount, tombstones without bodies."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    failures = []

    def rows(sql: str) -> list:
        return conn.execute(sql).fetchall()

    def none(label: str, sql: str) -> None:
        found = rows(sql)
        if found:
            failures.append(f"{label}: {found[:5]}")

    integrity = rows("PRAGMA integrity_check")
    if integrity != [("ok",)]:
        failures.append(f"integrity_check: {integrity[:5]}")
    none("foreign_key_check", "PRAGMA foreign_key_check")
    none("chats_count differs from the chats (count, highest number)", """
        SELECT a.token, a.chats_count, COUNT(c.number), MAX(c.number) FROM applications a
        LEFT JOIN chats c ON c.app_id = a.id GROUP BY a.id
        HAVING a.chats_count != COUNT(c.number) OR a.chats_count != COALESCE(MAX(c.number), 0)""")
    none("chats numbered from other than 1", "SELECT app_id, MIN(number) FROM chats GROUP BY app_id HAVING MIN(number) != 1")
    none("messages_count differs from the messages (count, highest number)", """
        SELECT c.app_id, c.number, c.messages_count, COUNT(m.number), MAX(m.number) FROM chats c
        LEFT JOIN messages m ON m.app_id = c.app_id AND m.chat_number = c.number
        GROUP BY c.app_id, c.number
        HAVING c.messages_count != COUNT(m.number) OR c.messages_count != COALESCE(MAX(m.number), 0)""")
    none("messages numbered from other than 1", """
        SELECT app_id, chat_number, MIN(number) FROM messages GROUP BY app_id, chat_number HAVING MIN(number) != 1""")
    none("watermarks outside 0..messages_count", """
        SELECT app_id, number, messages_count, customer_last_read, agents_last_read FROM chats
        WHERE customer_last_read NOT BETWEEN 0 AND messages_count
           OR agents_last_read NOT BETWEEN 0 AND messages_count""")
    none("an agent's watermark above the team's", """
        SELECT r.app_id, r.chat_number, r.agent_id, r.last_read, c.agents_last_read FROM agent_reads r
        JOIN chats c ON c.app_id = r.app_id AND c.number = r.chat_number WHERE r.last_read > c.agents_last_read""")
    none("a deleted message with a body", "SELECT app_id, chat_number, number FROM messages WHERE deleted = 1 AND body != ''")
    none("createdAt going backwards along the numbers", """
        SELECT a.app_id, a.chat_number, a.number FROM messages a JOIN messages b
        ON b.app_id = a.app_id AND b.chat_number = a.chat_number AND b.number = a.number + 1
        WHERE b.created_at < a.created_at""")
    # Unread counters against a recount of the chats' marks (a missing row counts as 0).
    recount = """
        SELECT app_id, 'AGENTS' AS side, '' AS customer_id,
               SUM(messages_count - agents_last_read) AS total,
               SUM(messages_count > agents_last_read) AS chats
        FROM chats GROUP BY app_id
        UNION ALL
        SELECT app_id, 'CUSTOMER', customer_id, SUM(messages_count - customer_last_read),
               SUM(messages_count > customer_last_read)
        FROM chats GROUP BY app_id, customer_id"""
    none("unread counters differ from a recount", f"""
        WITH r AS ({recount})
        SELECT r.app_id, r.side, r.customer_id, r.total, r.chats, u.total_unread, u.unread_chats FROM r
        LEFT JOIN unread_counters u ON u.app_id = r.app_id AND u.side = r.side AND u.customer_id = r.customer_id
        WHERE COALESCE(u.total_unread, 0) != r.total OR COALESCE(u.unread_chats, 0) != r.chats
        UNION ALL
        SELECT u.app_id, u.side, u.customer_id, 0, 0, u.total_unread, u.unread_chats FROM unread_counters u
        LEFT JOIN r ON r.app_id = u.app_id AND r.side = u.side AND r.customer_id = u.customer_id
        WHERE r.app_id IS NULL AND (u.total_unread != 0 OR u.unread_chats != 0)""")
    stats = {
        "applications": rows("SELECT COUNT(*) FROM applications")[0][0],
        "chats": rows("SELECT COUNT(*) FROM chats")[0][0],
        "messages": rows("SELECT COUNT(*) FROM messages")[0][0],
    }
    conn.close()
    return stats, failures
