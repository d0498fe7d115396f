"""The e-mail channel: one announcement to one guardian's address over SMTP, through a small connection pool.

Rendering. `EmailChannel.render(message)` builds the exact `EmailMessage` that is sent: a UTF-8 subject
("<kind>: <title>", the same head as the chat text), From with the school's display name, To with the
guardian's name, a plain-text part and a simple HTML alternative readable on a phone (school, class, kind,
title, text, an "Ознакомлен" button when the school asks for an acknowledgement, a footer saying why the
parent got the letter and how to unsubscribe), and the deliverability headers mail.ru and Yandex look at:
List-Unsubscribe (mailto: plus the one-click URL), List-Unsubscribe-Post, List-Id, X-Mailru-Msgtype,
Feedback-ID and Auto-Submitted. The letter is 7-bit clean (RFC 2047 headers, base64 or 7bit parts), so it
needs no 8BITMIME from the server.

Speed. A fan-out sends one announcement to thousands of guardians, and `email.policy.SMTP` parsing and refolding
every header of every letter was most of the cost. So the part every recipient shares (Subject, From, Reply-To,
List-Id and the other constant headers, folded by `email.policy.SMTP`, and the cleaned content) is rendered once
per announcement and account and kept in a small LRU cache; each letter then only stamps in its own To,
Date, Message-ID, List-Unsubscribe(-Post) and the body with the guardian's name and links, and is written out
as bytes directly. `render()` parses exactly those bytes back, so it shows what `send` transmits.

Nothing a user typed can add a header or a recipient: control characters in titles and names become spaces
before they reach a header, addresses are checked against a strict addr-spec grammar (an invalid target is a
`PermanentError`), and the envelope always has exactly one recipient, `Message.target`.

Deduplication. The Message-ID is derived from `Message.key` alone, `<zvonok.{slug}.{digest}@{domain}>`, so
every send of the same delivery, from any process, carries the same Message-ID.

Connections. Each SMTP account has a pool of at most `pool_size` aiosmtplib connections, opened lazily
(connect, EHLO, STARTTLS when configured, AUTH) and reused for many messages; a connection is closed after
`max_messages_per_connection` messages, after any error that leaves it in doubt, after a 421, and on
`aclose()`. A failed RCPT or DATA command is followed by RSET so that the connection can be reused. When a
pooled connection turns out to be dead at MAIL FROM - before anything of the message left us - the send is
retried once, at once, on a new connection (tenacity); every other retry is the dispatcher's business.

Errors (RFC 5321): a 4xx reply anywhere is a `TransientError` (`RateLimited` when the reply talks about rates
or limits), a 5xx a `PermanentError` (a 5xx for the recipient is a bounce, code "smtp:550" etc.), a refused
login (535 and other 5xx to AUTH, or a 530 "authentication required") a `CredentialError`. A refused
connection, a reset or a timeout before the end of the message is transient ("smtp:connect",
"smtp:disconnected", "smtp:timeout"; TLS problems "smtp:tls"). If the connection breaks or times out after
the whole message and the final dot were written but before the server's reply, the server may have queued
the message: that is an `UnknownOutcome`. E-mail has no way to ask the server afterwards (`find_sent` stays
None), so the dispatcher sends again; in that narrow case the parent can get the letter twice, with the same
Message-ID, which lets mail clients that deduplicate show it once.

Passwords are never logged and recipients appear in logs only masked ("i***@mail.ru"); error texts (Russian,
for staff reports) quote the server's reply with every address in it masked.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email as email_pkg
import hashlib
import html
import logging
import re
import socket
import ssl
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, formataddr
from typing import Literal, NamedTuple, cast
from urllib.parse import quote, urlsplit

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from adapters.base import (
    AdapterError,
    Channel,
    CredentialError,
    Message,
    PermanentError,
    RateLimited,
    Sent,
    TransientError,
    UnknownOutcome,
    before_request,
)

log = logging.getLogger(__name__)

_Stage = Literal["connect", "tls", "auth", "mail", "rcpt", "data"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailSettings:
    """How to reach one SMTP server (a school's relay or a Russian ESP) and what to put in From."""

    host: str
    port: int
    from_address: str
    from_name: str = ""  # display name in From; empty: the message's school
    reply_to: str = ""  # also the mailto: of List-Unsubscribe; empty: from_address
    use_tls: bool = False  # implicit TLS (port 465)
    starttls: bool = False  # STARTTLS is required; no fallback to plain text
    username: str = ""
    password: str = field(default="", repr=False)
    pool_size: int = 4
    timeout: float = 30.0  # per SMTP command, including the reply to the final dot
    ssl_context: ssl.SSLContext | None = None
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's
    message_id_domain: str = ""  # empty: the domain of from_address
    helo_name: str = ""  # empty: this host's FQDN
    max_messages_per_connection: int = 100

    def __post_init__(self) -> None:
        if self.use_tls and self.starttls:
            raise ValueError("use_tls (implicit TLS) and starttls exclude each other")
        if self.ssl_context is not None and self.ca_file is not None:
            raise ValueError("give ssl_context or ca_file, not both")
        if self.pool_size < 1 or self.max_messages_per_connection < 1 or self.timeout <= 0:
            raise ValueError("pool_size, max_messages_per_connection and timeout must be positive")
        if self.password and not self.username:
            raise ValueError("a password without a username")
        _addr_spec(self.from_address)
        if self.reply_to:
            _addr_spec(self.reply_to)
        if self.message_id_domain and not _DOMAIN.fullmatch(_ascii_domain(self.message_id_domain)):
            raise ValueError("message_id_domain is not a domain name")


class EmailChannel(Channel):
    """Sends `Message`s by SMTP. One settings object for every account, or a mapping account -> settings."""

    name = "email"

    def __init__(
        self,
        settings: EmailSettings | Mapping[str, EmailSettings],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._single = settings if isinstance(settings, EmailSettings) else None
        self._accounts: dict[str, EmailSettings] = {} if isinstance(settings, EmailSettings) else dict(settings)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pools: dict[str, _Pool] = {}
        self._templates: OrderedDict[tuple[str, ...], _Template] = OrderedDict()
        self._heads: OrderedDict[tuple[str, ...], _Head] = OrderedDict()
        self._closed = False

    def render(self, message: Message) -> EmailMessage:
        """The exact message `send` would transmit for `message` (PermanentError for an invalid target)."""
        settings = self._settings_for(message.account)
        data = self._letter(message, settings, _recipient(message.target))
        return email_pkg.message_from_bytes(data, policy=_POLICY)

    def _letter(self, message: Message, settings: EmailSettings, target: str) -> bytes:
        """The letter's bytes: the announcement's shared part from a small LRU cache, the recipient's stamped in."""
        key = (
            message.account,
            message.school_id,
            message.school,
            message.kind,
            message.kind_label,
            message.title,
            message.text,
            message.audience,
            message.reference,
        )
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = _template(message, self._head(message, settings))
            if len(self._templates) > _TEMPLATES_MAX:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return _stamp(template, message, target, self._clock())

    def _head(self, message: Message, settings: EmailSettings) -> _Head:
        """The announcement's header lines, rendered once for all its classes (folding them with the standard
        library's header classes took two thirds of a letter's time when each class's letters rendered them)."""
        key = (message.account, message.school, message.kind, message.kind_label, message.title)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = _head(message, settings)
            if len(self._heads) > _TEMPLATES_MAX:
                self._heads.popitem(last=False)
        else:
            self._heads.move_to_end(key)
        return head

    async def send(self, message: Message) -> Sent:
        if self._closed:
            raise RuntimeError("the e-mail channel is closed")
        settings = self._settings_for(message.account)
        target = _recipient(message.target)
        letter = self._letter(message, settings, target)
        letter_id = message_id(message.key, _id_domain(settings))
        pool = self._pool_for(message.account, settings)
        try:
            await _deliver(pool, _addr_spec(settings.from_address), target, letter, message)
        except AdapterError as error:
            log.info("e-mail delivery %s to %s failed: %s", message.key, _mask(target), error.code)
            raise
        log.debug("e-mail delivery %s to %s accepted as %s", message.key, _mask(target), letter_id)
        return Sent(provider_id=letter_id)

    async def aclose(self) -> None:
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.aclose() for pool in pools))

    def _settings_for(self, account: str) -> EmailSettings:
        if self._single is not None:
            return self._single
        try:
            return self._accounts[account]
        except KeyError:
            raise CredentialError(
                f"Для учётной записи «{_one_line(account)}» не настроена отправка почты (SMTP).",
                code="smtp:account",
            ) from None

    def _pool_for(self, account: str, settings: EmailSettings) -> _Pool:
        key = "" if self._single is not None else account
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(settings)
        return pool


