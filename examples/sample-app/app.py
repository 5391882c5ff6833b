"""The deploy-guard sample app: a tiny HTTP service with what the smoke test needs.

GET /         an HTML page naming the app and its version
GET /health   {"status": "ok"}: the smoke spec's readiness probe
GET /version  {"service": ..., "version": ...}, and the header X-App-Version: the version proof

The version is baked into the image at build time (docker build --build-arg APP_VERSION=<tag>),
so the answer proves which image served the request. Python standard library only.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = os.environ.get("APP_NAME", "deploy-guard-sample")
VERSION = os.environ.get("APP_VERSION", "dev")
PORT = int(os.environ.get("PORT", "8080"))


class Handler(BaseHTTPRequestHandler):
    # Keep-alive: every answer carries Content-Length, so the ALB can reuse connections.
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "deploy-guard-sample"

    def do_GET(self):
        self.respond(send_body=True)

    def do_HEAD(self):
        self.respond(send_body=False)

    def respond(self, send_body):
        path = self.path.split("?", 1)[0]
        if path == "/":
            status, ctype = 200, "text/html; charset=utf-8"
            body = (
                "<!doctype html><title>%s</title>"
                "<h1>deploy-guard sample app</h1><p>%s, version <code>%s</code></p>\n"
                % (SERVICE, SERVICE, VERSION)
            ).encode()
        elif path == "/health":
            status, ctype = 200, "application/json"
            body = json.dumps({"status": "ok"}).encode()
        elif path == "/version":
            status, ctype = 200, "application/json"
            body = json.dumps({"service": SERVICE, "version": VERSION}).encode()
        else:
            status, ctype = 404, "application/json"
            body = json.dumps({"error": "not found", "path": path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        # One JSON line per request on stdout (the awslogs driver ships it to CloudWatch Logs).
        line = {"client": self.client_address[0], "request": self.requestline, "status": args[1] if len(args) > 1 else None}
        print(json.dumps(line), flush=True)


def main():
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True

    # ECS stops a task with SIGTERM: stop accepting, finish, exit 0.
    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"msg": "listening", "port": PORT, "service": SERVICE, "version": VERSION}), flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
