"""cleanup.mime_strict - strict_7bit_headers, strict_8bitmime_body, strict_mime_encoding_domain

SYNOPSIS
    from mta.cleanup.mime_strict import StrictMime
    strict = StrictMime(cfg)                 # once per process; false when all are off
    check = strict.start(report)             # one message; report(detail, line) logs
    check.header(hid, raw)                   # each header, primary or of a body part
    check.headers_done()                     # an entity's headers ended
    check.entity_start()                     # a body part or attached message begins
    check.epilog()                           # after a multipart's closing boundary
    check.body_line(line)                    # each body line that is no boundary
    check.error                              # "5.6.0 ..." once something was wrong

DESCRIPTION
    The MIME checks Postfix's cleanup makes when asked, with its
    replies. strict_8bitmime turns on the first two:

        strict_7bit_headers    a header (primary, of a body part or of an
                               attached message) with 8-bit bytes:
                               "5.6.0 improper use of 8-bit data in
                               message header"
        strict_8bitmime_body   8-bit bytes in the body of an entity whose
                               Content-Transfer-Encoding is 7bit, given
                               or by default (a multipart's prolog and
                               epilog count as 7bit; base64 and
                               quoted-printable parts are not checked):
                               "5.6.0 improper use of 8-bit data in
                               message body"
        strict_mime_encoding_domain
                               a multipart/* or message/rfc822 entity
                               with base64 or quoted-printable, or a
                               message/partial or message/external-body
                               that is not 7bit: "5.6.0 invalid message/*
                               or multipart/* encoding domain"

    Each kind of error is reported once per message through report()
    (cleanup logs "QUEUEID: reject: mime-error ..."); the first one is
    the message's reply, unless something else (a header_checks REJECT,
    say) already refused it. An unknown Content-Transfer-Encoding counts
    as 7bit, as in Postfix.

    The checks are off with disable_mime_input_processing, and cleanup
    does not start them for mail the system makes itself (notices).

SECURITY
    Reads untrusted message headers and body lines; keeps a few words of
    state per message.

STANDARDS
    RFC 2045 section 6 (Content-Transfer-Encoding), RFC 2046 section
    5.1.1 and 5.2 (encodings of multipart and message entities), RFC
    6152 (8BITMIME).

SEE ALSO
    postconf(5) strict_7bit_headers, strict_8bitmime, strict_8bitmime_body,
    strict_mime_encoding_domain; mta/cleanup/cleanup.py
"""

from __future__ import annotations

from collections.abc import Callable

from mta.cleanup import header_parse as H
from mta.cleanup.mime import parse_content_type

DETAIL_8BIT_HEADER = "5.6.0 improper use of 8-bit data in message header"
DETAIL_8BIT_BODY = "5.6.0 improper use of 8-bit data in message body"
DETAIL_DOMAIN = "5.6.0 invalid message/* or multipart/* encoding domain"

ENC_7BIT = "7bit"  # the default transfer encoding
# transfer encoding -> its domain (RFC 2045 section 6.1)
ENCODING_DOMAINS = {
    "7bit": "7bit",
    "8bit": "8bit",
    "binary": "binary",
    "base64": "7bit",
    "quoted-printable": "7bit",
}
# message subtypes that must be sent 7bit (RFC 2046 section 5.2.2, 5.2.3)
SEVEN_BIT_MESSAGES = frozenset({"message/partial", "message/external-body"})


def parse_encoding(value: bytes) -> str:
    """The transfer encoding a Content-Transfer-Encoding value names; 7bit when unknown."""
    word = value.split(b"(", 1)[0].strip().lower().decode("ascii", "replace")
    return word if word in ENCODING_DOMAINS else ENC_7BIT


def domain_error(kind: str, encoding: str) -> bool:
    """Is encoding wrong for an entity of type kind (lower-case type/subtype)?"""
    if kind in SEVEN_BIT_MESSAGES:
        return ENCODING_DOMAINS[encoding] != ENC_7BIT
    if kind == "message/rfc822" or kind.startswith("multipart/"):
        return ENCODING_DOMAINS[encoding] != encoding  # a transformation, not a domain
    return False


class StrictMime:
    """Which strict checks main.cf asks for."""

    def __init__(self, cfg) -> None:
        both = cfg.get_bool("strict_8bitmime")
        self.headers = both or cfg.get_bool("strict_7bit_headers")
        self.body = both or cfg.get_bool("strict_8bitmime_body")
        self.domain = cfg.get_bool("strict_mime_encoding_domain")
        if cfg.get_bool("disable_mime_input_processing"):
            self.headers = self.body = self.domain = False

    def __bool__(self) -> bool:
        return self.headers or self.body or self.domain

    def start(self, report: Callable[[str, bytes], None]) -> StrictCheck:
        return StrictCheck(self, report)


class StrictCheck:
    """The strict checks of one message; see the module docstring."""

    def __init__(self, strict: StrictMime, report: Callable[[str, bytes], None]) -> None:
        self.strict = strict
        self.report = report
        self.error: str | None = None
        self.reported: set[str] = set()
        self.kind = ""  # the current entity's lower-case type/subtype
        self.encoding = ENC_7BIT  # ... and its transfer encoding
        self.body_encoding = ENC_7BIT  # the encoding of the body lines now read

    def _fail(self, detail: str, line: bytes) -> None:
        if detail in self.reported:
            return
        self.reported.add(detail)
        self.report(detail, line)
        if self.error is None:
            self.error = detail

    def header(self, hid: int, raw: bytes) -> None:
        if self.strict.headers and not raw.isascii():
            self._fail(DETAIL_8BIT_HEADER, raw)
        if hid == H.HDR_CONTENT_TYPE:
            self.kind = parse_content_type(raw[raw.find(b":") + 1 :])[0]
        elif hid == H.HDR_CONTENT_TRANSFER_ENCODING:
            self.encoding = parse_encoding(H.unfold(raw[raw.find(b":") + 1 :]))

    def headers_done(self) -> None:
        if self.strict.domain and domain_error(self.kind, self.encoding):
            self._fail(DETAIL_DOMAIN, self.encoding.encode())
        # a multipart's prolog is read as 7bit text, whatever it claims
        self.body_encoding = ENC_7BIT if self.kind.startswith("multipart/") else self.encoding

    def entity_start(self) -> None:
        self.kind, self.encoding = "", ENC_7BIT

    def epilog(self) -> None:
        self.body_encoding = ENC_7BIT

    def body_line(self, line: bytes) -> None:
        if self.strict.body and self.body_encoding == ENC_7BIT and not line.isascii():
            self._fail(DETAIL_8BIT_BODY, line)