# -- rendering -----------------------------------------------------------------------------------------------


class _VerbatimHeader(UnstructuredHeader):
    """An ASCII header built here (List-Unsubscribe, List-Id, Message-ID), written as it is.

    The default folder turns a token longer than a line into RFC 2047 encoded words, which breaks a URL or a
    msg-id; this one only folds at spaces and never encodes.
    """

    name: str  # BaseHeader's property; the registry mixes BaseHeader in

    def fold(self, *, policy: Policy) -> str:
        return _fold_verbatim(self.name, str(self), str(policy.linesep))


def _fold_verbatim(name: str, value: str, linesep: str = "\r\n") -> str:
    """`name: value` folded at spaces only, never encoded (for the ASCII headers built here)."""
    line = f"{name}:"
    lines: list[str] = []
    for word in value.split(" "):
        if len(line) > len(name) + 1 and len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return linesep.join(lines) + linesep


_HEADERS = HeaderRegistry()
for _name in ("list-unsubscribe", "list-id", "message-id"):
    _HEADERS.map_to_type(_name, cast("type[BaseHeader]", _VerbatimHeader))
_POLICY = email_policy.SMTP.clone(cte_type="7bit", header_factory=_HEADERS)


_TEMPLATES_MAX = 128  # (announcement, class) letters and announcements whose shared parts are kept rendered


