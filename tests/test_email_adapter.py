"""The e-mail channel against a real SMTP server (the aiosmtpd emulator) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from adapters.base import (
    AdapterError,
    CredentialError,
    Message,
    PermanentError,
    RateLimited,
    Sent,
    TransientError,
    UnknownOutcome,
)
from adapters.email import _TEMPLATES_MAX, EmailChannel, EmailSettings
from adapters.emulators.smtp import ReceivedMail, SmtpEmulator

NOW = datetime(2026, 3, 2, 5, 30, tzinfo=UTC)
FROM = "noreply@school5.ru"
OFFICE = "office@school5.ru"
PARENT = "anna.petrova@mail.ru"
TEXT = "Уважаемые родители!\n\nЗавтра, 3 марта, уроки 7Б начнутся в 10:00 вместо 8:30.\nВозьмите сменную обувь."


def settings(smtp: SmtpEmulator, **overrides: Any) -> EmailSettings:
    values: dict[str, Any] = {
        "host": smtp.host,
        "port": smtp.port,
        "from_address": FROM,
        "reply_to": OFFICE,
        "helo_name": "zvonok.test",
        "timeout": 2.0,
    }
    values.update(overrides)
    return EmailSettings(**values)


def message(key: str = "ann-17:guardian-42", target: str = PARENT, **overrides: str) -> Message:
    values = {
        "key": key,
        "account": "school5",
        "target": target,
        "school": "Школа № 5",
        "kind": "schedule_change",
        "kind_label": "Изменение расписания",
        "title": "Уроки 7Б начнутся в 10:00",
        "text": TEXT,
        "audience": "7Б",
        "recipient_name": "Анна Петровна",
        "reference": "Объявление № 17",
    }
    values.update(overrides)
    return Message(**values)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpEmulator]:
    async with SmtpEmulator() as server:
        yield server


@pytest.fixture
async def channel(smtp: SmtpEmulator) -> AsyncIterator[EmailChannel]:
    email = EmailChannel(settings(smtp), clock=lambda: NOW)
    yield email
    await email.aclose()


async def fails(email: EmailChannel, msg: Message) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        await email.send(msg)
    return caught.value


def unfolded(mail: ReceivedMail, name: str) -> str:
    """A header exactly as it arrived, unfolded, not decoded."""
    head = mail.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    found = re.search(rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE | re.IGNORECASE)
    assert found, f"no {name} header"
    return re.sub(r"\r\n(?=[ \t])", "", found.group(1)).strip()


# -- what arrives ----------------------------------------------------------------------------------------------


async def test_delivers_a_russian_letter_with_utf8_subject_and_body(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    sent = await channel.send(message())

    [mail] = smtp.mailbox(PARENT)
    assert mail.sender == FROM
    assert mail.recipients == (PARENT,)
    assert all(byte < 0x80 for byte in mail.data)  # 7-bit clean: no 8BITMIME needed
    got = mail.message
    assert got["Subject"] == "Изменение расписания: Уроки 7Б начнутся в 10:00"
    assert got["From"].addresses == (Address("Школа № 5", addr_spec=FROM),)
    assert got["To"].addresses == (Address("Анна Петровна", addr_spec=PARENT),)
    assert got["Reply-To"] == OFFICE
    assert parsedate_to_datetime(got["Date"]) == NOW
    assert got["Message-ID"] == sent.provider_id
    assert got["Auto-Submitted"] == "auto-generated"
    assert got.get_content_type() == "multipart/alternative"
    assert TEXT in mail.text
    assert "Здравствуйте, Анна Петровна!" in mail.text
    assert "Школа № 5" in mail.text and "7Б" in mail.text and "Объявление № 17" in mail.text
    assert "Изменение расписания · 7Б" in mail.html
    assert '<p style="margin:0 0 12px;">Уважаемые родители!</p>' in mail.html
    assert "уроки 7Б начнутся в 10:00 вместо 8:30.<br>Возьмите сменную обувь.</p>" in mail.html
    assert 'name="viewport"' in mail.html
    assert "Ознакомлен" not in mail.html  # no ack link asked for


async def test_ack_button_links_to_the_ack_url(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    await channel.send(message(ack_url="https://zvonok.school5.ru/ack/17/42?t=a&b"))
    [mail] = smtp.messages
    assert '<a href="https://zvonok.school5.ru/ack/17/42?t=a&amp;b"' in mail.html
    assert ">Ознакомлен</a>" in mail.html
    assert "https://zvonok.school5.ru/ack/17/42?t=a&b" in mail.text


async def test_message_id_is_stable_per_delivery_and_distinct_between_deliveries(
    smtp: SmtpEmulator, channel: EmailChannel
) -> None:
    first = channel.render(message("ann-17:guardian-42"))["Message-ID"]
    assert channel.render(message("ann-17:guardian-42", title="другой заголовок"))["Message-ID"] == first
    assert EmailChannel(settings(smtp)).render(message("ann-17:guardian-42"))["Message-ID"] == first
    assert re.fullmatch(r"<zvonok\.[A-Za-z0-9.-]+@school5\.ru>", first)

    keys = ["ann-17:guardian-42", "ann-17:guardian-43", "ann-17/guardian-42", "ann-17.guardian-42", "объявление-1"]
    assert len({channel.render(message(key))["Message-ID"] for key in keys}) == len(keys)

    # a resend of the same delivery carries the same Message-ID
    one = await channel.send(message("ann-17:guardian-42"))
    again = await channel.send(message("ann-17:guardian-42"))
    other = await channel.send(message("ann-17:guardian-43"))
    assert one.provider_id == again.provider_id == first != other.provider_id
    assert [m.message["Message-ID"] for m in smtp.messages] == [first, first, other.provider_id]


async def test_fifty_messages_share_the_pool_connections(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    batch = [message(f"ann-1:g-{n}", target=f"parent{n}@mail.ru") for n in range(50)]
    outcomes = await channel.send_many(batch)

    assert all(isinstance(outcome, Sent) for outcome in outcomes)
    assert 1 <= smtp.connections <= 4
    assert len(smtp.messages) == 50
    assert all(len(smtp.mailbox(f"parent{n}@mail.ru")) == 1 for n in range(50))
    assert all(len(mail.recipients) == 1 for mail in smtp.messages)  # one envelope per recipient

    await channel.send(message("ann-2:g-0"))
    assert smtp.connections <= 4  # still the same connections


async def test_a_connection_is_renewed_after_max_messages(smtp: SmtpEmulator) -> None:
    email = EmailChannel(settings(smtp, pool_size=1, max_messages_per_connection=3))
    for n in range(7):
        await email.send(message(f"k{n}"))
    await email.aclose()
    assert smtp.connections == 3
    assert [m.connection for m in smtp.messages] == [1, 1, 1, 2, 2, 2, 3]


async def test_aclose_closes_the_connections(smtp: SmtpEmulator) -> None:
    email = EmailChannel(settings(smtp))
    await email.send_many([message(f"k{n}") for n in range(8)])
    assert smtp.open_connections >= 1
    await email.aclose()
    await asyncio.sleep(0.05)
    assert smtp.open_connections == 0
    with pytest.raises(RuntimeError):
        await email.send(message())


# -- failures: classified by RFC 5321 ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
async def test_a_4xx_is_transient_and_a_later_retry_succeeds(
    smtp: SmtpEmulator, channel: EmailChannel, stage: str
) -> None:
    smtp.refuse(451, stage=stage)  # type: ignore[arg-type]
    error = await fails(channel, message())
    assert type(error) is TransientError
    assert error.code == "smtp:451"
    assert "временно" in str(error)
    assert smtp.messages == []

    await channel.send(message())  # the dispatcher's retry, later
    assert len(smtp.mailbox(PARENT)) == 1
    assert smtp.connections == 1  # RSET kept the connection usable


async def test_a_421_is_transient_and_drops_the_pooled_connection(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    await channel.send(message("k1"))
    smtp.refuse(421, stage="mail")
    error = await fails(channel, message("k2"))
    assert type(error) is TransientError
    assert error.code == "smtp:421"
    await channel.send(message("k2"))
    assert smtp.connections == 2
    assert [m.connection for m in smtp.messages] == [1, 2]


async def test_a_421_greeting_is_transient(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    smtp.refuse(421, stage="connect")
    error = await fails(channel, message())
    assert isinstance(error, TransientError)
    assert error.code == "smtp:421"
    await channel.send(message())
    assert len(smtp.messages) == 1


async def test_a_rate_complaint_is_rate_limited(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    smtp.refuse(451, stage="rcpt", text="4.7.1 Too many messages from your IP, rate limit exceeded")
    error = await fails(channel, message())
    assert isinstance(error, RateLimited)
    assert error.code == "smtp:451"


async def test_a_5xx_for_the_recipient_is_a_permanent_bounce(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    smtp.reject_recipient(PARENT, text=f"5.1.1 <{PARENT}>: Recipient address rejected: User unknown")
    error = await fails(channel, message())
    assert type(error) is PermanentError
    assert error.code == "smtp:550"
    assert "5.1.1" in str(error) and "a***@mail.ru" in str(error)
    assert PARENT not in str(error)
    assert smtp.messages == []

    await channel.send(message(target="other@mail.ru"))  # the connection survives a refused recipient
    assert smtp.connections == 1


async def test_a_5xx_after_data_is_permanent(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    smtp.refuse(550, stage="data", text="5.7.1 Message rejected due to DMARC policy")
    error = await fails(channel, message())
    assert type(error) is PermanentError
    assert error.code == "smtp:550"
    assert "DMARC" in str(error)


async def test_greylisting_is_transient(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    smtp.greylist(PARENT)
    error = await fails(channel, message())
    assert isinstance(error, TransientError) and not isinstance(error, UnknownOutcome)
    assert error.code == "smtp:450"
    await channel.send(message())
    assert len(smtp.mailbox(PARENT)) == 1


async def test_a_drop_in_the_middle_of_data_is_not_permanent_and_the_next_send_works(
    smtp: SmtpEmulator, channel: EmailChannel
) -> None:
    smtp.drop_during_data(after_bytes=100)
    error = await fails(channel, message())
    # The whole letter had been written when the connection broke, so the client cannot tell whether the
    # server got the final dot: an unknown outcome, which is transient.
    assert isinstance(error, UnknownOutcome)
    assert error.code == "smtp:no-reply"
    assert smtp.messages == []

    await channel.send(message())
    assert len(smtp.mailbox(PARENT)) == 1
    assert smtp.connections == 2


async def test_a_drop_after_the_final_dot_is_unknown_and_a_resend_keeps_the_message_id(
    smtp: SmtpEmulator, channel: EmailChannel
) -> None:
    smtp.drop_after_data()
    error = await fails(channel, message())
    assert isinstance(error, UnknownOutcome)
    assert await channel.find_sent(message()) is None  # e-mail cannot ask the server
    sent = await channel.send(message())
    copies = smtp.mailbox(PARENT)
    assert len(copies) == 2  # the narrow duplicate case, told apart by the same Message-ID
    assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"] == sent.provider_id


async def test_a_timeout_before_data_is_transient_but_after_the_body_is_unknown(smtp: SmtpEmulator) -> None:
    email = EmailChannel(settings(smtp, timeout=0.3))
    smtp.delay(1.0, stage="rcpt")
    error = await fails(email, message("k1"))
    assert type(error) is TransientError
    assert error.code == "smtp:timeout"
    assert smtp.messages == []

    smtp.reset_faults()
    smtp.delay(1.0, stage="data")
    error = await fails(email, message("k2"))
    assert isinstance(error, UnknownOutcome)
    assert [m.message["Message-ID"] for m in smtp.messages] == [email.render(message("k2"))["Message-ID"]]
    await email.aclose()


async def test_a_dead_pooled_connection_is_replaced_without_an_error(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    await channel.send(message("k1"))
    smtp.break_connections()  # e.g. the server restarted while the connection sat in the pool
    await channel.send(message("k2"))
    assert [m.connection for m in smtp.messages] == [1, 2]
    assert smtp.connections == 2


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    email = EmailChannel(
        EmailSettings(host="127.0.0.1", port=port, from_address=FROM, helo_name="zvonok.test", timeout=1.0)
    )
    error = await fails(email, message())
    assert type(error) is TransientError
    assert error.code == "smtp:connect"
    await email.aclose()


# -- authentication and TLS ---------------------------------------------------------------------------------------


async def test_auth_success_and_wrong_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with SmtpEmulator(username="school5@school5.ru", password="Pa55-word") as smtp:
        good = EmailChannel(settings(smtp, username="school5@school5.ru", password="Pa55-word"))
        await good.send(message())
        await good.aclose()
        assert smtp.messages[0].login == "school5@school5.ru"

        bad = EmailChannel(settings(smtp, username="school5@school5.ru", password="wrong-Pa55"))
        error = await fails(bad, message())
        await bad.aclose()
        assert isinstance(error, CredentialError)
        assert error.code == "smtp:535"
        assert "wrong-Pa55" not in str(error)

        anonymous = EmailChannel(settings(smtp))
        error = await fails(anonymous, message())
        await anonymous.aclose()
        assert isinstance(error, CredentialError)
        assert error.code == "smtp:530"
        assert "Pa55-word" not in repr(settings(smtp, username="u", password="Pa55-word"))
    assert len(smtp.messages) == 1
    assert "Pa55" not in caplog.text
    assert PARENT not in caplog.text  # recipients are logged masked
    assert "a***@mail.ru" in caplog.text


async def test_starttls_with_auth() -> None:
    async with SmtpEmulator(starttls=True, username="u", password="p", auth_require_tls=True) as smtp:
        email = EmailChannel(settings(smtp, starttls=True, ca_file=smtp.ca_file, username="u", password="p"))
        await email.send(message())
        await email.aclose()
    [mail] = smtp.messages
    assert mail.tls and mail.login == "u"


async def test_starttls_required_but_not_offered_sends_nothing(smtp: SmtpEmulator) -> None:
    email = EmailChannel(settings(smtp, starttls=True))
    error = await fails(email, message())
    await email.aclose()
    assert type(error) is TransientError
    assert error.code == "smtp:tls"
    assert smtp.messages == []


async def test_an_untrusted_certificate_sends_nothing() -> None:
    async with SmtpEmulator(starttls=True) as smtp:
        email = EmailChannel(settings(smtp, starttls=True))  # system CAs only
        error = await fails(email, message())
        await email.aclose()
    assert type(error) is TransientError
    assert error.code == "smtp:tls"
    assert smtp.messages == []


async def test_implicit_tls() -> None:
    async with SmtpEmulator(implicit_tls=True) as smtp:
        email = EmailChannel(settings(smtp, use_tls=True, ssl_context=smtp.client_ssl_context()))
        await email.send(message())
        await email.aclose()
    assert smtp.messages[0].tls


# -- no header injection, valid addresses -------------------------------------------------------------------------


async def test_header_injection_adds_no_header_and_no_recipient(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    evil = message(
        title="Тема\r\nBcc: evil@x.ru",
        recipient_name="Иван\r\nCc: evil2@x.ru\nX-Evil: 1",
        school="Школа\rBcc: evil3@x.ru",
        audience="7Б\u2028Bcc: evil4@x.ru",
        kind_label="Мероприятие\r\nBcc: evil5@x.ru",
        reference="№1\x00\r\n\r\n<html>",
    )
    await channel.send(evil)

    [mail] = smtp.messages
    assert mail.recipients == (PARENT,)
    got = mail.message
    for name in ("Bcc", "Cc", "X-Evil"):
        assert name not in got
    assert got["To"].addresses == (Address("Иван Cc: evil2@x.ru X-Evil: 1", addr_spec=PARENT),)
    assert got["Subject"] == "Мероприятие Bcc: evil5@x.ru: Тема Bcc: evil@x.ru"
    head = mail.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]
    assert sorted(names) == sorted(
        [
            "Subject",
            "From",
            "To",
            "Reply-To",
            "Date",
            "Message-ID",
            "Content-Language",
            "Auto-Submitted",
            "List-Id",
            "List-Unsubscribe",
            "X-Mailru-Msgtype",
            "Feedback-ID",
            "MIME-Version",
            "Content-Type",
        ]
    )


@pytest.mark.parametrize(
    "target",
    [
        f"{PARENT}\r\nBcc: evil@x.ru",
        f"{PARENT}, evil@x.ru",
        f"Анна <{PARENT}>",
        "anna petrova@mail.ru",
        "анна@mail.ru",
        "anna@",
        "@mail.ru",
        "anna@localhost",
        "",
    ],
)
async def test_an_invalid_target_is_permanent_and_nothing_is_sent(
    smtp: SmtpEmulator, channel: EmailChannel, target: str
) -> None:
    error = await fails(channel, message(target=target))
    assert type(error) is PermanentError
    assert error.code == "smtp:address"
    assert "недействителен" in str(error)
    assert smtp.connections == 0


async def test_an_internationalised_domain_is_sent_in_punycode(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    await channel.send(message(target="roditel@школа.рф"))
    [mail] = smtp.messages
    assert mail.recipients == ("roditel@xn--80atdl2c.xn--p1ai",)


# -- deliverability headers and HTML ---------------------------------------------------------------------------


async def test_list_unsubscribe_headers_are_well_formed(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    url = "https://zvonok.school5.ru/unsubscribe/" + "a1b2c3d4" * 12
    await channel.send(message("ann-17:guardian-42", unsubscribe_url=url))
    await channel.send(message("ann-17:guardian-43", kind="force_majeure", kind_label="Срочно"))
    with_url, without_url = smtp.messages

    assert unfolded(with_url, "List-Unsubscribe") == (
        f"<mailto:{OFFICE}?subject=unsubscribe%20ann-17%3Aguardian-42>, <{url}>"
    )
    assert unfolded(with_url, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert unfolded(with_url, "List-Id") == "<school5.zvonok.school5.ru>"
    assert unfolded(with_url, "X-Mailru-Msgtype") == "schedulechange"
    assert unfolded(with_url, "Feedback-ID") == "schedulechange:school5:zvonok"
    assert all(len(line) <= 998 for line in with_url.data.split(b"\r\n"))
    assert f'href="{url}"' in with_url.html
    assert url in with_url.text

    assert unfolded(without_url, "List-Unsubscribe") == (
        f"<mailto:{OFFICE}?subject=unsubscribe%20ann-17%3Aguardian-43>"
    )
    assert "List-Unsubscribe-Post" not in without_url.message
    assert unfolded(without_url, "X-Mailru-Msgtype") == "forcemajeure"
    assert "Срочно: " in without_url.subject
    assert "ответьте на это письмо" in without_url.text


async def test_unsafe_urls_are_left_out(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    await channel.send(message(unsubscribe_url="javascript:alert(1)", ack_url="https://x.ru/a b\r\nBcc: e@x.ru"))
    [mail] = smtp.messages
    assert "javascript" not in mail.data.decode("ascii")
    assert "javascript" not in mail.html
    assert "Ознакомлен" not in mail.html
    assert "List-Unsubscribe-Post" not in mail.message
    assert "Bcc" not in mail.message


async def test_html_part_escapes_markup(smtp: SmtpEmulator, channel: EmailChannel) -> None:
    await channel.send(
        message(
            title="<script>alert('title')</script>",
            text='Текст <script>alert("x")</script> & <b onclick="x()">жирный</b>',
            recipient_name="<img src=x onerror=alert(1)>",
            school='Школа "<i>"',
        )
    )
    [mail] = smtp.messages
    html = mail.html
    assert "<script" not in html and "<img" not in html and "<b " not in html and "<i>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b onclick=&quot;x()&quot;&gt;" in html
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in html
    assert 'Текст <script>alert("x")</script>' in mail.text  # the plain part is plain


# -- accounts -----------------------------------------------------------------------------------------------------


async def test_each_account_sends_with_its_own_settings(smtp: SmtpEmulator) -> None:
    email = EmailChannel(
        {
            "school5": settings(smtp, from_address="noreply@school5.ru", from_name="МБОУ СОШ № 5"),
            "school7": settings(smtp, from_address="noreply@school7.ru", reply_to=""),
        }
    )
    await email.send(message("a", account="school5"))
    await email.send(message("b", account="school7", school="Школа № 7"))
    error = await fails(email, message("c", account="school9"))
    await email.aclose()

    first, second = smtp.messages
    assert first.message["From"].addresses == (Address("МБОУ СОШ № 5", addr_spec="noreply@school5.ru"),)
    assert second.message["From"].addresses == (Address("Школа № 7", addr_spec="noreply@school7.ru"),)
    assert second.message["Message-ID"].endswith("@school7.ru>")
    assert "mailto:noreply@school7.ru?" in unfolded(second, "List-Unsubscribe")
    assert isinstance(error, CredentialError)
    assert error.code == "smtp:account"


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="exclude"):
        EmailSettings(host="h", port=1, from_address=FROM, use_tls=True, starttls=True)
    with pytest.raises(ValueError, match="@"):
        EmailSettings(host="h", port=1, from_address="not an address")
    with pytest.raises(ValueError, match="positive"):
        EmailSettings(host="h", port=1, from_address=FROM, pool_size=0)


# -- one announcement, many recipients: the shared part is rendered once ---------------------------------------

PER_RECIPIENT = {"to", "message-id", "list-unsubscribe", "list-unsubscribe-post", "content-type"}


async def test_recipients_of_one_announcement_differ_only_in_their_own_parts(
    smtp: SmtpEmulator, channel: EmailChannel
) -> None:
    await channel.send(
        message(
            "ann-17:guardian-42",
            ack_url="https://zvonok.school5.ru/ack/17/42",
            unsubscribe_url="https://zvonok.school5.ru/unsubscribe/42",
        )
    )
    await channel.send(
        message(
            "ann-17:guardian-43",
            target="ivan.sidorov@yandex.ru",
            recipient_name="Иван Сидоров",
            ack_url="https://zvonok.school5.ru/ack/17/43",
            unsubscribe_url="https://zvonok.school5.ru/unsubscribe/43",
        )
    )
    anna, ivan = smtp.messages
    shared = [(k, v) for k, v in anna.message.items() if k.lower() not in PER_RECIPIENT]
    assert shared == [(k, v) for k, v in ivan.message.items() if k.lower() not in PER_RECIPIENT]
    assert ivan.message["To"].addresses == (Address("Иван Сидоров", addr_spec="ivan.sidorov@yandex.ru"),)
    assert anna.message["Message-ID"] != ivan.message["Message-ID"]
    assert unfolded(ivan, "List-Unsubscribe").endswith("<https://zvonok.school5.ru/unsubscribe/43>")

    def swap(text: str) -> str:
        return text.replace("Анна Петровна", "Иван Сидоров").replace("/42", "/43")

    assert swap(anna.text) == ivan.text
    assert swap(anna.html) == ivan.html


async def test_a_cached_announcement_never_carries_another_recipients_name_or_links(
    smtp: SmtpEmulator, channel: EmailChannel
) -> None:
    secret_ack = "https://zvonok.school5.ru/ack/17/secret-42"
    secret_unsubscribe = "https://zvonok.school5.ru/unsubscribe/secret-42"
    await channel.send(message("ann-17:g-42", ack_url=secret_ack, unsubscribe_url=secret_unsubscribe))
    await channel.send(message("ann-17:g-43", target="other@mail.ru", recipient_name=""))
    await channel.send(message("ann-17:g-44", target="third@mail.ru", recipient_name="Ольга"))

    first, second, third = smtp.messages
    assert secret_ack in first.html and secret_unsubscribe in first.text
    for mail in (second, third):
        raw = mail.data.decode("ascii")
        for leaked in ("Анна", "secret-42", "Ознакомлен", "List-Unsubscribe-Post"):
            assert leaked not in mail.text and leaked not in mail.html and leaked not in raw
        assert "ответьте на это письмо" in mail.text
    assert second.message["To"].addresses == (Address("", addr_spec="other@mail.ru"),)
    assert "Здравствуйте" not in second.text
    assert "Здравствуйте, Ольга!" in third.text


def test_a_changed_announcement_is_rendered_anew_and_the_cache_is_bounded(channel: EmailChannel) -> None:
    assert channel.render(message(title="Первый"))["Subject"] == "Изменение расписания: Первый"
    assert channel.render(message(title="Второй"))["Subject"] == "Изменение расписания: Второй"
    assert "Новый текст" in channel.render(message(text="Новый текст")).get_body(("plain",)).get_content()
    assert channel.render(message(school="Лицей № 2"))["From"].addresses[0].display_name == "Лицей № 2"
    for n in range(300):
        channel.render(message(title=f"Объявление {n}"))
    assert len(channel._templates) <= _TEMPLATES_MAX
    assert len(channel._heads) <= _TEMPLATES_MAX


def test_the_classes_of_one_announcement_share_its_headers_but_each_letter_names_its_class(
    channel: EmailChannel,
) -> None:
    letters = {name: channel.render(message(audience=f"{name} класс")) for name in ("7А", "8Б", "11В")}
    assert len(channel._heads) == 1 and len(channel._templates) == 3
    for name, letter in letters.items():
        assert letter["Subject"] == "Изменение расписания: Уроки 7Б начнутся в 10:00"
        others = [f"{other} класс" for other in letters if other != name]
        for part in (letter.get_body(("plain",)).get_content(), letter.get_body(("html",)).get_content()):
            assert f"{name} класс" in part and not any(other in part for other in others)


def test_the_letter_for_a_key_is_the_same_bytes_but_for_the_date(channel: EmailChannel) -> None:
    one = channel.render(message()).as_bytes()
    assert channel.render(message()).as_bytes() == one  # same key, same clock: same letter, same boundary
    assert all(byte < 0x80 for byte in one)


async def test_a_long_name_is_cut_between_its_words_and_the_list_is_the_schools(
    smtp: SmtpEmulator, channel: EmailChannel
) -> None:
    name = "Алексеева-Петровская Ирина Алексеевна"  # too long for one encoded word
    await channel.send(message(recipient_name=name, account="", school_id="s7"))
    [mail] = smtp.messages
    assert unfolded(mail, "To").count("=?utf-8?b?") > 1
    # Python's parser (policy.default) puts a space between encoded words; RFC 2047 readers join them: both show
    # every word whole
    parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert parsed["To"].addresses[0].display_name.split() == name.split()
    assert str(make_header(decode_header(unfolded(mail, "To")))) == f"{name} <{PARENT}>"
    assert unfolded(mail, "List-Id").startswith("<s7.zvonok.")  # the school's id, not a placeholder
    assert unfolded(mail, "Feedback-ID") == "schedulechange:s7:zvonok"


@pytest.mark.parametrize(
    "name",
    [
        "Анна-Мария Константиновна Петрова-Водкина-Оглы, бабушка ученицы 7Б класса " * 6,
        'O"Brien, Jr. \\ (guardian) <boss@x.ru>',
        "=?utf-8?q?Bcc:_evil@x.ru?=",
        "Иван =?utf-8?b?QmNjOiBldmlsQHgucnU=?=",
    ],
)
async def test_awkward_recipient_names_arrive_as_written(smtp: SmtpEmulator, channel: EmailChannel, name: str) -> None:
    await channel.send(message(recipient_name=name))
    [mail] = smtp.messages
    assert mail.recipients == (PARENT,)
    clean = " ".join(name.split())
    decoded = str(make_header(decode_header(unfolded(mail, "To"))))  # as RFC 2047 says, adjacent words joined
    parsed = mail.message["To"].addresses
    assert decoded == f"{clean} <{PARENT}>" or parsed == (Address(clean, addr_spec=PARENT),)
    assert [a.addr_spec for a in mail.message["To"].addresses] == [PARENT]
    assert "Bcc" not in mail.message and "Cc" not in mail.message
    head = mail.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert all(len(line) <= 78 for line in head if not line.startswith(b"List-Unsubscribe:"))
