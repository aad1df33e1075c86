"""mta kick (postkick): one trigger to a service's socket."""

import socket
import threading

import pytest

from mta.cli import kick
from tests.support.instance import make_instance


def test_kick_delivers_the_request_to_a_public_socket(tmp_path, capsys):
    cdir = make_instance(tmp_path)
    path = tmp_path / "spool" / "public" / "pickup"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got = []

    def accept():
        conn, _ = server.accept()
        got.append(conn.recv(100))
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    assert kick.main(["-c", str(cdir), "public", "pickup", "W"]) == 0
    t.join(5)
    server.close()
    assert got == [b"W"]


def test_kick_with_nobody_listening_fails_with_one_line(tmp_path, capsys):
    cdir = make_instance(tmp_path)
    assert kick.main(["-c", str(cdir), "private", "qmgr", "W"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nobody listens" in err


def test_kick_refuses_a_path_as_service_name(tmp_path, capsys):
    cdir = make_instance(tmp_path)
    with pytest.raises(SystemExit) as info:
        kick.main(["-c", str(cdir), "public", "../private/x", "W"])
    assert info.value.code == 2
    assert "bad service name" in capsys.readouterr().err
