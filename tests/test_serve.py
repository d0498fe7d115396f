"""`zvonok serve` as a long-running service: it sends what another process commits, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import weakref
from pathlib import Path

from adapters.emulators.smtp import SmtpEmulator
from gateway.app import freeze_startup_objects
from tests.data import ROSTER_CSV, write_config


async def zvonok(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def test_serve_sends_what_another_process_posts(tmp_path: Path) -> None:
    arrived = asyncio.Event()
    async with SmtpEmulator(on_message=lambda _: arrived.set()) as smtp:
        settings = (
            f"database: sqlite:///{tmp_path / 'z.db'}\n"
            f"email: {{host: {smtp.host}, port: {smtp.port}, from: noreply@s1.test}}\n"
            "max: {base_url: 'http://127.0.0.1:9'}\nvk: {base_url: 'http://127.0.0.1:9'}\n"  # never used here
            "dispatch: {poll_seconds: 0.2}\nlisten: 127.0.0.1:0\n"
        )
        cfg = str(write_config(tmp_path / "config", settings=settings, roster=ROSTER_CSV))
        imported = await zvonok("roster", "import", "--config", cfg, str(tmp_path / "config" / "rosters" / "s1.csv"))
        assert await imported.wait() == 0
        service = await zvonok("serve", "--config", cfg)
        try:
            assert service.stdout is not None
            banner = await asyncio.wait_for(service.stdout.readline(), timeout=30)
            assert "Zvonok работает" in banner.decode()
            poster = await zvonok(
                "announce", "--config", cfg, "--author", "dep", "--classes", "7Б", "--title", "Т", "--text", "Текст"
            )
            assert await poster.wait() == 0
            with contextlib.suppress(TimeoutError):  # generous: CI machines are shared and slow
                await asyncio.wait_for(arrived.wait(), timeout=60)  # the service picks it up at its next poll
            assert [m.recipients for m in smtp.messages] == [("irina@mail.test",)], await _stderr(service)
        finally:
            service.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(service.wait(), timeout=30)
        err = await _stderr(service)
        assert code == 0, err
        assert "Traceback" not in err


async def _stderr(process: asyncio.subprocess.Process) -> str:
    """What the process wrote to stderr so far (the service logs there), for a failing assertion's message."""
    assert process.stderr is not None
    try:
        return (await asyncio.wait_for(process.stderr.read(65536), timeout=1)).decode(errors="replace")
    except TimeoutError:
        return "(no stderr)"


def test_a_service_leaves_its_start_up_objects_out_of_full_collections_after_collecting_garbage() -> None:
    class Node:
        me: object

    kept, dead = Node(), Node()
    kept.me, dead.me = kept, dead  # two reference cycles: one still in use, one garbage
    gone = weakref.ref(dead)
    del dead
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic collection between here and the freeze
    try:
        freeze_startup_objects()
        assert gone() is None  # the garbage was collected, not kept for good
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # frozen: no collection walks it again
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
