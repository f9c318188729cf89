"""What every answer must satisfy, whatever was asked: the fuzzer's per-request oracle."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from server import Exchange

# Counters are never negative; numbers start at 1.
COUNT_KEYS = {
    "messagesCount", "unreadCount", "customerLastRead", "agentsLastRead", "totalUnread",
    "unreadChats", "lastReadNumber", "chatsCount",
}
NUMBER_KEYS = {"number", "chatNumber"}


def documented_error_codes(schema_sdl: str) -> list[str]:
    """The codes the schema's header comment promises: "Errors carry `extensions.code` ...:
    BadInput, Unauthorized, ..., Internal." One source of truth for the fuzzer too."""
    comment = " ".join(
        line.lstrip("#").strip() for line in schema_sdl.splitlines() if line.startswith("#")
    )
    m = re.search(r"Errors carry `extensions\.code`[^:]*:\s*([A-Za-z ,]+)\.", comment)
    if not m:
        raise SystemExit("schema.graphql's header no longer lists the error codes")
    codes = [c.strip() for c in m.group(1).split(",") if c.strip()]
    if "Internal" not in codes or len(codes) < 5:
        raise SystemExit(f"unexpected error codes in schema.graphql's header: {codes}")
    return codes


@dataclass
class Caller:
    """Who a request claims to be, as far as the oracle needs to know."""

    kind: str  # admin | user | none | garbage
    app: str | None = None
    role: str | None = None
    sub: str | None = None


@dataclass
class Oracle:
    allowed_codes: set[str]
    time_bound_s: float
    admin_key: str
    secrets: set[str] = field(default_factory=set)

    def check(self, ex: Exchange, caller: Caller, shaped: bool = False) -> list[str]:
        """The failures of one exchange (empty: it passed). `shaped`: the request aliased
        fields over others on purpose, so the answer's keys do not name its values."""
        if ex.status is None:
            return [f"no HTTP answer ({ex.error}): hang, reset or crash"]
        problems = []
        if ex.status >= 500:
            problems.append(f"HTTP {ex.status}")
        if ex.elapsed_s > self.time_bound_s:
            problems.append(f"took {ex.elapsed_s:.1f} s (bound {self.time_bound_s} s)")
        if ex.method == "POST" and ex.path == "/graphql":
            problems += self._graphql_answer(ex, caller, shaped)
        return problems

    def _graphql_answer(self, ex: Exchange, caller: Caller, shaped: bool) -> list[str]:
        try:
            body = ex.json()
        except ValueError:
            return [f"HTTP {ex.status} body is not JSON: {ex.response[:120]!r}"]
        if not isinstance(body, dict) or not ("data" in body or "errors" in body):
            return [f"body has neither data nor errors: {str(body)[:200]}"]
        problems = []
        errors = body.get("errors")
        if errors is not None:
            if not isinstance(errors, list) or not errors:
                problems.append(f"errors is not a non-empty list: {errors!r:.200}")
                errors = []
            for error in errors:
                code = error.get("extensions", {}).get("code") if isinstance(error, dict) else None
                if not isinstance(error, dict) or not isinstance(error.get("message"), str):
                    problems.append(f"error without a message: {error!r:.200}")
                if code == "Internal":
                    problems.append(f"Internal error: {error.get('message')!r:.200}")
                elif code not in self.allowed_codes:
                    problems.append(f"error code {code!r} is not documented: {error!r:.200}")
            if ex.status == 401 and any(
                isinstance(e, dict) and e.get("extensions", {}).get("code") != "Unauthorized"
                for e in errors
            ):
                problems.append("HTTP 401 with a code other than Unauthorized")
        elif not isinstance(body.get("data"), dict):
            problems.append(f"no errors but data is {body.get('data')!r:.100}")
        if ex.status != 200 and not errors:
            problems.append(f"HTTP {ex.status} without errors")
        problems += self._no_leaks(ex)
        if isinstance(body.get("data"), dict) and not shaped:
            problems += self._values(body["data"], caller)
        return problems

    def _no_leaks(self, ex: Exchange) -> list[str]:
        """Secrets appear only in the answers that hand them out; the admin key never does
        unless the request itself carried it in its body (parse errors quote the query)."""
        text = ex.response.decode("utf-8", "replace")
        request = ex.body.decode("utf-8", "replace")
        problems = []
        if self.admin_key in text and self.admin_key not in request:
            problems.append("the admin key appears in an answer")
        if "sk_" in text and not re.search(r"createApplication|rotateApplicationSecret", request):
            leaked = [s for s in self.secrets if s in text and s not in request]
            if leaked:
                problems.append("an application secret appears in an answer")
        return problems

    def _values(self, data, caller: Caller) -> list[str]:
        """Cheap semantic checks on every object in the data, whatever was selected."""
        problems: list[str] = []

        def walk(node, path: str) -> None:
            if len(problems) >= 5:
                return
            if isinstance(node, list):
                for i, item in enumerate(node):
                    walk(item, f"{path}[{i}]")
                return
            if not isinstance(node, dict):
                return
            for key, value in node.items():
                if key in COUNT_KEYS and not (isinstance(value, int) and value >= 0):
                    problems.append(f"{path}.{key} = {value!r}: not a count")
                if key in NUMBER_KEYS and not (isinstance(value, int) and value >= 1):
                    problems.append(f"{path}.{key} = {value!r}: not a number >= 1")
            mc = node.get("messagesCount")
            for mark in ("customerLastRead", "agentsLastRead"):
                if isinstance(mc, int) and isinstance(node.get(mark), int) and node[mark] > mc:
                    problems.append(f"{path}: {mark} {node[mark]} > messagesCount {mc}")
            own_mark = {"AGENT": "agentsLastRead", "CUSTOMER": "customerLastRead"}.get(caller.role)
            if (
                own_mark and isinstance(mc, int) and isinstance(node.get(own_mark), int)
                and isinstance(node.get("unreadCount"), int)
                and node["unreadCount"] != mc - node[own_mark]
            ):
                problems.append(
                    f"{path}: unreadCount {node['unreadCount']} != messagesCount {mc} - {own_mark} {node[own_mark]}"
                )
            if node.get("deleted") is True and node.get("body") not in (None, ""):
                problems.append(f"{path}: a deleted message still has a body")
            # Isolation: a user sees its own application only; a CUSTOMER its own chats only.
            if caller.kind == "user":
                app = node.get("appToken")
                if isinstance(app, str) and app != caller.app:
                    problems.append(f"{path}: another application's data ({app}) for a user of {caller.app}")
                if caller.role == "CUSTOMER" and "customerId" in node and node["customerId"] != caller.sub:
                    problems.append(f"{path}: customer {caller.sub!r} sees a chat of {node['customerId']!r}")
            for key, value in node.items():
                walk(value, f"{path}.{key}")

        walk(data, "data")
        return problems


def write_failure(out: Path, ex: Exchange, caller: Caller, kind: str, problems: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        record = {"kind": kind, "caller": caller.__dict__, "problems": problems, **ex.reproducer()}
        f.write(json.dumps(record) + "\n")
