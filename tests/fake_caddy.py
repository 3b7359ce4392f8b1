"""A stand-in for Caddy's admin API, run as a process named caddy (tests/test_frontdoor_admin.py): `run --config
FILE` listens on the config's admin address, answers GET /config/ with the config it holds, and takes POST /load
(a new config) unless its body asks for a port listed in FAKE_CADDY_BUSY (then 400 with Caddy's kind of message, not UTF-8).
Each accepted load is appended to loads.jsonl beside the config. FAKE_CADDY_EXIT=1: print a line and exit 1 at
once; FAKE_CADDY_MUTE=1: run without answering. What the real Caddy does with a config is tested in test_frontdoor.py."""

import http.server
import json
import os
import sys
import time
from pathlib import Path

config_path = Path(sys.argv[sys.argv.index("--config") + 1])
if os.environ.get("FAKE_CADDY_EXIT"):
    print("fake caddy: boom", file=sys.stderr, flush=True)  # Caddy logs to stderr
    sys.exit(1)
if os.environ.get("FAKE_CADDY_MUTE"):
    while True:
        time.sleep(1)
config = json.loads(config_path.read_text())
busy = [p for p in os.environ.get("FAKE_CADDY_BUSY", "").split(",") if p]


class Admin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(config).encode() if self.path == "/config/" else b""
        self.send_response(200 if self.path == "/config/" else 404)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        refused = [p for p in busy if f":{p}\"" in body]
        if self.path != "/load" or self.headers["Content-Type"] != "application/json" or refused:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(f"loading new config: listen tcp 127.0.0.1:{refused[0] if refused else 0}: bind: "
                             f"address \xff in use {'x' * 400}".encode("latin-1"))  # not UTF-8
            return
        with open(config_path.parent / "loads.jsonl", "a") as log:
            log.write(body + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


host, port = config["admin"]["listen"].rsplit(":", 1)
http.server.HTTPServer((host, int(port)), Admin).serve_forever()
