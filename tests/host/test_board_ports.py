# The board ports that cannot run on this machine's hardware, driven through their own APIs:
# the Pi Zero port with gpiozero's mock pin factory, the ESP32 port with stand-ins for
# MicroPython's machine and network modules (debounce, long press, Wi-Fi retry and back-off).
from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

import pytest


def test_pizero_button_and_led() -> None:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from leither.port import pizero

    factory = MockFactory()
    Device.pin_factory = factory
    board = pizero.Board("/tmp", {"pins": {"BUTTON": 17, "LED": 27}}, pin_factory=factory)
    presses: list[str] = []

    async def scenario() -> None:
        task = asyncio.create_task(board.watch_button(presses.append))
        await asyncio.sleep(0.05)
        pin = factory.pin(17)
        pin.drive_low()  # pressed (gpiozero Button pulls up: low is pressed)
        await asyncio.sleep(0.1)
        pin.drive_high()
        for _ in range(100):  # polled, up to 5 s, not a fixed wait
            if presses:
                break
            await asyncio.sleep(0.05)
        task.cancel()

    pizero._LONG_PRESS_S = 3.0
    asyncio.run(scenario())
    assert presses == ["short"]
    board.set_led(True)
    assert factory.pin(27).state == 1
    board.set_led(False)
    assert factory.pin(27).state == 0
    board.button.close()
    board.led.close()


class FakePin:
    IN, OUT, PULL_UP, PULL_DOWN = 0, 1, 2, 3
    levels: dict[Any, int] = {}

    def __init__(self, pin: Any, mode: int = 0, pull: int | None = None) -> None:
        self.pin = pin
        FakePin.levels.setdefault(pin, 1)

    def value(self, v: int | None = None) -> int:
        if v is None:
            return FakePin.levels[self.pin]
        FakePin.levels[self.pin] = v
        return v


class FakeWLAN:
    attempts = 0
    succeed_after = 2

    def __init__(self, interface: int) -> None:
        self.connected = False

    def active(self, on: bool) -> None:
        pass

    def connect(self, ssid: str, password: str) -> None:
        FakeWLAN.attempts += 1
        self.connected = FakeWLAN.attempts > FakeWLAN.succeed_after

    def isconnected(self) -> bool:
        return self.connected

    def disconnect(self) -> None:
        pass

    def ifconfig(self) -> tuple[str, str, str, str]:
        return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")


@pytest.fixture()
def esp32(monkeypatch: pytest.MonkeyPatch) -> Any:
    machine = types.SimpleNamespace(Pin=FakePin)
    network = types.SimpleNamespace(WLAN=FakeWLAN, STA_IF=0, hostname=lambda name: None)
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "network", network)
    sys.modules.pop("leither.port.esp32", None)
    import leither.port.esp32 as port

    # asyncio.sleep_ms is MicroPython's; here it maps onto asyncio.sleep.
    async def sleep_ms(ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    monkeypatch.setattr(asyncio, "sleep_ms", sleep_ms, raising=False)
    FakePin.levels = {}
    yield port
    sys.modules.pop("leither.port.esp32", None)


def test_esp32_debounce_and_long_press(esp32: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a simulated clock (deterministic however loaded the machine): the button line
    follows a timeline of (ms, level) and the port polls it as it would on the board."""
    board = esp32.Board("/data", {"pins": {"BUTTON": 0, "LED": 2}, "button_active_low": True})
    presses: list[tuple[int, str]] = []
    clock = {"ms": 0}
    # Active low: 0 is pressed. Bounce bursts shorter than the 30 ms debounce come first.
    timeline = [(100, 0), (108, 1), (112, 0), (118, 1),  # 18 ms of bounce: no press
                (300, 0), (303, 1), (305, 0),  # a press that bounces, then holds
                (450, 1), (452, 0), (454, 1),  # released 145 ms later, bouncing: short
                (1000, 0), (4500, 1),  # held 3.5 s: long (once), no short on release
                (5000, 0), (5020, 1)]  # 20 ms blip: too short to count
    levels = list(timeline)

    async def sleep_ms(ms: int) -> None:
        clock["ms"] += ms
        while levels and levels[0][0] <= clock["ms"]:
            FakePin.levels[0] = levels.pop(0)[1]
        await asyncio.sleep(0)

    monkeypatch.setattr(asyncio, "sleep_ms", sleep_ms, raising=False)
    monkeypatch.setattr(esp32, "ticks_ms", lambda: clock["ms"])

    async def scenario() -> None:
        task = asyncio.create_task(board.watch_button(
            lambda kind: presses.append((clock["ms"], kind))))
        while clock["ms"] < 6000:
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(scenario())
    kinds = [kind for _t, kind in presses]
    assert kinds == ["short", "long"], presses
    assert 450 <= presses[0][0] <= 500  # reported once the release settled
    assert 4000 <= presses[1][0] <= 4100  # reported at 3 s of holding, not on release
    board.set_led(True)
    assert FakePin.levels[2] == 1


def test_esp32_wifi_retries_with_backoff(esp32: Any) -> None:
    FakeWLAN.attempts = 0
    FakeWLAN.succeed_after = 2
    esp32._WIFI_TIMEOUT_MS = 50
    esp32._WIFI_BACKOFF_MS = (10, 20)
    board = esp32.Board("/data", {"wifi": {"ssid": "home", "password": "pw"}, "name": "n1"})
    assert asyncio.run(board.network_up()) is True
    assert FakeWLAN.attempts == 3
    assert board.addresses() == ["192.168.4.2"]
