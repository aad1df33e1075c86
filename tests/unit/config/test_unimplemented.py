"""Every declared parameter is read by the code or marked not implemented, never both.

A parameter counts as read when the source of mta (not params.py, not
the not-implemented list, not the validator, and never a docstring or a
comment) names it:

- as a whole string constant ("message_size_limit");
- as an f-string whose fixed text is most of the name
  (f"unverified_{kind}_tempfail_action");
- as the suffix handed to the smtp client's name builders p() and
  _param(), which prefix "smtp_" or "lmtp_";
- as the suffix of a TRANSPORT_suffix parameter (qmgr reads
  local_destination_concurrency_limit through "destination_concurrency_limit");
- as $name in the default of a parameter that is read (expansion reads it).
"""

from __future__ import annotations

import ast
import os
import re

import pytest

import mta
from mta.config.params import PARAMS, PER_TRANSPORT
from mta.config.unimplemented import AS_IF, REFUSED, UNIMPLEMENTED

ROOT = os.path.dirname(os.path.abspath(mta.__file__))
NOT_READERS = {"config/params.py", "config/unimplemented.py", "config/validate.py"}
NAME_BUILDERS = {"p": ("smtp", "lmtp"), "_param": ("smtp", "lmtp")}  # smtp/client.py
MIN_FIXED_TEXT = 6  # f-string fixed characters needed to count as naming a parameter
_REF_RE = re.compile(r"\$(?:([A-Za-z0-9_]+)|[{(]\s*([A-Za-z0-9_]+))")


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _scan_python(text: str, constants: set[str], patterns: set[str]) -> None:
    tree = ast.parse(text)
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs:
                constants.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            fixed = [v.value for v in node.values if isinstance(v, ast.Constant)]
            if sum(len(f) for f in fixed) >= MIN_FIXED_TEXT:
                patterns.add(
                    "".join(
                        re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z0-9_]+"
                        for v in node.values
                    )
                )
        elif isinstance(node, ast.Call):
            func = node.func
            fname = getattr(func, "id", None) or getattr(func, "attr", None)
            for prefix in NAME_BUILDERS.get(fname, ()):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        constants.add(f"{prefix}_{arg.value}")


def scan_source() -> tuple[set[str], set[str]]:
    """(string constants, f-string patterns) of every mta module that may read parameters."""
    constants: set[str] = set()
    patterns: set[str] = set()
    for top, _, files in os.walk(ROOT):
        for name in files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
            if rel in NOT_READERS:
                continue
            if name.endswith(".py"):
                with open(path, encoding="utf-8") as f:
                    _scan_python(f.read(), constants, patterns)
            elif name.endswith(".pyx"):
                with open(path, encoding="utf-8") as f:
                    constants.update(re.findall(r"[\"']([a-z0-9_]+)[\"']", f.read()))
    return constants, patterns


def read_parameters() -> set[str]:
    constants, patterns = scan_source()
    compiled = [re.compile(p) for p in patterns]
    read = set()
    for name in PARAMS:
        if name in constants or any(p.fullmatch(name) for p in compiled):
            read.add(name)
        elif any(name.endswith("_" + s) and s in constants for s in PER_TRANSPORT):
            read.add(name)
    todo = list(read)
    while todo:  # a parameter that is read reads the ones its default expands
        for m in _REF_RE.finditer(PARAMS[todo.pop()].default):
            ref = m.group(1) or m.group(2)
            if ref in PARAMS and ref not in read:
                read.add(ref)
                todo.append(ref)
    return read


@pytest.fixture(scope="module")
def read():
    return read_parameters()


def test_every_parameter_is_read_or_marked_not_implemented(read):
    missing = sorted(set(PARAMS) - read - UNIMPLEMENTED)
    assert not missing, (
        "declared but neither read by the code nor in mta/config/unimplemented.py: "
        + ", ".join(missing)
    )


def test_no_parameter_marked_not_implemented_is_read(read):
    both = sorted(UNIMPLEMENTED & read)
    assert not both, "read by the code, yet marked not implemented: " + ", ".join(both)


def test_every_name_marked_not_implemented_is_declared():
    assert not sorted(UNIMPLEMENTED - set(PARAMS))
    assert set(AS_IF) <= UNIMPLEMENTED
    assert set(REFUSED) <= UNIMPLEMENTED


def test_the_scan_sees_reads_and_ignores_docstrings_and_comments():
    constants, patterns = set(), set()
    _scan_python(
        '"""biff is documented here"""\n'
        "# debug_peer_list in a comment\n"
        "def f(cfg, kind):\n"
        '    """smtpd_noop_commands in a docstring"""\n'
        '    return cfg.get("message_size_limit"), cfg.get(f"unverified_{kind}_reject_code")\n',
        constants,
        patterns,
    )
    assert "message_size_limit" in constants
    assert {"biff", "debug_peer_list", "smtpd_noop_commands"}.isdisjoint(constants)
    assert any(re.fullmatch(p, "unverified_sender_reject_code") for p in patterns)


def test_dollar_names_in_defaults_of_read_parameters_count_as_read(read):
    # nothing reads reject_tempfail_action by name; unknown_address_tempfail_action
    # (read by smtpd) defaults to $reject_tempfail_action
    assert "unknown_address_tempfail_action" in read
    assert "reject_tempfail_action" in read
