"""The lab's stand-in for kube-proxy plus a pod: an HTTP server in a node's
namespace that answers every request with the node's name, on every address
of the namespace (so on any VIP the node holds). The client thus sees which
node serves a VIP.

    python -m externalip_lab.backend NAME [PORT]
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    body = f"{name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the lab's own output

    return Handler


def main(argv: list[str]) -> int:
    name = argv[0]
    port = int(argv[1]) if len(argv) > 1 else 80
    server = _DualStackServer(("::", port), make_handler(name))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
