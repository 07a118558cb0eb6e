"""A local HTTP server (http.server in a thread on 127.0.0.1) standing in for an SMS provider or a
webhook receiver: it records every request and answers as told.

    with http_server() as server:
        server.fail_next(500, times=2)     # the next two requests get a 500
        server.stall_next(seconds=1.5)     # the next request waits this long before answering
        server.reject(field_value="+31610000001", status=400)  # any request whose body has it
        ... send to server.url ...
        server.requests  # [Recorded(path, headers, body)]
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Behaviour:
    requests: list[Recorded] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses to answer, one per coming request
    stalls: list[float] = field(default_factory=list)  # seconds to wait, one per coming request
    rejected: dict[str, int] = field(default_factory=dict)  # a value in the body -> status
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def fail_next(self, status: int, *, times: int = 1) -> None:
        self.failures.extend([status] * times)

    def stall_next(self, *, seconds: float, times: int = 1) -> None:
        self.stalls.extend([seconds] * times)

    def reject(self, *, field_value: str, status: int = 400) -> None:
        self.rejected[field_value] = status


def _handler_for(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with behaviour.lock:
                behaviour.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                stall = behaviour.stalls.pop(0) if behaviour.stalls else 0.0
                status = behaviour.failures.pop(0) if behaviour.failures else 0
                for value, reject_status in behaviour.rejected.items():
                    if value.encode() in body or value.replace("+", "%2B").encode() in body:
                        status = reject_status
            if stall:
                time.sleep(stall)
            if status:
                answer = json.dumps({"error": f"refused with {status}"}).encode()
            else:
                status = 200
                answer = json.dumps({"id": f"msg-{len(behaviour.requests)}"}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                pass

    return Handler


@contextlib.contextmanager
def http_server() -> Iterator[Behaviour]:
    behaviour = Behaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(behaviour))
    server.daemon_threads = True
    behaviour.url = f"http://127.0.0.1:{server.server_address[1]}/messages"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield behaviour
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
