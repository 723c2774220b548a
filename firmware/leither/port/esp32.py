# ESP32 board port (MicroPython): button with debounce and long press, LED, Wi-Fi join with
# retry and back-off, storage on the flash filesystem. Pins come from boards/esp32/board.json
# (copied to the board as config at flash time).
#
# mDNS: stock MicroPython for ESP32 runs ESP-IDF's own mDNS responder, which holds UDP 5353;
# leither.port.net explains how the node handles that (our build disables it; on stock
# firmware the node sets network.hostname() and falls back to one-shot queries).
"""Board port for ESP32 boards."""

import asyncio

import machine
import network

from ..compat import ticks_diff, ticks_ms

_DEBOUNCE_MS = 30  # contact bounce of a tactile switch settles within ~5-20 ms
_LONG_PRESS_MS = 3000  # a 3 s hold is a long press (e.g. unpair, factory actions)
_POLL_MS = 10
_WIFI_TIMEOUT_MS = 15000  # one join attempt
_WIFI_BACKOFF_MS = (1000, 2000, 5000, 10000, 30000)  # between failed attempts, then stays at 30 s


class Board:
    name = "esp32"

    def __init__(self, root, config):
        self.root = root
        self.config = config
        pins = config.get("pins", {})
        self.active_low = config.get("button_active_low", True)
        self.button = machine.Pin(pins.get("BUTTON", 0), machine.Pin.IN,
                                  machine.Pin.PULL_UP if self.active_low
                                  else machine.Pin.PULL_DOWN)
        self.led = machine.Pin(pins.get("LED", 2), machine.Pin.OUT)
        self.led.value(0)
        self.wlan = None

    def set_led(self, on):
        self.led.value(1 if on else 0)

    def led_pattern(self, pattern):
        pass  # the pin itself shows it

    def _pressed(self):
        return self.button.value() == (0 if self.active_low else 1)

    async def watch_button(self, on_press):
        """Debounced: a state must hold _DEBOUNCE_MS to count; held _LONG_PRESS_MS is long."""
        stable = self._pressed()
        since = ticks_ms()
        down_at = None
        long_sent = False
        while True:
            now = ticks_ms()
            raw = self._pressed()
            if raw != stable:
                if ticks_diff(now, since) >= _DEBOUNCE_MS:
                    stable = raw
                    if stable:
                        down_at = now
                        long_sent = False
                    elif down_at is not None and not long_sent:
                        on_press("short")
                        down_at = None
            else:
                since = now
            if stable and down_at is not None and not long_sent and \
                    ticks_diff(now, down_at) >= _LONG_PRESS_MS:
                long_sent = True
                on_press("long")
            await asyncio.sleep_ms(_POLL_MS)

    async def network_up(self):
        """Join the configured Wi-Fi, retrying with back-off until it works."""
        wifi = self.config.get("wifi") or {}
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        try:
            network.hostname(self.config.get("name", "leither"))
        except (AttributeError, ValueError, OSError):
            pass
        attempt = 0
        while not self.wlan.isconnected():
            self.wlan.connect(wifi.get("ssid", ""), wifi.get("password", ""))
            start = ticks_ms()
            while not self.wlan.isconnected() and ticks_diff(ticks_ms(), start) < _WIFI_TIMEOUT_MS:
                await asyncio.sleep_ms(200)
            if self.wlan.isconnected():
                break
            self.wlan.disconnect()
            wait = _WIFI_BACKOFF_MS[min(attempt, len(_WIFI_BACKOFF_MS) - 1)]
            attempt += 1
            print("leither: wifi join failed, retry in %d ms" % wait)
            await asyncio.sleep_ms(wait)
        return True

    def addresses(self):
        if self.wlan is not None and self.wlan.isconnected():
            return [self.wlan.ifconfig()[0]]
        return []

    def free_heap(self):
        import gc

        gc.collect()  # free heap means live data only, not garbage awaiting collection
        return gc.mem_free()
