# Sensors behind one small interface. A driver has:
#   kind              its type in the config ("dht22")
#   base              tuple of (metric, unit, decimals), the order read_into fills
#   read_into(v, i)   writes one value per metric into v[i], v[i+1], ...; raises OSError
#                     or ValueError on a failed read, and allocates nothing it need not
# Each driver lives in its own module, imported only when the config names it: the
# unix port never needs `dht` or `onewire`, a board without them fails with a clear
# reason, and an ESP8266 keeps in RAM only the drivers it uses.

DRIVERS = {
    "sim": ("sensor_sim", "Simulated"),
    "failing": ("sensor_sim", "Failing"),  # for tests: a sensor that always fails
    "dht11": ("sensor_dht", "DHT"),
    "dht22": ("sensor_dht", "DHT"),
    "ds18b20": ("sensor_ds18b20", "DS18B20"),
    "mcu": ("sensor_mcu", "InternalTemperature"),
    "battery": ("sensor_battery", "Battery"),  # from the config's battery_adc
}


def valid_metric(name):
    # The host accepts [a-z][a-z0-9_]{0,31}; checked once here, at setup.
    if not 0 < len(name) <= 32 or not "a" <= name[0] <= "z":
        return False
    for ch in name:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "_"):
            return False
    return True


def build(spec, taken):
    # -> a driver with .name and .metrics set; raises for a bad spec or missing hardware.
    # taken: metric names already given by earlier sensors (extended here).
    if not isinstance(spec, dict):
        raise ValueError("a sensor must be a JSON object")
    where = DRIVERS.get(spec.get("type"))
    if where is None:
        raise ValueError("unknown sensor type %r" % (spec.get("type"),))
    sensor = getattr(__import__(where[0]), where[1])(spec)
    sensor.name = str(spec.get("name") or sensor.kind)
    prefix = spec.get("prefix") or ""
    metrics = tuple([(prefix + m[0], m[1], m[2]) for m in sensor.base])
    for m in metrics:
        if not valid_metric(m[0]):
            raise ValueError("metric name %r is not [a-z][a-z0-9_]{0,31}" % m[0])
        if m[0] in taken:
            raise ValueError("metric %r is already taken; give this sensor a prefix" % m[0])
    for m in metrics:
        taken.append(m[0])
    sensor.metrics = metrics
    return sensor
