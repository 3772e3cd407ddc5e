"""uvicorn's HTTP/1.1 protocol, but a request it cannot parse (a header flood, bad framing) is answered
with OpenAI's JSON error body, like every other error, instead of plain text. The app never sees such a
request: uvicorn answers it before routing."""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class JSONErrorH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": {"message": f"{msg} (malformed or oversized HTTP request)",
                                     "type": "invalid_request_error", "param": None,
                                     "code": "invalid_http_request"}}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
