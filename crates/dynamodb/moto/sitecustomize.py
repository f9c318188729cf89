"""Loaded by the moto_server that chat-dynamodb's tests start (they put this directory on
PYTHONPATH); nothing else imports it.

1. One request at a time. moto runs requests on threads without a lock, and its
   TransactWriteItems snapshots the whole table and restores that snapshot when a condition
   fails: a cancelled transaction racing a committed one silently undoes the commit (63 of
   64 concurrent compare-and-set sends survived when measured). DynamoDB serializes
   conflicting writes itself; serializing the emulator gives the store the same guarantee.
2. Exit when stdin closes, i.e. when the test process that started us ends, however it
   ends: no moto_server outlives its tests.
"""

import os
import sys
import threading

from moto.moto_server import werkzeug_app as _werkzeug_app

_lock = threading.Lock()
_dispatch = _werkzeug_app.DomainDispatcherApplication.__call__


def _one_at_a_time(self, environ, start_response):
    with _lock:
        # Read the whole response under the lock: the backend works while it is produced.
        response = _dispatch(self, environ, start_response)
        try:
            return list(response)
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()


_werkzeug_app.DomainDispatcherApplication.__call__ = _one_at_a_time


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


if os.environ.get("CHAT_MOTO_EXIT_WITH_PARENT") == "1":
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
