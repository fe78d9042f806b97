#!/usr/bin/env bash
# Make sure a headless Chromium is on PATH: tests/test_report.py opens the HTML report in
# it. Prints the browser's path. Only the report test needs it, not the workflow.
set -u
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && { command -v "$name"; exit 0; }
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing: installing Debian's chromium package" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1
  command -v chromium >/dev/null 2>&1 && { command -v chromium; exit 0; }
fi
echo "error: no Chromium found and it could not be installed here; install it (apt-get install chromium) to test the HTML report" >&2
exit 1