class _Head(NamedTuple):
    """The constant header lines of an announcement's letters from one account (Subject, From, Reply-To,
    Auto-Submitted, List-Id, X-Mailru-Msgtype, Feedback-ID), folded and RFC 2047-encoded by `email.policy.SMTP`."""

    lines: str
    domain: str
    unsubscribe_mailbox: str


@dataclass(frozen=True, slots=True)
class _Template:
    """What every letter of one announcement from one account to one class shares, rendered once: the
    announcement's `head`, and the cleaned visible content (with the class) whose recipient's fields (name, ack
    and unsubscribe links) are left empty, to be filled per letter."""

    head: _Head
    parts: _Parts


def _fold_std(name: str, value: object) -> str:
    """One header line as `email.policy.SMTP` (with the verbatim headers above) writes it."""
    if isinstance(value, str) and len(value.splitlines()) > 1:
        raise ValueError("a header value with a line break")
    return str(_POLICY.header_factory(name, value).fold(policy=_POLICY))


def _id_domain(settings: EmailSettings) -> str:
    return _ascii_domain(settings.message_id_domain or settings.from_address.rpartition("@")[2])


def _head(message: Message, settings: EmailSettings) -> _Head:
    """The header lines every letter of the announcement from this account shares, whatever its class."""
    school = _one_line(message.school)
    kind = _one_line(message.kind_label)
    title = _one_line(message.title)
    domain = _id_domain(settings)
    reply_to = _addr_spec(settings.reply_to) if settings.reply_to else ""
    account = _slug(message.school_id, 40) or _slug(message.account, 40) or "school"
    msgtype = re.sub(r"[^A-Za-z0-9]", "", message.kind)[:32] or "announcement"
    subject = f"{kind}: {title}" if kind and title else title or kind or "Сообщение школы"
    sender = Address(display_name=_one_line(settings.from_name) or school, addr_spec=_addr_spec(settings.from_address))
    head = [_fold_std("Subject", subject), _fold_std("From", sender)]
    if reply_to:
        head.append(_fold_std("Reply-To", reply_to))
    head += [
        "Auto-Submitted: auto-generated\r\n",
        _fold_verbatim("List-Id", f"<{account}.zvonok.{domain}>"),
        _fold_std("X-Mailru-Msgtype", msgtype),
        _fold_std("Feedback-ID", f"{msgtype}:{account}:zvonok"),
    ]
    return _Head("".join(head), domain, reply_to or _addr_spec(settings.from_address))


