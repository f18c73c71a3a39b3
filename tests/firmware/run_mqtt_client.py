# Runs under the MicroPython unix port (tests/test_firmware_mqtt.py): the firmware's MQTT
# client and uplink against a broker on 127.0.0.1, as the test asks:
#   bytes PORT               a fixed sequence of packets, for the test to compare byte by byte
#   login PORT USER PASSWORD connect with credentials and publish QoS 1
#   tls PORT USER PASSWORD CA  the same over TLS, trusting the CA certificate file (DER)
#   abrupt PORT              connect with a will, then end without DISCONNECT
#   clock PORT               readings taken before the clock is set, published after
import sys
import time

import mqtt

mode, port = sys.argv[1], int(sys.argv[2])


def bytes_sequence():
    c = mqtt.MQTTClient("fw-1", "127.0.0.1", port, "u", "pw", keepalive_s=30)
    c.set_last_will("b/fw-1/status", "offline", retain=True, qos=1)
    print("session", c.connect(clean_session=False))
    c.publish("b/fw-1/telemetry", "x" * 200)
    c.publish("b/fw-1/status", "online", retain=True, qos=1)
    print("granted", c.subscribe("b/fw-1/cmd", 1))
    c.ping()
    c.check_msg(2000)
    print("pongs", c.pongs)
    c.disconnect()


def login(user, password, ca=None):
    c = mqtt.MQTTClient("fw-login", "localhost" if ca else "127.0.0.1", port, user, password,
                        ca=ca)
    try:
        c.connect()
    except (mqtt.MQTTException, OSError, ValueError) as e:
        print("refused:", e)
        return
    c.publish("iotpipe/fw-login/telemetry", "hello", qos=1)  # returns once PUBACK came
    print("puback")
    c.disconnect()


def abrupt():
    c = mqtt.MQTTClient("fw-will", "127.0.0.1", port)
    c.set_last_will("iotpipe/fw-will/status", "offline", retain=True, qos=1)
    c.connect()
    c.publish("iotpipe/fw-will/status", "online", retain=True, qos=1)
    print("connected")
    sys.exit(3)  # the process ends; its socket closes without DISCONNECT


def clock():
    import boardconfig
    import netboard
    import netconfig
    import netloop

    config, problems = boardconfig.load_config("none.json")
    config.update({"device_id": "fw-clock", "transport": "mqtt", "mqtt_host": "127.0.0.1"})
    netconfig.check(config, problems)
    config["mqtt_port"] = port
    n, link = netloop.build(config, problems, "0a1b2c3d")
    for _ in range(2):
        n.sample()  # the clock is not set yet: these wait with ts unknown
        time.sleep_ms(300)
    print("wall before connect", netboard.wall_ms())
    link.connect()
    link.flush()
    link.client.disconnect()
    print("sent")


if mode == "bytes":
    bytes_sequence()
elif mode == "login":
    login(sys.argv[3], sys.argv[4])
elif mode == "tls":
    with open(sys.argv[5], "rb") as f:
        login(sys.argv[3], sys.argv[4], f.read())
elif mode == "abrupt":
    abrupt()
elif mode == "clock":
    clock()
