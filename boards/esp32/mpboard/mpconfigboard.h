// Leither on an ESP32-WROOM-32 (see mpconfigboard.cmake).
#define MICROPY_HW_BOARD_NAME "Leither ESP32 (WROOM-32)"
#define MICROPY_HW_MCU_NAME "ESP32"
// ESP-IDF's mDNS binds UDP 5353 without SO_REUSEADDR; the node runs its own responder
// (firmware/leither/mdns.py, firmware/leither/port/net.py).
#define MICROPY_HW_ENABLE_MDNS_QUERIES (0)
#define MICROPY_HW_ENABLE_MDNS_RESPONDER (0)