def _template(message: Message, head: _Head) -> _Template:
    parts = _Parts(
        school=_one_line(message.school),
        kind=_one_line(message.kind_label),
        audience=_one_line(message.audience),
        title=_one_line(message.title),
        name="",
        text=_body_text(message.text),
        reference=_one_line(message.reference),
        ack_url="",
        unsubscribe_url="",
        urgent=message.urgent,
    )
    return _Template(head, parts)


def _stamp(template: _Template, message: Message, target: str, now: datetime) -> bytes:
    """One recipient's letter: the template plus To, Date, Message-ID, List-Unsubscribe and the body."""
    name = _one_line(message.recipient_name)
    unsubscribe_url = _web_url(message.unsubscribe_url)
    parts = dataclasses.replace(
        template.parts, name=name, ack_url=_web_url(message.ack_url), unsubscribe_url=unsubscribe_url
    )
    plain_cte, plain = _encode_text(parts.plain())
    html_cte, html_body = _encode_text(parts.html())
    mailto = f"mailto:{template.head.unsubscribe_mailbox}?subject={quote('unsubscribe ' + message.key, safe='')}"
    head = [
        template.head.lines,
        _to_header(name, target),
        f"Date: {format_datetime(now)}\r\n",
        _fold_verbatim("Message-ID", message_id(message.key, template.head.domain)),
        _fold_verbatim("List-Unsubscribe", ", ".join(f"<{uri}>" for uri in (mailto, unsubscribe_url) if uri)),
    ]
    if unsubscribe_url:
        head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    boundary = _boundary(message.key, plain, html_body)
    head += [
        "MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n',
        "Content-Language: ru\r\n",
        "\r\n",
    ]
    for subtype, cte, payload in (("plain", plain_cte, plain), ("html", html_cte, html_body)):
        head += [
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n',
            f"Content-Transfer-Encoding: {cte}\r\n\r\n",
            payload,
            "\r\n",
        ]
    head.append(f"--{boundary}--\r\n")
    return "".join(head).encode("ascii")


def _to_header(name: str, target: str) -> str:
    """To with the guardian's name: an RFC 2047 word (or a quoted ASCII name) when it fits on one line."""
    if not name:
        return f"To: {target}\r\n"
    if "=?" not in name:
        line = f"To: {formataddr((name, target), 'utf-8')}"
        if len(line) <= 78:
            return line + "\r\n"
    # A long name, or one that looks like an encoded word: the whole name as RFC 2047 words, folded between them,
    # so that a reader decodes exactly the name (and never an address hidden in an encoded word of it).
    return f"To: {_encoded_words(name)}\r\n <{target}>\r\n"


def _encoded_words(text: str) -> str:
    """`text` as RFC 2047 "B" words of its UTF-8, folded between them, each of at most 45 bytes (a 72-character
    word: with "To: " the first line stays within 78). Words of the text end where it has a space (the space
    encoded at the end of one), so a reader that joins encoded words, as RFC 2047 says, and one that puts a space
    between them (Python's own parser) both show every word of a name whole; only a word longer than a chunk
    is cut, never inside a character."""
    chunks: list[bytes] = []
    chunk = b""
    for word in re.findall(r"\S+\s*|\s+", text):
        encoded = word.encode("utf-8", errors="replace")
        if chunk and len(chunk) + len(encoded) > 45:
            chunks.append(chunk)
            chunk = b""
        if len(encoded) <= 45 - len(chunk):
            chunk += encoded
            continue
        for ch in word:  # a word longer than a chunk: cut between its characters
            piece = ch.encode("utf-8", errors="replace")
            if len(chunk) + len(piece) > 45:
                chunks.append(chunk)
                chunk = b""
            chunk += piece
    chunks.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks)


