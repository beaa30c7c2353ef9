"""What only the raw WSGI adapter has.  What every adapter shares, `SSEWSGIApp` included, is
checked end to end by `test_adapter_contract.py`."""

from __future__ import annotations

import socket

from ssekit.adapters.wsgi import peer_closed


def test_peer_closed_tells_a_closed_client_from_a_quiet_one() -> None:
    """The check the body makes before each write: EOF means gone; silence or a pipelined
    request's bytes do not."""
    server_end, client_end = socket.socketpair()
    with server_end:
        assert not peer_closed(server_end)  # connected and quiet
        client_end.sendall(b"GET /next HTTP/1.1\r\n")
        assert not peer_closed(server_end)  # bytes waiting are not an end of file
        assert server_end.recv(64) == b"GET /next HTTP/1.1\r\n"  # and the peek consumed nothing
        client_end.close()
        assert peer_closed(server_end)
