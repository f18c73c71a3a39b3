#!/usr/bin/env bash
# The README's two commands. Each installs what it needs, then runs:
#   ./dev.sh up   [iotpipe up flags…]   Mosquitto + a virtualenv with iotpipe, then `iotpipe up`
#   ./dev.sh test [pytest flags…]       the same plus the test tools, then the whole test suite
# Works on a fresh Debian or Ubuntu with Python 3.11+, as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
RUN_PACKAGES=(mosquitto mosquitto-clients)
# chromium: the browser tests; postgresql: the dashboard store tests run on it too.
TEST_PACKAGES=(chromium postgresql gcc-multilib)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

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
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

install_python_packages() {
    local extras=$1 stamp="$VENV/.iotpipe-$1"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "iotpipe needs Python 3.11 or newer; this python3 is $(python3 -V)" >&2; exit 1; }
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
    # Reinstall only when the dependencies changed (pyproject.toml is the one list).
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing iotpipe[$extras] into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[$extras]"
        touch "$stamp"
    fi
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
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh up [iotpipe up flags…] | ./dev.sh test [pytest flags…]" >&2
        exit 2
        ;;
esac