def _encode_text(text: str) -> tuple[str, str]:
    """A text part's Content-Transfer-Encoding and body, CRLF line ends: 7bit when it is short-lined ASCII,
    else base64 of its UTF-8 (the letter stays 7-bit clean)."""
    lines = text.splitlines()
    if text.isascii() and all(len(line) <= 78 for line in lines):
        return "7bit", "\r\n".join(lines) + "\r\n"
    encoded = base64.b64encode(("\r\n".join(lines) + "\r\n").encode("utf-8")).decode("ascii")
    return "base64", "".join(encoded[i : i + 76] + "\r\n" for i in range(0, len(encoded), 76))


def _boundary(key: str, *bodies: str) -> str:
    """The multipart boundary: derived from the delivery key (a resend is the same letter), absent from the parts."""
    token = hashlib.sha256(("boundary:" + key).encode("utf-8", errors="surrogatepass")).hexdigest()[:24]
    boundary = f"=_zvonok_{token}"
    while any(boundary in body for body in bodies):
        boundary += "_"
    return boundary


def message_id(key: str, domain: str) -> str:
    """The Message-ID of the delivery `key`: the same for every send of it, different for every other key."""
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()[:20]
    slug = _slug(key, 32)
    return f"<zvonok.{slug + '.' if slug else ''}{digest}@{domain}>"


@dataclass(frozen=True, slots=True)
class _Parts:
    """The visible content of one letter, already cleaned, as plain text and as HTML."""

    school: str
    kind: str
    audience: str
    title: str
    name: str
    text: str
    reference: str
    ack_url: str
    unsubscribe_url: str
    urgent: bool

    def why(self) -> str:
        where = f" ({self.school})" if self.school else ""
        return (
            f"Вы получили это письмо, потому что ваш адрес указан как контактный в школе{where}: "
            "школа дублирует по почте сообщения официального чата класса тем, кого в чате нет."
        )

    def unsubscribe(self) -> str:
        if self.unsubscribe_url:
            return f"Отписаться от этих писем: {self.unsubscribe_url}"
        return "Чтобы отписаться от этих писем, ответьте на это письмо словом «Отписаться»."

    def plain(self) -> str:
        lines = [self.school] if self.school else []
        meta = " · ".join(part for part in (self.kind, self.audience) if part)
        if meta:
            lines.append(meta)
        lines += ["", self.title, ""]
        if self.name:
            lines += [f"Здравствуйте, {self.name}!", ""]
        lines.append(self.text)
        if self.ack_url:
            lines += ["", f"Подтвердите, что вы ознакомились с сообщением: {self.ack_url}"]
        lines += ["", "--"]
        if self.reference:
            lines.append(self.reference)
        lines += [self.why(), self.unsubscribe()]
        return "\n".join(lines).strip() + "\n"

    def html(self) -> str:
        e = html.escape
        accent = "#c62828" if self.urgent else "#1a56a8"
        meta = " · ".join(e(part) for part in (self.kind, self.audience) if part)
        paragraphs = "\n".join(
            f'<p style="margin:0 0 12px;">{e(block).replace(chr(10), "<br>")}</p>'
            for block in re.split(r"\n\s*\n", self.text)
            if block.strip()
        )
        greeting = f'<p style="margin:0 0 12px;">Здравствуйте, {e(self.name)}!</p>' if self.name else ""
        ack = ""
        if self.ack_url:
            ack = (
                '<p style="margin:24px 0 8px;">'
                f'<a href="{e(self.ack_url)}" style="display:inline-block;padding:12px 28px;'
                f"background:{accent};color:#ffffff;text-decoration:none;border-radius:6px;"
                'font-weight:bold;font-size:17px;">Ознакомлен</a></p>'
                '<p style="margin:0 0 12px;font-size:14px;color:#555555;">'
                "Нажмите кнопку, чтобы школа знала, что вы прочитали сообщение.</p>"
            )
        if self.unsubscribe_url:
            unsubscribe = f'<a href="{e(self.unsubscribe_url)}" style="color:#555555;">Отписаться от этих писем</a>'
        else:
            unsubscribe = e(self.unsubscribe())
        reference = f"{e(self.reference)}<br>" if self.reference else ""
        return f"""<!DOCTYPE html>
<html lang="ru">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(self.title)}</title>
</head>
<body style="margin:0;padding:0;background:#f2f2f2;">
<div style="max-width:600px;margin:0 auto;padding:16px;background:#ffffff;font-family:Arial,Helvetica,sans-serif;\
font-size:16px;line-height:1.5;color:#222222;">
<p style="margin:0;font-size:15px;font-weight:bold;color:{accent};">{e(self.school)}</p>
<p style="margin:0 0 16px;font-size:14px;color:#555555;">{meta}</p>
<h1 style="margin:0 0 16px;font-size:21px;line-height:1.3;">{e(self.title)}</h1>
{greeting}
{paragraphs}
{ack}
<hr style="border:none;border-top:1px solid #dddddd;margin:24px 0 12px;">
<p style="margin:0;font-size:13px;line-height:1.4;color:#666666;">{reference}{e(self.why())}<br>{unsubscribe}</p>
</div>
</body>
</html>
"""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOT_IN_URL = re.compile(r"[\s\x00-\x1f\x7f]")  # \s: whatever str.isspace() calls a space


