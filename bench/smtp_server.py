"""The SMTP emulator (aiosmtpd) in a process of its own, for the benchmarks.

A mail server is a system of its own: run in the benchmark's process it would share that process's event loop
and interpreter lock with whatever the benchmark does meanwhile (posting announcements, polling the store's
progress), and be slowed by it for the gateway's run but not for the raw client's. Here it is asked over its
standard input how much it received, and for the letters themselves (for the raw client to send again).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

Letter = tuple[str, list[str], bytes]
"""(envelope sender, envelope recipients, the letter as the server received it)"""

_SERVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from adapters.emulators.smtp import SmtpEmulator

    async def main():
        async with SmtpEmulator(idle_timeout=600) as smtp:
            print(smtp.port, flush=True)
            loop = asyncio.get_running_loop()
            while True:
                line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
                if line == "count":
                    counts = {}
                    for mail in smtp.messages:
                        for rcpt in mail.recipients:
                            counts[rcpt] = counts.get(rcpt, 0) + 1
                    print(len(smtp.messages), len(counts), max(counts.values(), default=0), flush=True)
                elif line.startswith("save "):
                    with open(line[5:], "w", encoding="ascii") as out:
                        for mail in smtp.messages:
                            out.write(json.dumps([mail.sender, list(mail.recipients), mail.data.decode("ascii")]))
                            out.write("\\n")
                    print("ok", flush=True)
                elif line == "clear":
                    smtp.clear()
                    print("ok", flush=True)
                else:
                    return

    asyncio.run(main())
    """
)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class SmtpServerProcess:
    """The SMTP emulator in a child process, listening on 127.0.0.1:`port`."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own emulator
            [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def received(self) -> tuple[int, int, int]:
        """(letters, distinct recipients, the most letters any recipient got) since the last `clear`."""
        messages, recipients, most = (int(x) for x in self._ask("count").split())
        return messages, recipients, most

    def letters(self) -> list[Letter]:
        """Every letter received since the last `clear`, byte for byte."""
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as dump:
            if self._ask(f"save {dump.name}") != "ok":
                raise RuntimeError("the SMTP server could not save its letters")
            rows = [json.loads(line) for line in Path(dump.name).read_text(encoding="ascii").splitlines()]
        return [(sender, recipients, data.encode("ascii")) for sender, recipients, data in rows]

    def clear(self) -> None:
        if self._ask("clear") != "ok":
            raise RuntimeError("the SMTP server could not forget its letters")

    def close(self) -> None:
        self._ask("quit")
        self.proc.wait(timeout=10)

    def __enter__(self) -> SmtpServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.close()


def message_id(letter: Letter) -> str:
    """The letter's Message-ID header."""
    found = _MESSAGE_ID.search(letter[2].split(b"\r\n\r\n", 1)[0])
    return found.group(1).decode("ascii") if found else ""
