#!/usr/bin/env bash
# Debian packages the tests and PDF export need. Runs as root (CI) or via sudo.
#   Pango + HarfBuzz subsetting: WeasyPrint (about 4x slower without libharfbuzz-subset0)
#   poppler-utils: pdftotext / pdftoppm for PDF tests
#   postfix, dovecot-imapd: the loopback MTA and IMAP server of the integration tests
#   chromium: the browser the signing page's tests drive with Playwright (no browser download)
#   zbar-tools: zbarimg, to decode the QR codes printed on signed letters in the tests
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
  poppler-utils
  postfix dovecot-imapd
  ssl-cert
  chromium zbar-tools
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Postfix asks questions on install: preseed "No configuration", we configure it ourselves.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "system packages present: ${packages[*]}"