def _one_line(value: str) -> str:
    """A header-safe single line: control characters and line breaks become spaces, format characters
    (bidi overrides, zero-width) go, runs of whitespace collapse."""
    value = "".join(ch for ch in _CONTROL.sub(" ", value) if unicodedata.category(ch) != "Cf")
    return " ".join(value.split())


def _body_text(value: str) -> str:
    """The announcement text with normalised line breaks and no control characters but tab and newline."""
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    value = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", " ", value)
    return value.strip()


def _web_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL fit for a header and an href, else "" (it is left out)."""
    value = value.strip()
    if not value or len(value) > 900 or _NOT_IN_URL.search(value):
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return quote(value, safe=":/?#[]@!$&'()*+,;=%~-._")


def _slug(value: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", value).strip("-")[:limit].strip("-")


# -- addresses -----------------------------------------------------------------------------------------------

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]"
)


def _ascii_domain(domain: str) -> str:
    """The domain in its ASCII form (punycode for .рф and other internationalised names)."""
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return ""


def _addr_spec(address: str) -> str:
    """A plain addr-spec (local@domain) in ASCII form, or ValueError with a Russian reason."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        raise ValueError("в адресе нет «@» или части до неё")
    if not local.isascii():
        raise ValueError("часть адреса до «@» должна быть латиницей")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise ValueError("недопустимые символы в части адреса до «@»")
    ascii_domain = _ascii_domain(domain)
    if not _DOMAIN.fullmatch(ascii_domain):
        raise ValueError("недопустимый домен")
    result = f"{local}@{ascii_domain}"
    if len(result) > 254:
        raise ValueError("адрес длиннее 254 символов")
    return result


def _recipient(address: str) -> str:
    try:
        return _addr_spec(address)
    except ValueError as error:
        raise PermanentError(
            f"Адрес электронной почты «{_mask(_one_line(address)[:80])}» недействителен: {error}.",
            code="smtp:address",
        ) from None


_EMAIL_IN_TEXT = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")


