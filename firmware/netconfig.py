# Checks of the config keys of a board that publishes over MQTT itself (transport
# "mqtt"), loaded only then: a bad value is a problem reported at boot and the default is
# used, as board.check_config does for the other keys. A board whose MQTT settings cannot
# work falls back to the serial transport, so it still reports somewhere.
import sys

TOPIC_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
MAX_BUFFER = 1000
MAX_KEEP_S = 3600
DEFAULTS = {
    "wifi_ssid": None,
    "wifi_password": None,
    "mqtt_host": None,
    "mqtt_port": 1883,
    "mqtt_user": None,
    "mqtt_password": None,
    "base_topic": "iotpipe",
    "mqtt_keepalive_s": 60,
    "deep_sleep": False,
    "battery_adc": None,
    "buffer_max": 60,  # 28 bytes each with two metrics: 1.7 KB of an ESP8266's ~37 KB
    # Acknowledged readings kept and sent again after a reconnect, as the bridge's
    # --keep-acked: past the broker's autosave_interval (60 s), with room for a restart.
    "keep_acked_s": 150,
    "ntp_host": None,
    "mqtt_ca": None,  # a CA certificate file (DER) on the flash: TLS, checked against it
}


def _whole(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _topic_levels(text):
    if not isinstance(text, str) or not text:
        return False
    for level in text.split("/"):
        if not level or [c for c in level if c not in TOPIC_CHARS]:
            return False
    return True


def check(config, problems):
    for key in DEFAULTS:
        if config.get(key) is None:
            config[key] = DEFAULTS[key]

    def bad(key, why):
        problems.append("%s %r %s" % (key, config[key], why))
        config[key] = DEFAULTS.get(key, "serial")

    for key in ("wifi_ssid", "wifi_password", "mqtt_user", "mqtt_password", "ntp_host",
                "mqtt_ca"):
        if not isinstance(config[key], (str, type(None))):
            bad(key, "must be text")
    if not _whole(config["mqtt_port"], 1, 65535):
        bad("mqtt_port", "is not a port number 1-65535")
    if not _whole(config["mqtt_keepalive_s"], 0, 65535):
        bad("mqtt_keepalive_s", "is not a whole number 0-65535")
    if not _whole(config["buffer_max"], 1, MAX_BUFFER):
        bad("buffer_max", "is not a whole number 1-%d" % MAX_BUFFER)
    if not _whole(config["keep_acked_s"], 0, MAX_KEEP_S):
        bad("keep_acked_s", "is not a whole number 0-%d" % MAX_KEEP_S)
    if not _topic_levels(config["base_topic"]):
        bad("base_topic", "must be levels of [A-Za-z0-9_.-] separated by '/'")
    if not isinstance(config["deep_sleep"], bool):
        bad("deep_sleep", "must be true or false")
    adc = config["battery_adc"]
    if adc is not None and not (isinstance(adc, dict) and "pin" in adc
                                and isinstance(adc.get("ratio"), (int, float))
                                and adc["ratio"] > 0):
        bad("battery_adc", 'must be null or {"pin": N, "ratio": R} with R > 0')
    if config["transport"] not in ("serial", "mqtt"):
        bad("transport", 'must be "serial" or "mqtt"')
    device = config["device_id"]
    if config["transport"] == "mqtt" and device is not None and (
            not _topic_levels(device) or "/" in device or len(device) > 64):
        problems.append("device_id %r is not safe in an MQTT topic; using the default" % device)
        config["device_id"] = None
    if config["transport"] == "mqtt" and not isinstance(config["mqtt_host"], str):
        problems.append("transport mqtt needs mqtt_host; using serial")
        config["transport"] = "serial"
    config["mqtt_ca_der"] = None
    if config["transport"] == "mqtt" and config["mqtt_ca"] is not None:
        _load_ca(config, problems)


def _load_ca(config, problems):
    # Never plain MQTT instead: the board's password would cross the network in clear.
    name = config["mqtt_ca"]
    if sys.platform == "esp8266":
        why = "cannot be used: the esp8266 port's TLS does not check certificates"
    else:
        try:
            with open(name, "rb") as f:
                config["mqtt_ca_der"] = f.read()
            return
        except OSError as e:
            why = "is unreadable (%r)" % (e,)
    problems.append("mqtt_ca %r %s; using serial" % (name, why))
    config["transport"] = "serial"

