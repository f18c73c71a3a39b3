#!/usr/bin/env bash
# Regenerates plotly-basic.min.js: the plotly.js "basic" partial bundle (scatter, bar, pie —
# all the page draws), 1.2 MB instead of the full 4.8 MB one the plotly Python package ships.
# Run it by hand when upgrading; nothing is fetched when the dashboard runs or the tests do.
#   iotpipe/dashboard/static/vendor/update.sh [VERSION]   (default: the version vendored now)
set -euo pipefail
cd "$(dirname "$0")"
version=${1:-4.1.1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "plotly.js-basic-dist-min@$version" >/dev/null && tar xzf ./*.tgz)
cp "$work/package/plotly-basic.min.js" plotly-basic.min.js
cp "$work/package/LICENSE" plotly.js-LICENSE
head -c 200 plotly-basic.min.js | grep -o "v[0-9.]*" | head -1
