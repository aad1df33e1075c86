"""egress_pool_header: cleanup removes the pool header and keeps its name as the
envelope attribute "pool", where egress pools are configured."""

POOLS = "egress_pools = inline:{ {bulk-eu.1 = ip1} }\n"  # cleanup only asks whether there are any

MESSAGE = (
    b"From: a@example.org\n"
    b"X-Pool:  Bulk-Eu.1 \n"
    b"Subject: hi\n"
    b"x-pool: second\n"
    b"\n"
    b"X-Pool: in the body\n"
)


def test_pool_header_is_removed_and_kept_as_attribute(instance):
    out = instance(POOLS).run(MESSAGE)
    assert out.msg.attrs["pool"] == "bulk-eu.1"
    assert b"pool:" not in out.content.split(b"\n\n", 1)[0].lower()  # every one removed
    assert out.content.endswith(b"\nX-Pool: in the body\n")  # the body is not headers


def test_folded_pool_header_is_unfolded(instance):
    out = instance(POOLS).run(b"X-Pool:\n\tnews\nSubject: s\n\nbody\n")
    assert out.msg.attrs["pool"] == "news"


def test_bad_pool_name_is_removed_and_ignored(instance):
    out = instance(POOLS).run(b"X-Pool: no spaces allowed\nX-Pool: good\nSubject: s\n\nbody\n")
    assert "pool" not in out.msg.attrs  # only the first header counts
    assert b"x-pool" not in out.content.lower()
    long = b"X-Pool: " + b"a" * 65 + b"\n\nbody\n"
    assert "pool" not in instance(POOLS).run(long).msg.attrs


def test_other_header_name(instance):
    out = instance(POOLS + "egress_pool_header = X-Mailer-Pool\n").run(
        b"X-Mailer-Pool: tx\nX-Pool: stays\n\nbody\n"
    )
    assert out.msg.attrs["pool"] == "tx"
    assert b"X-Pool: stays\n" in out.content
    assert b"X-Mailer-Pool" not in out.content


def test_empty_header_parameter_strips_nothing(instance):
    out = instance(POOLS + "egress_pool_header =\n").run(b"X-Pool: bulk\n\nbody\n")
    assert "pool" not in out.msg.attrs
    assert b"X-Pool: bulk\n" in out.content


def test_without_pools_the_header_is_the_senders_own(instance):
    out = instance().run(b"X-Pool: bulk\n\nbody\n")
    assert "pool" not in out.msg.attrs
    assert b"X-Pool: bulk\n" in out.content
