"""A local SMTP server that records what it receives and misbehaves on request: for the tests and the demo.

`SmtpEmulator` is an aiosmtpd server started on the *running* asyncio loop with `loop.create_server` rather
than through `aiosmtpd.controller.Controller`. The controller runs its own loop in a thread; on the caller's
loop there is no thread, no cross-thread hand-off of the recorded messages, and the same object works inside an
async test and inside the demo process (which already runs a loop)::

    async with SmtpEmulator() as smtp:          # 127.0.0.1, a free port
        ...                                     # send to smtp.host:smtp.port
        for mail in smtp.mailbox("parent@example.ru"):
            print(mail.subject, mail.text)

Every accepted message is kept in arrival order with its envelope (sender, recipients), the raw bytes as they
arrived (dot-unstuffed) and the parsed `email.message.EmailMessage`.

Options: AUTH (PLAIN and LOGIN against one configured user; plain-text AUTH is allowed because the emulator is
meant for loopback, `auth_require_tls=True` restores aiosmtpd's strict default), STARTTLS or implicit TLS with
a self-signed certificate made at start-up by the `openssl` command (or a given certificate/key pair);
`ca_file` / `client_ssl_context()` let a client trust it.

Faults, armed by method calls and consumed as they fire:

- `refuse(code, count=..., seconds=..., stage=...)` - a 4xx/5xx for the next N messages (or for a period) at
  connect, MAIL, RCPT or the end of DATA; a 421 also closes the connection, as RFC 5321 says it must;
- `reject_recipient(address)` - 550 "mailbox unavailable" for that address until `reset_faults()`;
- `greylist(address, times=N)` - 450 for the next N attempts to that address;
- `drop_during_data(count, after_bytes)` - read some body bytes after the 354, then drop the connection
  before the final dot (nothing is recorded);
- `drop_after_data(count)` - record the message, then drop the connection instead of replying to the dot:
  the client cannot know the message arrived;
- `delay(seconds, stage=...)` - hold every reply (or the replies of one stage) for a while;
- `break_connections()` - every open connection dies at its next command, unanswered, as after a server
  restart that the client has not noticed yet.

`connections` counts the connections accepted, so a test can prove that a client reuses them;
`open_connections` says how many are open now.

aiosmtpd logs every command, recipient addresses included, at INFO (and a deprecation warning on each AUTH);
the emulator raises its "mail.log" logger to ERROR unless the process configured that logger itself.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, AnyStr, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

log = logging.getLogger(__name__)

Stage = Literal["connect", "mail", "rcpt", "data"]
_STAGES: tuple[Stage, ...] = ("connect", "mail", "rcpt", "data")
_DEFAULT_TEXT = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.0 Greylisted, please try again later",
    451: "4.3.0 Local error in processing, try again later",
    550: "5.1.1 Mailbox unavailable",
    554: "5.7.1 Transaction failed",
}


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One accepted message: the envelope, the bytes as received and the parsed message."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message: EmailMessage
    connection: int
    tls: bool
    login: str | None

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The plain-text body (decoded, with "\\n" line ends), or "" when the message has none."""
        part = self.message.get_body(preferencelist=("plain",))
        return str(part.get_content()).replace("\r\n", "\n") if isinstance(part, EmailMessage) else ""

    @property
    def html(self) -> str:
        """The HTML body (decoded, with "\\n" line ends), or "" when the message has none."""
        part = self.message.get_body(preferencelist=("html",))
        return str(part.get_content()).replace("\r\n", "\n") if isinstance(part, EmailMessage) else ""


@dataclass(slots=True)
class _Refusal:
    code: int
    text: str
    stage: Stage
    remaining: int | None  # None: until `until`
    until: float | None


@dataclass(slots=True)
class _DataDrop:
    remaining: int
    after_bytes: int


