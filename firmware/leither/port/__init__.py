# Board ports: the only modules that touch hardware (GPIO, Wi-Fi, socket option numbers).
