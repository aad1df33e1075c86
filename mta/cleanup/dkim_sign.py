"""cleanup.dkim_sign - which keys sign a message, and the signature in its queue file

SYNOPSIS
    from mta.cleanup.dkim_sign import DkimSigning
    dkim = DkimSigning(cfg)                      # once per cleanup process
    job = dkim.start(queue_id, sender, header_lines, now)  # None: no key signs it
    offsets = writer.reserve_lines(job.placeholder_lines())  # job.names: the keys
    job.body(data)                               # the body as written, in any pieces
    for offset, line in zip(offsets, job.signed_lines()):  # after the last piece
        writer.patch(offset, line)

DESCRIPTION
    dkim_signing_table is looked up with the envelope sender as
    sender_dependent_relayhost_maps is (user+ext@domain, user@domain,
    @domain), then with the From: address; its value names one or more
    keys, separated by commas, one signature each (two keys of a domain,
    RSA and Ed25519, sign twice). dkim_key_table gives each key name
    "domain:selector:/path/to/key.pem", OpenDKIM's KeyTable form. With
    either table empty nothing is signed.

    The signature goes on top of the message, above cleanup's Received:
    header, as a milter would put it. Its lines are written as the first
    content lines with zeros where the body hash and the signature go
    (common/dkim.Signer.placeholders), then overwritten in place when
    the body has been read, before the queue file is sealed: the body is
    hashed as it is written and never held.

    What is signed is what the smtp client will send: the headers after
    header_checks and rewriting, the added headers, the body after
    body_checks, with header and body lines longer than
    smtp_line_length_limit broken as the client breaks them
    (common/long_lines.py). A message whose body the smtp client
    converts to 7 bits for a server without 8BITMIME, or whose headers
    smtp_generic_maps rewrites, is signed again by the client with the
    same keys (common/dkim_keys.resign).

    A key file that cannot be used (see common/dkim.load_key) or a key
    name the key table lacks: with dkim_failure_action = defer (the
    default) the message is not queued and the client hears 451 4.7.0,
    with the reason in the log; with send it goes out unsigned and the
    log says so. A DKIM-Signature the message already has with the
    d= and s= of a key that signs it is ours from an earlier pass (a
    message requeued with postsuper -r, or back from a content filter):
    it is dropped and replaced, never stacked. A table that does not answer is a temporary lookup
    failure, as for every cleanup table. Keys are read once and again
    only when their file changes (common/dkim_keys.py). The key names
    are kept in the queue file (attribute dkim_keys) for the client that
    signs again.

SECURITY
    Reads private key files (common/dkim refuses those open to others);
    sees untrusted headers and body only as bytes to hash.
"""

from __future__ import annotations

from mta import log
from mta.common.addr_find import find_address
from mta.common.dkim import DkimError, Signer
from mta.common.dkim_keys import KeyTable, SigningSettings
from mta.common.dkim_verify import tag_list
from mta.common.long_lines import fold_long_lines
from mta.config.errors import ConfigError
from mta.maps import Maps
from mta.trivial_rewrite.address import parse_addr_list

FAILURE_ACTIONS = ("defer", "send")


