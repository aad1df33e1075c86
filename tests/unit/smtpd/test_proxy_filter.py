"""smtpd_proxy_filter's endpoint syntax and settings (smtpd/proxy_filter.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.config import ConfigError, load_config
from mta.smtpd.proxy_filter import parse_endpoint, settings


@pytest.mark.parametrize(
    "value, endpoint",
    [
        ("127.0.0.1:10025", ("127.0.0.1", 10025, "")),
        ("inet:127.0.0.1:10025", ("127.0.0.1", 10025, "")),
        (":10025", ("localhost", 10025, "")),
        ("10025", ("localhost", 10025, "")),
        ("[::1]:10025", ("::1", 10025, "")),
        ("filter.example:25", ("filter.example", 25, "")),
        ("unix:private/proxy", ("", 0, "/q/private/proxy")),
        ("unix:/run/proxy", ("", 0, "/run/proxy")),
    ],
)
def test_endpoints(value, endpoint):
    assert parse_endpoint(value, "/q") == endpoint


@pytest.mark.parametrize("value", ["127.0.0.1", "host:port", "host:0", "host:70000", "unix:"])
def test_bad_endpoints(value):
    with pytest.raises(ValueError):
        parse_endpoint(value, "/q")


@given(st.text(max_size=60))
def test_any_value_gives_an_endpoint_or_value_error(value):
    try:
        host, port, path = parse_endpoint(value, "/q")
    except ValueError:
        return
    assert (path and not host and port == 0) or (host and 0 < port < 65536 and not path)


def config(tmp_path, text):
    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}/q\nmyhostname = h.example\n" + text
    )
    return load_config(str(tmp_path))


def test_no_filter_no_settings(tmp_path):
    assert settings(config(tmp_path, "")) is None


def test_settings_and_their_defaults(tmp_path):
    st_ = settings(config(tmp_path, "smtpd_proxy_filter = 127.0.0.1:10025\n"))
    assert (st_.host, st_.port, st_.ehlo, st_.timeout, st_.speed_adjust) == (
        "127.0.0.1",
        10025,
        "h.example",
        100.0,
        False,
    )
    st_ = settings(
        config(
            tmp_path,
            "smtpd_proxy_filter = unix:p\nsmtpd_proxy_options = speed_adjust\n"
            "smtpd_proxy_ehlo = front.example\nsmtpd_proxy_timeout = 5s\n",
        )
    )
    assert (st_.path, st_.ehlo, st_.timeout, st_.speed_adjust) == (
        f"{tmp_path}/q/p",
        "front.example",
        5.0,
        True,
    )


def test_bad_filter_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError):
        settings(config(tmp_path, "smtpd_proxy_filter = nowhere\n"))
