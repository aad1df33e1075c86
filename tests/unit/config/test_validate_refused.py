"""mta check on settings mta refuses rather than serve with less: the upstream proxy protocol
(haproxy) in front of smtpd and postscreen, which mta does not speak (every session would
begin with the proxy's header read as a command, and the real client address would be
lost), and local_login_sender_maps, a restriction mta does not apply."""

import pytest


def test_postfixs_defaults_are_quiet(check):
    main = (
        "smtpd_upstream_proxy_protocol =\nsmtpd_upstream_proxy_timeout = 5s\n"
        "postscreen_upstream_proxy_protocol =\npostscreen_upstream_proxy_timeout = 5s\n"
    )
    assert check(main) == []


@pytest.mark.parametrize(
    "name", ["smtpd_upstream_proxy_protocol", "postscreen_upstream_proxy_protocol"]
)
def test_a_proxy_protocol_is_refused(check, tmp_path, name):
    ((text, fatal),) = check(f"{name} = haproxy\n")
    assert fatal and f"{tmp_path / 'main.cf'}, line 1: {name} = haproxy" in text
    assert "refused" in text


def test_a_proxy_timeout_alone_is_warned(check):
    ((text, fatal),) = check("smtpd_upstream_proxy_timeout = 10s\n")
    assert not fatal and "smtpd_upstream_proxy_timeout is not implemented" in text


def test_local_login_sender_maps_is_refused_unless_at_its_default(check):
    """A restriction on sendmail -f that mta does not apply is refused; Postfix's default
    (every login may use any sender) is what mta does, so it is quiet."""
    assert check("local_login_sender_maps = static:*\n") == []
    ((text, fatal),) = check("local_login_sender_maps = inline:{ alice=alice@example.com }\n")
    assert fatal and "local_login_sender_maps" in text and "refused" in text
