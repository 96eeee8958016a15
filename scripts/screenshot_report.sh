#!/usr/bin/env bash
# Look at a report the way a reader does: render it in headless Chromium (Debian's `chromium`
# package: `apt-get install -y chromium`; browser downloads such as playwright's fail offline)
# and save a screenshot of the whole page.
#   bash scripts/screenshot_report.sh [report.html] [screenshot.png] [width] [height]
set -euo pipefail
page=${1:-cascadekit-report/report.html}
out=${2:-${page%.html}-screenshot.png}
width=${3:-1200}
height=${4:-3000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found: apt-get install -y chromium" >&2
  exit 1
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --window-size="$width,$height" --screenshot="$(realpath -m "$out")" \
  "file://$(realpath "$page")" 2>/dev/null
echo "$out"
