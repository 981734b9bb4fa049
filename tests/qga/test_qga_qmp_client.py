"""The independent ``qemu.qmp`` client library against our front-end."""

from __future__ import annotations

import asyncio
import socket

import pytest
from qemu import qmp  # a dev requirement: never skipped

from concierge.testing.qga_inproc import Agent


def test_qemu_qmp_async_client(agent: Agent) -> None:
    async def scenario() -> None:
        client = qmp.QMPClient("concierge")
        client.await_greeting = False
        client.negotiate = False
        await client.connect(str(agent.socket_path))
        try:
            assert await client.execute("guest-sync", {"id": 12345}) == 12345
            assert await client.execute("guest-ping") == {}
            assert await client.execute("guest-get-host-name") == {"host-name": socket.gethostname()}
            with pytest.raises(qmp.ExecuteError) as err:
                await client.execute("guest-nope")
            assert err.value.error_class == "CommandNotFound"
            with pytest.raises(qmp.ExecuteError) as err:
                await client.execute("guest-file-open", {"path": "/nonexistent/x"})
            assert err.value.error_class == "GenericError"
            assert "failed to open file" in str(err.value)
            info = await client.execute("guest-info")
            assert len(info["supported_commands"]) == 44
        finally:
            await client.disconnect()

    asyncio.run(scenario())


def test_qemu_qmp_legacy_client(agent: Agent) -> None:
    from qemu.qmp.legacy import QEMUMonitorProtocol

    client = QEMUMonitorProtocol(str(agent.socket_path))
    client.connect(negotiate=False)
    client.settimeout(5)
    try:
        assert client.cmd("guest-sync", id=4242) == 4242
        reply = client.cmd_obj({"execute": "guest-nope"})
        assert reply["error"]["class"] == "CommandNotFound"
    finally:
        client.close()