def _mask(address: str) -> str:
    """ "ivan.petrov@mail.ru" -> "i***@mail.ru": enough to tell addresses apart in a log, not to write."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def _server_text(text: str) -> str:
    """A server reply fit for a staff report: one line, addresses masked, at most 200 characters."""
    text = _EMAIL_IN_TEXT.sub(lambda m: _mask(m.group(0)), _one_line(text))
    return text if len(text) <= 200 else text[:199] + "…"


# -- SMTP ----------------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Connection:
    smtp: aiosmtplib.SMTP
    reused: bool = False
    clean: bool = False  # no transaction open, fit for the next message
    sent: int = 0


class _StaleConnection(Exception):
    """A pooled connection was dead at MAIL FROM: nothing of the message was sent."""


class _Pool:
    """At most `pool_size` SMTP connections to one server; idle ones are reused, broken ones replaced."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[_Connection] = []
        self._helo = settings.helo_name
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Connection]:
        async with self._slots:
            if self._closed:
                raise RuntimeError("the e-mail channel is closed")
            conn = self._take_idle() or _Connection(await self._open())
            conn.clean = False
            try:
                yield conn
            finally:
                await self._give_back(conn)

    def discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.smtp.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn.smtp, self.settings.timeout) for conn in idle))

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.smtp.is_connected:
                conn.reused = True
                return conn
            conn.smtp.close()
        return None

    async def _give_back(self, conn: _Connection) -> None:
        if self._closed or not conn.clean or not conn.smtp.is_connected:
            conn.smtp.close()
        elif conn.sent >= self.settings.max_messages_per_connection:
            await _quit(conn.smtp, self.settings.timeout)
        else:
            self._idle.append(conn)

    async def _open(self) -> aiosmtplib.SMTP:
        s = self.settings
        if not self._helo:
            self._helo = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.use_tls,
            start_tls=False,  # done below, explicitly, so that its failure is told apart
            timeout=s.timeout,
            tls_context=s.ssl_context,
            cert_bundle=s.ca_file,
            local_hostname=self._helo,
        )
        stage: _Stage = "connect"
        try:
            await smtp.connect()
            await smtp.ehlo()
            if s.starttls:
                stage = "tls"
                await smtp.starttls()
            if s.username:
                stage = "auth"
                await smtp.login(s.username, s.password)
        except BaseException as error:
            smtp.close()
            if isinstance(error, Exception):
                raise _open_error(error, stage, s) from None
            raise
        log.debug("SMTP connection to %s:%s opened", s.host, s.port)
        return smtp


async def _deliver(pool: _Pool, sender: str, recipient: str, data: bytes, message: Message) -> None:
    retrying = AsyncRetrying(retry=retry_if_exception_type(_StaleConnection), stop=stop_after_attempt(2), reraise=True)
    try:
        async for attempt in retrying:
            with attempt:
                async with pool.connection() as conn:
                    await before_request(message)  # the fence, once a connection is ours: nothing has left yet
                    await _transaction(pool, conn, sender, recipient, data)
    except _StaleConnection:
        raise TransientError(
            "Соединение с почтовым сервером разорвано; письмо будет отправлено повторно.",
            code="smtp:disconnected",
        ) from None


async def _transaction(pool: _Pool, conn: _Connection, sender: str, recipient: str, data: bytes) -> None:
    """MAIL, RCPT, DATA for one message on one connection; raises an AdapterError (or _StaleConnection)."""
    smtp = conn.smtp
    stage: _Stage = "mail"
    body_sent = False
    try:
        await smtp.mail(sender)
        stage = "rcpt"
        await smtp.rcpt(recipient)
        stage = "data"
        reply = await smtp.execute_command(b"DATA")
        if reply.code != 354:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        # The body is written here rather than by SMTP.data(), so that a failure after the final dot left us
        # (an unknown outcome) is told apart from one before it.
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        protocol.write(_dot_stuffed(data))
        body_sent = True
        reply = await protocol.read_response(timeout=pool.settings.timeout)
    except aiosmtplib.SMTPResponseException as error:
        if error.code == 421 or not 400 <= error.code < 600:
            smtp.close()  # the server is closing, or the conversation is out of step
        conn.clean = smtp.is_connected and (stage == "mail" or await _reset(smtp))
        raise _reply_error(error.code, error.message, stage) from None
    except (aiosmtplib.SMTPException, OSError) as error:
        smtp.close()
        if body_sent:
            raise UnknownOutcome(
                "Связь с почтовым сервером прервалась после передачи письма, ответа не было: письмо могло "
                "дойти. При повторной отправке у письма тот же Message-ID.",
                code="smtp:no-reply",
            ) from None
        if stage == "mail" and conn.reused and isinstance(error, OSError):
            pool.discard_idle()  # the others are likely just as dead (a server restart)
            raise _StaleConnection() from None
        raise _transport_error(error) from None
    conn.clean = True  # the transaction is over whatever the reply
    if reply.code == 421:
        smtp.close()
    if reply.code != 250:
        raise _reply_error(reply.code, reply.message, "data")
    conn.sent += 1


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    """RSET after a refused RCPT or DATA; whether the connection is fit for the next message."""
    if not smtp.is_connected:
        return False
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
        return False
    return True


