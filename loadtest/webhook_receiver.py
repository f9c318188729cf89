"""A webhook receiver for scripts/bench-webhooks: answers 204 to every POST and appends, per
event, its arrival time minus the event's message createdAt (ms) to a JSON-lines file.

    python3 loadtest/webhook_receiver.py PORT OUT.jsonl
"""
import json
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the sender reuses connections

    def do_POST(self):
        arrived = time.time() * 1000
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        event = json.loads(body)
        created = event["data"]["message"]["createdAt"]
        sent = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() * 1000
        with lock, open(OUT, "a") as out:
            out.write(json.dumps({"id": event["id"], "lag_ms": round(arrived - sent, 1)}) + "\n")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
