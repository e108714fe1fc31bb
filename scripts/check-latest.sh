#!/usr/bin/env bash
# Drift check: does campaign still work with the newest releases its ranges allow, and
# with the lowest? Not part of .ci/run's pass or fail: it reads PyPI as it is today.
#
#   bash scripts/check-latest.sh               # both: newest, then lowest-direct
#   bash scripts/check-latest.sh highest       # one of them
#   PYTEST_ARGS="-x -q tests/test_send.py" bash scripts/check-latest.sh
#
# For each resolution it makes a throwaway venv, installs the project with its `dev` extra
# as uv resolves pyproject.toml's ranges (ignoring uv.lock), runs the test suite, and, for
# the newest releases, runs `campaign --help`, `campaign demo` and a PDF export with every
# warning shown, since users must never see a library's warning. It ends with one line per
# resolution: what differs from uv.lock, and what broke.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
UV=${UV:-$ROOT/.venv/.uv/bin/uv}
PYTHON=${PYTHON:-python3}
PYTEST_ARGS=${PYTEST_ARGS:--q -p no:cacheprovider}
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(highest lowest-direct)
if [ ! -x "$UV" ]; then
  echo "check-latest: $UV not found; run 'make' first (or set UV=/path/to/uv)" >&2
  exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/campaign-check-latest.XXXXXX")
trap 'rm -rf "$work"' EXIT
declare -A summary

locked_versions() {
  # name==version for every package in uv.lock
  "$UV" export --frozen --extra dev --no-hashes --no-emit-project --no-header --no-annotate 2>/dev/null |
    sed -n 's/^\([A-Za-z0-9_.-]*\)==\([^ ;]*\).*/\1==\2/p' | tr 'A-Z_' 'a-z-' | sort -u
}

for mode in "${modes[@]}"; do
  echo "=== $mode: resolving pyproject.toml's ranges ==="
  venv=$work/$mode
  "$PYTHON" -m venv "$venv" || { summary[$mode]="could not make a venv"; continue; }
  reqs=$work/$mode.txt
  if ! "$UV" pip compile --quiet pyproject.toml --extra dev --resolution "$mode" \
      --python "$venv/bin/python" --no-header --no-annotate -o "$reqs"; then
    summary[$mode]="does not resolve"
    continue
  fi
  if ! "$UV" pip install --quiet --python "$venv/bin/python" -r "$reqs" ||
     ! "$UV" pip install --quiet --python "$venv/bin/python" --no-deps -e .; then
    summary[$mode]="does not install"
    continue
  fi
  drift=$(comm -13 <(locked_versions) <(sed -n 's/^\([A-Za-z0-9_.-]*\)==\([^ ;]*\).*/\1==\2/p' "$reqs" | tr 'A-Z_' 'a-z-' | sort -u) | tr '\n' ' ')
  echo "differs from uv.lock: ${drift:-nothing}"
  problems=()
  log=${TMPDIR:-/tmp}/campaign-check-latest-$mode.log  # kept, for reading what broke
  # shellcheck disable=SC2086
  PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest $PYTEST_ARGS >"$log" 2>&1
  rc=$?
  tail -n 25 "$log"
  echo "(whole test log: $log)"
  if [ $rc -ne 0 ]; then
    failed=$(grep -cE '^(FAILED|ERROR) ' "$log")
    problems+=("tests: exit $rc, $failed failed or errored ($(grep -E '^(FAILED|ERROR) ' "$log" | head -3 | cut -c1-100 | tr '\n' ';'))")
  fi
  if [ "$mode" = highest ]; then
    ws=$work/ws
    mkdir -p "$ws"
    cp -r letters recipients.yaml campaign.toml "$ws"/
    warn=$work/warnings.txt
    : >"$warn"
    {
      PYTHONWARNINGS=default "$venv/bin/campaign" --help
      PYTHONWARNINGS=default "$venv/bin/campaign" -C "$ws" demo
      PYTHONWARNINGS=default CAMPAIGN_KEY_PASSPHRASE=check-latest "$venv/bin/campaign" -C "$ws" keys init
      PYTHONWARNINGS=default CAMPAIGN_KEY_PASSPHRASE=check-latest "$venv/bin/campaign" -C "$ws" \
        pdf export peace-agreement --to ohchr -o "$work/letter.pdf"
    } >/dev/null 2>"$warn"
    if grep -qiE 'warning' "$warn"; then
      problems+=("a library warning reached the user: $(grep -iE 'warning' "$warn" | head -2 | cut -c1-160 | tr '\n' ';')")
    fi
  fi
  if [ ${#problems[@]} -eq 0 ]; then
    summary[$mode]="ok"
  else
    summary[$mode]="${problems[*]}"
  fi
  echo
done

echo "=== check-latest summary ==="
for mode in "${modes[@]}"; do
  echo "$mode: ${summary[$mode]:-not run}"
done