async def _quit(smtp: aiosmtplib.SMTP, wait: float) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit(timeout=min(wait, 5.0))
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled (RFC 5321 4.5.2), the final dot line added."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


# -- errors --------------------------------------------------------------------------------------------------

_RATE_HINT = re.compile(r"rate|too many|limit|throttl|слишком много|частот", re.IGNORECASE)
_STAGE_TEXT = {
    "connect": "Почтовый сервер не принимает соединение",
    "tls": "Почтовый сервер не установил защищённое соединение (STARTTLS)",
    "auth": "Почтовый сервер не принял вход (AUTH)",
    "mail": "Почтовый сервер отклонил адрес отправителя",
    "rcpt": "Почтовый сервер отклонил адрес получателя",
    "data": "Почтовый сервер отклонил письмо",
}
_CREDENTIAL_CODES = {530, 534, 535, 538}


def _reply_error(code: int, text: str, stage: _Stage) -> AdapterError:
    detail = f"{code} {_server_text(text)}".strip()
    tag = f"smtp:{code}"
    if 400 <= code < 500:
        kind = RateLimited if _RATE_HINT.search(text) else TransientError
        return kind(f"{_STAGE_TEXT[stage]} временно ({detail}); письмо будет отправлено повторно.", code=tag)
    if stage == "auth" or code in _CREDENTIAL_CODES:
        return CredentialError(
            f"Почтовый сервер не принял логин или пароль SMTP ({detail}). "
            "Администратору нужно проверить настройки почты.",
            code=tag,
        )
    if 500 <= code < 600:
        if stage == "rcpt":
            return PermanentError(
                f"Адрес получателя не принимает почту ({detail}): письмо не доставлено. Уточните адрес.",
                code=tag,
            )
        return PermanentError(f"{_STAGE_TEXT[stage]} ({detail}); повторная отправка не поможет.", code=tag)
    return TransientError(f"{_STAGE_TEXT[stage]}: непонятный ответ ({detail}).", code="smtp:protocol")


def _transport_error(error: BaseException) -> TransientError:
    if isinstance(error, TimeoutError):
        return TransientError(
            "Почтовый сервер не ответил вовремя; письмо будет отправлено повторно.", code="smtp:timeout"
        )
    return TransientError(
        "Соединение с почтовым сервером разорвано; письмо будет отправлено повторно.", code="smtp:disconnected"
    )


def _open_error(error: Exception, stage: _Stage, settings: EmailSettings) -> AdapterError:
    where = f"{settings.host}:{settings.port}"
    if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
        return TransientError(
            f"Не удалось установить защищённое соединение с почтовым сервером {where}: сертификат или "
            "настройки TLS не подходят. Письмо будет отправлено повторно.",
            code="smtp:tls",
        )
    if isinstance(error, aiosmtplib.SMTPResponseException) and error.code >= 400:
        return _reply_error(error.code, error.message, stage)
    if stage == "tls" and isinstance(error, aiosmtplib.SMTPException) and not isinstance(error, OSError):
        return TransientError(
            f"Почтовый сервер {where} не предлагает STARTTLS, а без шифрования письмо не отправляется.",
            code="smtp:tls",
        )
    if stage == "auth" and isinstance(error, aiosmtplib.SMTPException) and not isinstance(error, OSError):
        return CredentialError(
            f"Почтовый сервер {where} не предлагает вход (AUTH) с этими настройками. "
            "Администратору нужно проверить настройки почты.",
            code="smtp:auth",
        )
    if isinstance(error, TimeoutError):
        return TransientError(f"Почтовый сервер {where} не ответил вовремя.", code="smtp:timeout")
    if stage == "connect":
        return TransientError(f"Не удалось соединиться с почтовым сервером {where}.", code="smtp:connect")
    return _transport_error(error)
