#!/usr/bin/env bash
# Run a command as a machine with no Chrome/Chromium would: every browser binary static export or
# the browser tests could find is hidden behind /dev/null in a private mount namespace.
# Needs root (unshare -m). Used by .ci/run; e.g. `scripts/without_browser.sh make test`.
set -euo pipefail
if [ "${1:-}" != "--inside" ]; then
  exec unshare -m "$0" --inside "$@"
fi
shift
for f in /usr/bin/chromium /usr/lib/chromium/chromium /usr/bin/chromium-browser \
         /usr/bin/google-chrome /usr/bin/google-chrome-stable /opt/google/chrome/chrome; do
  if [ -e "$f" ]; then mount --bind /dev/null "$f"; fi
done
for d in "$HOME/.local/share/choreographer" "$HOME/.cache/ms-playwright"; do
  if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi
done
export WORKBENCH_NO_BROWSER_PROVISION=1 BROWSER_PATH=
exec "$@"
