# Raspberry Pi Zero board port (CPython): gpiozero's Button (debounce, long press via hold_time)
# and LED. Tests run it with gpiozero's mock pin factory (GPIOZERO_PIN_FACTORY=mock).
"""Board port for the Raspberry Pi Zero."""

import asyncio

_DEBOUNCE_S = 0.03  # contact bounce settles within ~5-20 ms
_LONG_PRESS_S = 3.0  # a 3 s hold is a long press


class Board:
    name = "pizero"

    def __init__(self, root, config, pin_factory=None):
        from gpiozero import LED, Button

        self.root = root
        pins = config.get("pins", {})
        self.button = Button(pins.get("BUTTON", 17), bounce_time=_DEBOUNCE_S,
                             hold_time=_LONG_PRESS_S, pin_factory=pin_factory)
        self.led = LED(pins.get("LED", 27), pin_factory=pin_factory)
        self._held = False

    def set_led(self, on):
        if on:
            self.led.on()
        else:
            self.led.off()

    def led_pattern(self, pattern):
        pass

    async def watch_button(self, on_press):
        """gpiozero calls back on its own thread; hand each press to the event loop."""
        loop = asyncio.get_running_loop()

        def held():
            self._held = True
            loop.call_soon_threadsafe(on_press, "long")

        def released():
            if not self._held:
                loop.call_soon_threadsafe(on_press, "short")
            self._held = False

        self.button.when_held = held
        self.button.when_released = released
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            self.button.when_held = None
            self.button.when_released = None

    async def network_up(self):
        return True  # Raspberry Pi OS brings the network up before our systemd unit starts

    def free_heap(self):
        return None
