#!/usr/bin/env bash
# Renders the planted-data report of tests/tests/api/planted.rs (a trend, a spike, a weekly
# season with one odd Saturday, a group driving the change, a target, and noise) as the
# README's images: the html page through headless Chromium, page 1 of the pdf through
# pdftoppm; and a published dashboard as a browser gets it (tests/tests/api/dashboards.rs). Needs Debian's `chromium` and `poppler-utils`; the files themselves are kept in
# $PULSEBOARD_REPORT_DIR (default: a new temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in chromium pdftoppm; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install chromium poppler-utils" >&2; exit 1; }
done
out="${PULSEBOARD_REPORT_DIR:-$(mktemp -d)}"
mkdir -p "$out"
PULSEBOARD_REPORT_DIR="$out" scripts/local-stack.sh \
  cargo test -p pulseboard-tests --test api -- planted:: dashboards::a_browser_opening
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=820,2600 \
  --screenshot="$PWD/docs/images/report-html.png" "file://$out/planted.html" 2>/dev/null
pdftoppm -png -r 80 -f 1 -l 1 -singlefile "$out/planted.pdf" docs/images/report-pdf
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=820,1400 \
  --screenshot="$PWD/docs/images/published-dashboard.png" "file://$out/published.html" 2>/dev/null
echo "files in $out; images in docs/images/report-html.png, report-pdf.png and published-dashboard.png"
