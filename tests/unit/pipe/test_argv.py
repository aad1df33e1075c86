"""master.cf pipe attributes and command-line macro expansion."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.pipe.argv import (
    KNOWN_MACROS,
    PipeConfigError,
    compile_template,
    expand_argv,
    fold_address,
    parse_eol,
    parse_pipe_args,
    quote_local,
    render,
    split_localpart,
)


def test_attributes_parsed():
    a = parse_pipe_args(
        ["flags=FRq.", "user=nobody:nogroup", "size=1000", "eol=\\r\\n", "argv=/bin/x", "-f"]
    )
    assert (a.flags, a.user, a.group, a.size_limit, a.eol) == (
        "FRq.",
        "nobody",
        "nogroup",
        1000,
        b"\r\n",
    )
    assert a.argv == ["/bin/x", "-f"]


def test_everything_after_argv_belongs_to_the_command():
    a = parse_pipe_args(["argv=/bin/x", "user=root", "flags=zz"])
    assert a.argv == ["/bin/x", "user=root", "flags=zz"] and a.user == ""


def test_braced_word_is_one_argument():
    a = parse_pipe_args(["user=nobody", "argv=/bin/x", "{ two words }"])
    assert a.argv == ["/bin/x", "two words"]


@pytest.mark.parametrize(
    "args, problem",
    [
        (["user=nobody"], "missing argv="),
        (["flags=Fz", "argv=/bin/x"], 'unknown flag "z"'),
        (["size=big", "argv=/bin/x"], "bad size limit"),
        (["colour=red", "argv=/bin/x"], 'unknown command attribute "colour"'),
        (["justaword", "argv=/bin/x"], "expected name=value"),
        (["argv=/bin/x", "${nosuch}"], "unknown macro ${nosuch}"),
        (["argv="], "names no command"),
        (["chroot=/x", "argv=/bin/x"], "not supported"),
    ],
)
def test_bad_attributes(args, problem):
    with pytest.raises(PipeConfigError, match=re.escape(problem)):
        parse_pipe_args(args)


def test_eol_escapes():
    assert parse_eol("\\r\\n") == b"\r\n"
    assert parse_eol("\\015\\012") == b"\r\n"
    assert parse_eol("a\\\\b\\t") == b"a\\b\t"


def test_macro_forms():
    values = {"sender": "s@x", "nexthop": "h"}
    assert render(compile_template("-f$sender"), values) == "-fs@x"
    assert render(compile_template("${sender}/$(nexthop)"), values) == "s@x/h"
    assert render(compile_template("$$sender"), values) == "$sender"
    assert render(compile_template("cost $-x $"), values) == "cost $-x $"


def test_conditional_macros():
    t = compile_template("${sender?-f}${sender:none}${sender?<$sender>}")
    assert render(t, {"sender": "s@x"}) == "-f<s@x>"
    assert render(t, {"sender": ""}) == "none"


def test_recipient_argument_repeats_per_recipient():
    a = parse_pipe_args(["argv=/bin/x", "-f", "${sender}", "--", "to=${recipient}"])
    argv = expand_argv(a.templates, {"sender": "s@x"}, [{"recipient": "a@y"}, {"recipient": "b@y"}])
    assert argv == ["/bin/x", "-f", "s@x", "--", "to=a@y", "to=b@y"]


def test_user_in_conditional_is_per_recipient():
    a = parse_pipe_args(["argv=/bin/x", "${sender?${user}}"])
    assert a.templates[1].per_rcpt


def test_quote_local():
    assert quote_local("plain.user") == "plain.user"
    assert quote_local("john doe") == '"john doe"'
    assert quote_local('a"b') == '"a\\"b"'
    assert quote_local(".lead") == '".lead"'
    assert quote_local("ünï") == "ünï"  # 8-bit transparent


def test_fold_address_flags():
    assert fold_address("Joe@Ex.COM", "h") == "Joe@ex.com"
    assert fold_address("Joe@Ex.COM", "u") == "joe@Ex.COM"
    assert fold_address("J D@Ex.COM", "huq") == '"j d"@ex.com'


def test_split_localpart():
    assert split_localpart("joe+ext@x.org", "+") == ("joe+ext", "joe", "ext", "x.org")
    assert split_localpart("joe-a+b@x.org", "+-") == ("joe-a+b", "joe", "a+b", "x.org")
    assert split_localpart("joe+ext@x.org", "") == ("joe+ext", "joe+ext", "", "x.org")
    assert split_localpart("+lead@x", "+") == ("+lead", "+lead", "", "x")


# ---- property: expansion against a simple regular-expression reference

NAMES = sorted(KNOWN_MACROS)
_REF = re.compile(r"\$\$|\$\{(\w+)\}|\$\((\w+)\)|\$(\w+)")


def reference_expand(text, values):
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return values.get(m.group(1) or m.group(2) or m.group(3), "")

    return _REF.sub(sub, text)


piece = st.one_of(
    st.text(alphabet="abc -=/@.", max_size=4),
    st.sampled_from(NAMES).map(lambda n: "${" + n + "}"),
    st.sampled_from(NAMES).map(lambda n: "$(" + n + ")"),
    st.sampled_from(NAMES).map(lambda n: "$" + n).map(lambda s: s + "/"),
    st.just("$$"),
)


@given(
    st.lists(piece, max_size=8).map("".join),
    st.dictionaries(st.sampled_from(NAMES), st.text(max_size=5)),
)
def test_expansion_matches_reference(text, values):
    assert render(compile_template(text), values) == reference_expand(text, values)
