"""worker.py: each answer's head and body leave in one socket write, always in order."""

from worker import JOIN_BODIES_UNDER, HeadWithBody


class RecordingSocket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def fileno(self) -> int:
        self.writes.append(b"<fileno>")
        return 99


def test_head_and_a_small_body_leave_in_one_write():
    sock = RecordingSocket()
    wrapped = HeadWithBody(sock)
    wrapped.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    assert sock.writes == []
    wrapped.sendall(b'{"a": 1}')
    wrapped.sendall(b"more")
    wrapped.flush()
    assert sock.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}', b"more"]


def test_a_head_without_body_leaves_at_flush():
    sock = RecordingSocket()
    wrapped = HeadWithBody(sock)
    wrapped.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    wrapped.flush()
    wrapped.flush()
    assert sock.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_a_large_body_is_not_copied_behind_the_head():
    sock = RecordingSocket()
    wrapped = HeadWithBody(sock)
    body = b"x" * JOIN_BODIES_UNDER
    wrapped.sendall(b"head")
    wrapped.sendall(body)
    assert sock.writes == [b"head", body]


def test_any_other_use_of_the_socket_sends_the_head_first():
    sock = RecordingSocket()
    wrapped = HeadWithBody(sock)
    wrapped.sendall(b"head")
    assert wrapped.fileno() == 99  # e.g. sendfile writing the body straight to the socket
    assert sock.writes == [b"head", b"<fileno>"]
