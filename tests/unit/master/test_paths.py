"""Queue tree names and modes."""

from mta.queue import paths


def test_queue_names_are_postfix_names_in_order():
    assert paths.QUEUE_NAMES == (
        "maildrop",
        "incoming",
        "active",
        "deferred",
        "hold",
        "corrupt",
        "bounce",
        "defer",
        "trace",
        "flush",
        "saved",
    )


def test_modes():
    assert paths.QUEUE_DIR_MODES["maildrop"] == 0o730
    assert paths.QUEUE_DIR_MODES["public"] == 0o710
    assert paths.QUEUE_DIR_MODES["private"] == 0o700
    assert paths.QUEUE_DIR_MODES["pid"] == 0o755
    assert all(paths.QUEUE_DIR_MODES[n] == 0o700 for n in paths.QUEUE_NAMES[1:])


def test_service_socket_path():
    assert paths.service_socket_path("/q", "proxymap", True) == "/q/private/proxymap"
    assert paths.service_socket_path("/q", "pickup", False) == "/q/public/pickup"