class SmtpEmulator:
    """An aiosmtpd server on the running loop that records messages and injects faults (module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        auth_require_tls: bool = False,
        starttls: bool = False,
        implicit_tls: bool = False,
        certificate: tuple[str | Path, str | Path] | None = None,
        hostname: str = "smtp.zvonok.test",
        idle_timeout: float = 300.0,
        on_message: Callable[[ReceivedMail], None] | None = None,
    ) -> None:
        if starttls and implicit_tls:
            raise ValueError("starttls and implicit_tls exclude each other")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self._bind = (host, port)
        self._username = username
        self._password = password
        self._auth_require_tls = auth_require_tls
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._certificate = certificate
        self.hostname = hostname
        self._idle_timeout = idle_timeout
        self._on_message = on_message

        self._server: asyncio.Server | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file: Path | None = None
        self._address: tuple[str, int] | None = None
        self._live: set[_EmulatorSMTP] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._messages: list[ReceivedMail] = []
        self._connections = 0

        self._refusals: list[_Refusal] = []
        self._rejected: dict[str, tuple[int, str]] = {}
        self._greylist: dict[str, int] = {}
        self._data_drops: list[_DataDrop] = []
        self._drops_after_data = 0
        self._delays: dict[Stage | None, float] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        _quiet_aiosmtpd_logger()
        if self._starttls or self._implicit_tls:
            self._tls_context = await self._make_tls_context()
        loop = asyncio.get_running_loop()
        host, port = self._bind
        self._server = await loop.create_server(
            self._protocol_factory, host, port, ssl=self._tls_context if self._implicit_tls else None
        )
        sockname = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))

    async def stop(self) -> None:
        """Stop listening, drop every open connection and wait until their handlers are gone."""
        server, self._server = self._server, None
        if server is None:
            return
        self._address = None
        server.close()
        for protocol in list(self._live):
            protocol.drop()
        # aiosmtpd cancels a session's task when its connection is lost; a session whose TLS handshake died
        # under it never hears of the loss, so cancel them all here.
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self._live.clear()
        await server.wait_closed()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    async def __aenter__(self) -> SmtpEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        return self._running_address()[0]

    @property
    def port(self) -> int:
        return self._running_address()[1]

    @property
    def ca_file(self) -> str | None:
        """The PEM file a client must trust to verify the emulator's TLS certificate (None without TLS)."""
        return str(self._ca_file) if self._ca_file is not None else None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client-side context that trusts the emulator's certificate and checks its host name."""
        if self._ca_file is None:
            raise RuntimeError("the emulator runs without TLS")
        return ssl.create_default_context(cafile=str(self._ca_file))

    # -- what arrived ----------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every accepted message, in arrival order."""
        return list(self._messages)

    def mailbox(self, address: str) -> list[ReceivedMail]:
        """The messages whose envelope named `address` (compared case-insensitively), in arrival order."""
        wanted = address.lower()
        return [m for m in self._messages if any(r.lower() == wanted for r in m.recipients)]

    @property
    def connections(self) -> int:
        """How many connections were accepted since start."""
        return self._connections

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self._live)

    def clear(self) -> None:
        """Forget the recorded messages and the connection count."""
        self._messages.clear()
        self._connections = 0

    # -- faults ----------------------------------------------------------------------------------------------

    def refuse(
        self,
        code: int = 451,
        *,
        count: int | None = 1,
        seconds: float | None = None,
        stage: Stage = "mail",
        text: str = "",
    ) -> None:
        """Answer `code` at `stage` for the next `count` messages (connections at "connect"), or for `seconds`.

        At "data" the message is read in full and then refused in the reply to the final dot.
        """
        if stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if seconds is None and (count is None or count < 1):
            raise ValueError("give a positive count or a period in seconds")
        until = time.monotonic() + seconds if seconds is not None else None
        self._refusals.append(
            _Refusal(code, text or _default_text(code), stage, None if seconds is not None else count, until)
        )

    def reject_recipient(self, address: str, *, code: int = 550, text: str = "") -> None:
        """Refuse RCPT for `address` with a 5xx (a bounce) until `reset_faults()`."""
        self._rejected[address.lower()] = (code, text or _default_text(code))

    def greylist(self, address: str, *, times: int = 1) -> None:
        """Answer RCPT for `address` with 450 the next `times` times, then accept it."""
        self._greylist[address.lower()] = times

    def drop_during_data(self, count: int = 1, *, after_bytes: int = 64) -> None:
        """For the next `count` messages: after the 354, read about `after_bytes` of the body and drop the
        connection before the final dot. The message is not recorded."""
        self._data_drops.append(_DataDrop(count, after_bytes))

    def drop_after_data(self, count: int = 1) -> None:
        """For the next `count` messages: record the message, then drop the connection without replying."""
        self._drops_after_data += count

    def delay(self, seconds: float, *, stage: Stage | None = None) -> None:
        """Hold the replies of `stage` ("connect" is the greeting; None: every reply) for `seconds`."""
        if stage is not None and stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if seconds > 0:
            self._delays[stage] = seconds
        else:
            self._delays.pop(stage, None)

    def break_connections(self) -> None:
        """Every connection open now dies at its next command without an answer."""
        for protocol in self._live:
            protocol.doomed = True

    def reset_faults(self) -> None:
        self._refusals.clear()
        self._rejected.clear()
        self._greylist.clear()
        self._data_drops.clear()
        self._drops_after_data = 0
        self._delays.clear()

    # -- internals -------------------------------------------------------------------------------------------

    def _running_address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the emulator is not running")
        return self._address

    async def _make_tls_context(self) -> ssl.SSLContext:
        if self._certificate is not None:
            cert, key = (Path(p) for p in self._certificate)
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="zvonok-smtp-")
            cert, key = await _self_signed_certificate(Path(self._tempdir.name), self.hostname)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self._ca_file = cert
        return context

    def _protocol_factory(self) -> asyncio.BaseProtocol:
        self._connections += 1
        refusal = self._take_refusal("connect")
        if refusal is not None:
            return _Refuser(f"{refusal.code} {refusal.text}")
        return _EmulatorSMTP(self, self._connections)

    def _take_refusal(self, stage: Stage) -> _Refusal | None:
        now = time.monotonic()
        for refusal in list(self._refusals):
            if refusal.stage != stage:
                continue
            if refusal.until is not None:
                if now < refusal.until:
                    return refusal
                self._refusals.remove(refusal)
                continue
            assert refusal.remaining is not None
            refusal.remaining -= 1
            if refusal.remaining <= 0:
                self._refusals.remove(refusal)
            return refusal
        return None

    def _take_data_drop(self) -> _DataDrop | None:
        if not self._data_drops:
            return None
        drop = self._data_drops[0]
        drop.remaining -= 1
        if drop.remaining <= 0:
            self._data_drops.pop(0)
        return drop

    def _take_drop_after_data(self) -> bool:
        if self._drops_after_data > 0:
            self._drops_after_data -= 1
            return True
        return False

    def _delay_for(self, stage: Stage | None) -> float:
        return self._delays.get(stage, 0.0)

    def _authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self._username is None or self._password is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login_ok = hmac.compare_digest(data.login, self._username.encode())
        password_ok = hmac.compare_digest(data.password, self._password.encode())
        return AuthResult(success=login_ok and password_ok, handled=False, auth_data=data)

    def _record(self, server: _EmulatorSMTP, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        auth = server.session.auth_data if server.session is not None else None
        mail = ReceivedMail(
            sender=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            data=raw,
            message=parsed,
            connection=server.number,
            tls=server.transport is not None and server.transport.get_extra_info("sslcontext") is not None,
            login=auth.login.decode(errors="replace") if isinstance(auth, LoginPassword) else None,
        )
        self._messages.append(mail)
        if self._on_message is not None:
            self._on_message(mail)


class _Handler:
    """aiosmtpd hooks: refusals, rejections, greylisting, authentication checks and recording."""

    def __init__(self, emulator: SmtpEmulator) -> None:
        self._emulator = emulator

    async def handle_MAIL(
        self, server: _EmulatorSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        emulator = self._emulator
        await _pause(emulator._delay_for("mail"))
        if emulator._username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        refusal = emulator._take_refusal("mail")
        if refusal is not None:
            return f"{refusal.code} {refusal.text}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: _EmulatorSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        emulator = self._emulator
        await _pause(emulator._delay_for("rcpt"))
        refusal = emulator._take_refusal("rcpt")
        if refusal is not None:
            return f"{refusal.code} {refusal.text}"
        key = address.lower()
        if key in emulator._rejected:
            code, text = emulator._rejected[key]
            return f"{code} {text}"
        if emulator._greylist.get(key, 0) > 0:
            emulator._greylist[key] -= 1
            return f"450 {_default_text(450)}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _EmulatorSMTP, session: Session, envelope: Envelope) -> str:
        emulator = self._emulator
        refusal = emulator._take_refusal("data")
        if refusal is not None:
            await _pause(emulator._delay_for("data"))
            return f"{refusal.code} {refusal.text}"
        emulator._record(server, envelope)
        if emulator._take_drop_after_data():
            server.swallow_next_reply = True
        await _pause(emulator._delay_for("data"))
        return f"250 2.0.0 OK: queued as Z{len(emulator._messages):06d}"

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would log a traceback at ERROR (a client giving up a TLS handshake is enough for that).
        log.debug("SMTP emulator session error: %r", error)
        return "421 4.3.0 Error: session failed"


class _EmulatorSMTP(SMTP):
    """aiosmtpd's SMTP session with the emulator's connection-level faults."""

    def __init__(self, emulator: SmtpEmulator, number: int) -> None:
        user = emulator._username is not None
        super().__init__(
            _Handler(emulator),
            hostname=emulator.hostname,
            ident="Zvonok SMTP emulator",
            tls_context=emulator._tls_context if emulator._starttls else None,
            timeout=emulator._idle_timeout,
            # AUTH is advertised on plain connections only when a user is configured and TLS is not demanded.
            auth_require_tls=emulator._auth_require_tls or not user,
            authenticator=emulator._authenticator,
            loop=asyncio.get_running_loop(),
        )
        self._emulator = emulator
        self.number = number
        self.doomed = False
        self.swallow_next_reply = False
        self._greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self._emulator._live.add(self)
            task = self._handler_coroutine
            if task is not None:
                self._emulator._tasks.add(task)
                task.add_done_callback(self._emulator._tasks.discard)

    def connection_lost(self, error: Exception | None) -> None:
        self._emulator._live.discard(self)
        super().connection_lost(error)

    def drop(self) -> None:
        """Cut the connection at once: unsent replies are discarded, TLS is not shut down politely."""
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    async def push(self, status: AnyStr) -> None:
        if not self._greeted:
            self._greeted = True
            await _pause(self._emulator._delay_for("connect"))
        await _pause(self._emulator._delay_for(None))
        if self.doomed or self.swallow_next_reply:
            self.swallow_next_reply = False
            self.drop()
            return
        await super().push(status)
        text = status.decode(errors="replace") if isinstance(status, bytes) else status
        if text.startswith("421") and self.transport is not None:
            self.transport.close()  # after the reply, as RFC 5321 wants

    async def smtp_DATA(self, arg: str) -> None:
        ready = self.envelope is not None and self.envelope.rcpt_tos and not arg and not self.doomed
        drop = self._emulator._take_data_drop() if ready else None
        if drop is None:
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = 0
        while received < drop.after_bytes:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as error:
                line = await self._reader.read(error.consumed)
            except asyncio.IncompleteReadError:
                break
            if line == b".\r\n":
                break
            received += len(line)
        self.drop()


class _Refuser(asyncio.Protocol):
    """A connection refused in the greeting: one reply line, then the server hangs up."""

    def __init__(self, reply: str) -> None:
        self._reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._reply.encode("ascii", errors="replace") + b"\r\n")
        transport.close()


def _default_text(code: int) -> str:
    if code in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[code]
    return "4.0.0 Try again later" if 400 <= code < 500 else "5.0.0 Refused"


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def _quiet_aiosmtpd_logger() -> None:
    logger = logging.getLogger("mail.log")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


async def _self_signed_certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A throw-away certificate for `hostname`, localhost, 127.0.0.1 and ::1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "TLS emulation needs the `openssl` command to make a certificate; pass certificate=(cert, key)"
        )
    cert, key = directory / "cert.pem", directory / "key.pem"
    process = await asyncio.create_subprocess_exec(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={hostname}",
        "-addext",
        f"subjectAltName=DNS:{hostname},DNS:localhost,IP:127.0.0.1,IP:::1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"openssl could not make a certificate: {stderr.decode(errors='replace').strip()}")
    return cert, key
