"""The SMTP emulator, driven by a third-party client (aiosmtplib) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from adapters.emulators.smtp import ReceivedMail, SmtpEmulator


def letter(to: str = "parent@mail.ru", subject: str = "Проверка", body: str = "Текст письма\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "school@school5.ru"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


async def connect(
    smtp: SmtpEmulator, *, wait: float = 5, use_tls: bool = False, tls_context: ssl.SSLContext | None = None
) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        local_hostname="client.test",
        timeout=wait,
        start_tls=False,
        use_tls=use_tls,
        tls_context=tls_context,
    )
    await client.connect()
    await client.ehlo()
    return client


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpEmulator]:
    async with SmtpEmulator() as server:
        yield server


async def test_records_envelope_raw_bytes_and_parsed_message_in_order(smtp: SmtpEmulator) -> None:
    client = await connect(smtp)
    await client.send_message(letter("Anna@Mail.ru", "Первое", "Привет, мир\n"))
    await client.send_message(letter("boris@yandex.ru", "Второе"), recipients=["boris@yandex.ru", "anna@mail.ru"])
    await client.quit()

    assert [m.subject for m in smtp.messages] == ["Первое", "Второе"]
    first = smtp.messages[0]
    assert first.sender == "school@school5.ru"
    assert first.recipients == ("Anna@Mail.ru",)
    assert first.text == "Привет, мир\n"
    assert b"Subject: =?utf-8?" in first.data
    assert first.message["To"] == "Anna@Mail.ru"
    assert not first.tls
    assert first.login is None
    # a mailbox matches addresses case-insensitively and keeps the order
    assert [m.subject for m in smtp.mailbox("anna@mail.ru")] == ["Первое", "Второе"]
    assert [m.subject for m in smtp.mailbox("boris@yandex.ru")] == ["Второе"]
    assert smtp.mailbox("nobody@mail.ru") == []


async def test_counts_connections(smtp: SmtpEmulator) -> None:
    client = await connect(smtp)
    await client.send_message(letter())
    await client.send_message(letter())
    await client.quit()
    assert smtp.connections == 1
    assert {m.connection for m in smtp.messages} == {1}

    client = await connect(smtp)
    await client.send_message(letter())
    await client.quit()
    assert smtp.connections == 2
    assert smtp.messages[-1].connection == 2


async def test_refuse_at_mail_for_the_next_messages_then_accept(smtp: SmtpEmulator) -> None:
    smtp.refuse(451, count=2)
    client = await connect(smtp)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.send_message(letter())
        assert refused.value.code == 451
    await client.send_message(letter())
    await client.quit()
    assert len(smtp.messages) == 1


async def test_refuse_421_closes_the_connection(smtp: SmtpEmulator) -> None:
    smtp.refuse(421, stage="rcpt")
    client = await connect(smtp)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await client.send_message(letter())
    await asyncio.sleep(0.05)
    assert not client.is_connected
    client = await connect(smtp)
    await client.send_message(letter())
    await client.quit()
    assert len(smtp.messages) == 1


async def test_refuse_at_connect_answers_the_greeting_and_hangs_up(smtp: SmtpEmulator) -> None:
    smtp.refuse(421, stage="connect")
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
        await connect(smtp)
    assert refused.value.code == 421
    client = await connect(smtp)
    await client.quit()
    assert smtp.connections == 2


async def test_refuse_at_data_reads_the_message_and_keeps_it_out(smtp: SmtpEmulator) -> None:
    smtp.refuse(554, stage="data", text="5.7.1 Spam detected")
    client = await connect(smtp)
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await client.send_message(letter())
    assert (refused.value.code, refused.value.message) == (554, "5.7.1 Spam detected")
    await client.send_message(letter())
    await client.quit()
    assert len(smtp.messages) == 1


async def test_refuse_for_a_period(smtp: SmtpEmulator) -> None:
    smtp.refuse(451, count=None, seconds=0.3)
    client = await connect(smtp)
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPSenderRefused):
            await client.send_message(letter())
    await asyncio.sleep(0.35)
    await client.send_message(letter())
    await client.quit()
    assert len(smtp.messages) == 1


async def test_rejected_recipient_gets_550_until_reset(smtp: SmtpEmulator) -> None:
    smtp.reject_recipient("Gone@Mail.ru")
    client = await connect(smtp)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await client.send_message(letter("gone@mail.ru"))
    assert refused.value.recipients[0].code == 550
    assert "Mailbox unavailable" in refused.value.recipients[0].message
    # other recipients are unaffected, on the same connection
    await client.send_message(letter("fine@mail.ru"))
    smtp.reset_faults()
    await client.send_message(letter("gone@mail.ru"))
    await client.quit()
    assert [m.recipients for m in smtp.messages] == [("fine@mail.ru",), ("gone@mail.ru",)]


async def test_greylisting_answers_450_the_given_number_of_times(smtp: SmtpEmulator) -> None:
    smtp.greylist("new@mail.ru", times=2)
    client = await connect(smtp)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await client.send_message(letter("new@mail.ru"))
        assert refused.value.recipients[0].code == 450
    await client.send_message(letter("new@mail.ru"))
    await client.quit()
    assert len(smtp.mailbox("new@mail.ru")) == 1


async def test_drop_during_data_loses_the_message_and_the_connection(smtp: SmtpEmulator) -> None:
    smtp.drop_during_data(after_bytes=32)
    client = await connect(smtp)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.send_message(letter(body="длинный текст\n" * 200))
    assert smtp.messages == []
    client = await connect(smtp)
    await client.send_message(letter())
    await client.quit()
    assert len(smtp.messages) == 1


async def test_drop_after_data_keeps_the_message_but_never_answers(smtp: SmtpEmulator) -> None:
    smtp.drop_after_data()
    client = await connect(smtp)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.send_message(letter(subject="Дошло?"))
    assert [m.subject for m in smtp.messages] == ["Дошло?"]


async def test_delay_holds_replies(smtp: SmtpEmulator) -> None:
    smtp.delay(0.5, stage="rcpt")
    client = await connect(smtp, wait=0.2)
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await client.send_message(letter())
    smtp.delay(0, stage="rcpt")
    smtp.delay(0.1)  # every reply: the greeting and the EHLO reply here
    loop = asyncio.get_running_loop()
    started = loop.time()
    client = await connect(smtp, wait=2)
    assert loop.time() - started >= 0.2
    client.close()


async def test_break_connections_kills_open_connections_at_their_next_command(smtp: SmtpEmulator) -> None:
    client = await connect(smtp)
    await client.noop()
    smtp.break_connections()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.send_message(letter())
    client = await connect(smtp)
    await client.send_message(letter())
    await client.quit()
    assert len(smtp.messages) == 1


async def test_stop_closes_open_connections() -> None:
    async with SmtpEmulator() as smtp:
        client = await connect(smtp)
        port = smtp.port
    await asyncio.sleep(0.05)
    assert not client.is_connected
    with pytest.raises(RuntimeError):
        _ = smtp.port
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=1).connect()


async def test_on_message_sees_each_accepted_message() -> None:
    seen: list[ReceivedMail] = []
    async with SmtpEmulator(on_message=seen.append) as smtp:
        client = await connect(smtp)
        await client.send_message(letter(subject="Для демо"))
        await client.quit()
    assert [m.subject for m in seen] == ["Для демо"]


async def test_auth_is_required_and_checked() -> None:
    async with SmtpEmulator(username="school5", password="s3cret") as smtp:
        client = await connect(smtp)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.send_message(letter())
        assert refused.value.code == 530
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
            await client.login("school5", "wrong")
        assert wrong.value.code == 535
        await client.quit()

        for mechanism in ("auth_plain", "auth_login"):
            client = await connect(smtp)
            await getattr(client, mechanism)("school5", "s3cret")
            await client.send_message(letter(subject=mechanism))
            await client.quit()
        assert [(m.subject, m.login) for m in smtp.messages] == [
            ("auth_plain", "school5"),
            ("auth_login", "school5"),
        ]


async def test_starttls_with_a_generated_certificate() -> None:
    async with SmtpEmulator(starttls=True, username="u", password="p", auth_require_tls=True) as smtp:
        assert smtp.ca_file is not None
        client = await connect(smtp)
        assert client.supports_extension("starttls")
        assert "auth" not in client.esmtp_extensions  # no AUTH before TLS when TLS is demanded for it
        await client.starttls(tls_context=smtp.client_ssl_context())
        await client.login("u", "p")
        await client.send_message(letter())
        await client.quit()

        untrusting = await connect(smtp)
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.starttls()  # the system CAs do not know the emulator's certificate
        untrusting.close()
    assert [m.tls for m in smtp.messages] == [True]


async def test_implicit_tls() -> None:
    async with SmtpEmulator(implicit_tls=True) as smtp:
        client = await connect(smtp, use_tls=True, tls_context=smtp.client_ssl_context())
        await client.send_message(letter())
        await client.quit()
    assert smtp.messages[0].tls


def test_option_conflicts_are_refused() -> None:
    with pytest.raises(ValueError, match="exclude"):
        SmtpEmulator(starttls=True, implicit_tls=True)
    with pytest.raises(ValueError, match="together"):
        SmtpEmulator(username="u")
    with pytest.raises(ValueError, match="stage"):
        SmtpEmulator().refuse(stage="quit")  # type: ignore[arg-type]
