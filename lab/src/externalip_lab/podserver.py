"""A lab pod's program: an HTTP server answering every GET with the pod's
name, its node and the client address it saw (`pod=.. node=.. client=..`).

    python -m externalip_lab.podserver POD NODE [PORT]
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


def make_handler(pod: str, node: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: connections can outlive a failover

        def do_GET(self) -> None:
            client = self.client_address[0].removeprefix("::ffff:")
            body = f"pod={pod} node={node} client={client}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the lab's own output

    return Handler


def main(argv: list[str]) -> int:
    pod, node = argv[0], argv[1]
    port = int(argv[2]) if len(argv) > 2 else 80
    _DualStackServer(("::", port), make_handler(pod, node)).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