class DkimSigning:
    """Per-process DKIM settings and the keys read so far."""

    def __init__(self, cfg) -> None:
        self.key_table = KeyTable(cfg)
        self.signing_table = Maps.from_param(cfg, "dkim_signing_table")
        self.enabled = self.key_table.enabled and bool(self.signing_table)
        self.settings = SigningSettings.from_config(cfg)
        self.on_failure = cfg.get("dkim_failure_action").strip().lower()
        self.delimiter = cfg.get("recipient_delimiter")
        # body lines are hashed as the smtp client will break them
        self.line_limit = cfg.get_int("smtp_line_length_limit")
        if self.on_failure not in FAILURE_ACTIONS:
            raise ConfigError(
                f"expected {' or '.join(FAILURE_ACTIONS)}, not {self.on_failure!r}",
                param="dkim_failure_action",
            )
        try:
            self.settings.signer([])
        except DkimError as exc:
            raise ConfigError(str(exc), param="dkim_canonicalization") from exc

    def keys_for(self, sender: str, from_addr: str | None) -> list[str]:
        """The names of the keys that sign mail from sender (else from_addr); [] for none.

        MapRetry from the table."""
        value = None
        for addr in (sender, from_addr):
            if addr and "@" in addr:
                value = find_address(self.signing_table, addr, self.delimiter, local=False)
                if value is not None:
                    break
        if value is None:
            return []
        return [n.strip() for n in value.split(",") if n.strip()]

    def start(self, queue_id: str, sender: str, headers: list[bytes], now: float):
        """The signing job of one message, None when no key signs it.

        DkimError when a key should sign it and cannot."""
        if not self.enabled:
            return None
        names = self.keys_for(sender, from_address(headers))
        if not names:
            return None
        keys = self.key_table.keys(names)
        ours = {(k.domain.lower(), k.selector.lower()) for k in keys}
        kept = [h for h in headers if _signed_by(h) not in ours]
        signer = self.settings.signer(keys)
        job = SigningJob(queue_id, signer, kept, now, self.line_limit)
        job.names = names
        job.kept = kept
        return job

    def failed(self, queue_id: str, exc: DkimError) -> bool:
        """Log a signing failure; True when the message must be deferred."""
        if self.on_failure == "defer":
            log.warning("%s: DKIM signing failed, message deferred: %s", queue_id, exc)
            return True
        log.warning("%s: DKIM signing failed, message sent unsigned: %s", queue_id, exc)
        return False


def _signed_by(raw: bytes) -> tuple[str, str] | None:
    """(d=, s=) of a DKIM-Signature header field, lower case; None for any other field."""
    name, colon, value = raw.partition(b":")
    if not colon or name.strip().lower() != b"dkim-signature":
        return None
    try:
        tags = tag_list(value)
    except ValueError:
        return None
    domain = tags.get("d", b"").decode("ascii", "replace").lower()
    return domain, tags.get("s", b"").decode("ascii", "replace").lower()


def from_address(headers: list[bytes]) -> str | None:
    """The first address of the message's From: header, if any."""
    for raw in headers:
        name, colon, value = raw.partition(b":")
        if colon and name.strip().lower() == b"from":
            found = parse_addr_list(value.replace(b"\n", b" "))
            return found[0] if found else None
    return None


def _as_sent(field: bytes, limit: int) -> bytes:
    """A header field (folds as LF) with its lines over limit broken as the client breaks them."""
    lines = field.split(b"\n")
    if limit <= 0 or all(len(line) <= limit for line in lines):
        return field
    return b"\n".join(fold_long_lines(lines, limit))


class SigningJob:
    """One message's signatures: body fed as written, then lines to patch in."""

    def __init__(
        self, queue_id: str, signer: Signer, headers: list[bytes], now: float, line_limit: int = 0
    ) -> None:
        self.queue_id = queue_id
        self.line_limit = line_limit
        self.names: list[str] = []  # the key names, one signature each, in order
        self.kept = headers  # the header fields that stay: less our own old signatures
        self.signer = signer
        # header lines too are signed as the smtp client will break them
        self.headers = [_as_sent(h, line_limit) for h in headers]
        self.now = int(now)
        self.partial = b""
        self.reserved = b"\r\n".join(signer.placeholders(headers, self.now)).split(b"\r\n")

    def placeholder_lines(self) -> list[bytes]:
        return self.reserved

    def body(self, data: bytes) -> None:
        """Body content as written to the queue file (lines end in LF or CRLF)."""
        if self.partial:
            data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self._line(line[:-1] if line.endswith(b"\r") else line)

    def _line(self, line: bytes) -> None:
        if 0 < self.line_limit < len(line):
            for piece in fold_long_lines([line], self.line_limit):
                self.signer.body_line(piece)
        else:
            self.signer.body_line(line)

    def signed_lines(self) -> list[bytes]:
        """The DKIM-Signature lines, each as long as its placeholder."""
        if self.partial:
            tail = self.partial[:-1] if self.partial.endswith(b"\r") else self.partial
            self._line(tail)  # a last line without a line end still goes out
            self.partial = b""
        fields = self.signer.sign(self.headers, self.now)
        lines = b"\r\n".join(fields).split(b"\r\n")
        if [len(x) for x in lines] != [len(x) for x in self.reserved]:
            raise DkimError("signature layout changed while signing")  # a bug, never data
        return lines
