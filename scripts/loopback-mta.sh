#!/usr/bin/env bash
# Loopback Postfix for the integration tests: a private Postfix instance that only
# listens on 127.0.0.1:$CAMPAIGN_MTA_PORT and can never send anything off the machine.
#
#   bash scripts/loopback-mta.sh start    install Postfix if missing, write config, start (idempotent)
#   bash scripts/loopback-mta.sh stop     stop the instance
#   bash scripts/loopback-mta.sh reset    empty all Maildirs and the queue (keeps running)
#   bash scripts/loopback-mta.sh status   print state, port and Maildirs; exit 1 when not running
#
# Everything lives in one state directory (CAMPAIGN_MTA_DIR, default /var/tmp/campaign-mta):
#   postfix/  config_directory (main.cf, master.cf, texthash tables)
#   spool/    queue_directory      data/  data_directory
#   mail/     virtual Maildirs (<domain>/<user>/{new,cur,tmp})
#   log/postfix.log  maillog_file (there is no syslog here)
#   env       KEY=value lines for the tests
# The system's /etc/postfix, /var/spool/postfix and port 25 are never touched: the
# instance is started with `postfix -c $DIR/postfix`, and only its master.cf is used.
#
# Test domains (see docs/LOOPBACK-SERVICES.md):
#   good.example      Maildirs for wgad, info, office; unknown users accepted, then bounced 5.1.1
#   fail.example      accepted, then bounced 5.1.2 (error transport)
#   defer.example     accepted, deferred 4.4.1 (retry transport): DELAY report, then expiry
#   campaign.example  receipts (return path, also receipts+anything), letters, postmaster
set -euo pipefail

DIR=${CAMPAIGN_MTA_DIR:-/var/tmp/campaign-mta}
PORT=${CAMPAIGN_MTA_PORT:-2525}
MAIL_USER=campaignmail          # owner of all virtual Maildirs (Dovecot serves them as this user)

CONF=$DIR/postfix
QUEUE=$DIR/spool
DATA=$DIR/data
MAILROOT=$DIR/mail
LOGDIR=$DIR/log
LOG=$LOGDIR/postfix.log
ENVFILE=$DIR/env
RETURN_PATH_MAILDIR=$MAILROOT/campaign.example/receipts

# Virtual mailboxes: address -> Maildir relative to $MAILROOT (trailing slash = Maildir).
MAILBOXES=(
  wgad@good.example
  info@good.example
  office@good.example
  receipts@campaign.example
  letters@campaign.example
  postmaster@campaign.example
)

# Queue timings, in seconds, so that defer.example produces its DELAY report at the
# first deferral (~0.1 s) and its expiry FAILURE report after ~20 s (measured values
# in the docs). Postfix's minimum for queue_run_delay and both backoff times is 1s;
# maximal_queue_lifetime = 0 would mean a single attempt and no DELAY report at all.
DELAY_WARNING=1s
QUEUE_LIFETIME=20s
QUEUE_RUN_DELAY=1s
MIN_BACKOFF=1s
MAX_BACKOFF=2s

log() { echo "loopback-mta: $*" >&2; }
die() { log "error: $*"; exit 1; }

postfix_cmd() { postfix -c "$CONF" "$@"; }

# True when the master process of *this* instance runs.
running() {
  [ -f "$CONF/main.cf" ] && command -v postfix >/dev/null 2>&1 \
    && postfix_cmd status >/dev/null 2>&1
}

# True when something accepts TCP connections on 127.0.0.1:$PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

install_postfix() {
  if dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q "install ok installed"; then
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "postfix is not installed; run as root (or: sudo bash scripts/system-deps.sh)"
  log "installing postfix (Debian package, 'No configuration')"
  # "No configuration": the package leaves /etc/postfix/main.cf alone, so the system
  # Postfix is not configured (nor started); this instance has its own config below.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends postfix >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends postfix >/dev/null; }
}

ensure_user() {
  if ! getent group "$MAIL_USER" >/dev/null; then
    groupadd --system "$MAIL_USER"
  fi
  if ! getent passwd "$MAIL_USER" >/dev/null; then
    useradd --system --gid "$MAIL_USER" --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin --comment "campaign loopback test mail" "$MAIL_USER"
  fi
}

# Creates the Maildir for each known mailbox (virtual(8) would create it on first
# delivery, but Dovecot and the tests want to see it before that).
make_maildirs() {
  local addr user domain
  install -d -o "$MAIL_USER" -g "$MAIL_USER" -m 0750 "$MAILROOT"
  for addr in "${MAILBOXES[@]}"; do
    user=${addr%@*} domain=${addr#*@}
    install -d -o "$MAIL_USER" -g "$MAIL_USER" -m 0700 "$MAILROOT/$domain" \
      "$MAILROOT/$domain/$user" "$MAILROOT/$domain/$user/new" \
      "$MAILROOT/$domain/$user/cur" "$MAILROOT/$domain/$user/tmp"
  done
}

# Moves FILE.new over FILE only when the content differs (and then sets
# CONFIG_CHANGED=1). Postfix programs re-read a main.cf younger than ~2 s in a loop
# until it is that old (protection against half-written files): every command run
# right after a rewrite of main.cf takes ~2 s. So unchanged files are not rewritten,
# and a changed one gets an mtime 10 s in the past: it is complete when renamed
# into place, so there is nothing to wait for.
CONFIG_CHANGED=0
replace_if_changed() {
  local file=$1
  chmod 0644 "$file.new"
  if cmp -s "$file.new" "$file"; then
    rm -f "$file.new"
  else
    touch -d "@$(($(date +%s) - 10))" "$file.new"
    mv -f "$file.new" "$file"
    CONFIG_CHANGED=1
  fi
}

write_config() {
  local uid gid addr
  uid=$(id -u "$MAIL_USER") gid=$(id -g "$MAIL_USER")
  install -d -m 0755 "$DIR" "$CONF" "$LOGDIR"
  install -d -m 0755 -o root "$QUEUE"   # queue_directory must belong to root
  install -d -m 0700 -o postfix "$DATA" # data_directory belongs to mail_owner

  # address -> Maildir, for virtual_mailbox_maps (texthash: no postmap needed)
  {
    echo "# generated by scripts/loopback-mta.sh"
    for addr in "${MAILBOXES[@]}"; do
      printf '%s\t%s/%s/\n' "$addr" "${addr#*@}" "${addr%@*}"
    done
  } >"$CONF/vmailbox.new"

  cat >"$CONF/transport.new" <<'EOF'
# generated by scripts/loopback-mta.sh: simulated remote failures
# error(8)/retry(8) next-hop syntax: "<enhanced status code> <text>"
fail.example    error:5.1.2 Host not found (simulated by the campaign loopback MTA)
.fail.example   error:5.1.2 Host not found (simulated by the campaign loopback MTA)
defer.example   retry:4.4.1 Connection timed out (simulated by the campaign loopback MTA)
.defer.example  retry:4.4.1 Connection timed out (simulated by the campaign loopback MTA)
EOF

  cat >"$CONF/main.cf.new" <<EOF
# generated by scripts/loopback-mta.sh -- do not edit, rewritten on every start
compatibility_level = 3.6

# --- this instance's own directories (the system Postfix is left alone)
queue_directory = $QUEUE
data_directory = $DATA
maillog_file = $LOG
# postlogd only writes below these prefixes
maillog_file_prefixes = $LOGDIR
# a shared-nothing instance: not part of postmulti's instance list
multi_instance_enable = no
syslog_name = campaign-mta

# --- identity
myhostname = mta.campaign.example
mydomain = campaign.example
myorigin = campaign.example
mydestination =
local_transport = error:5.1.1 local delivery disabled (campaign loopback MTA)
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtpd_banner = \$myhostname ESMTP campaign loopback test MTA

# --- listen on loopback only, IPv4 only (the listener itself is in master.cf)
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mynetworks_style = host
smtpd_peername_lookup = no

# --- nothing ever leaves this machine
default_transport = error:5.7.1 outbound mail disabled (campaign loopback MTA)
relay_transport = error:5.7.1 outbound mail disabled (campaign loopback MTA)
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
relayhost =
relay_domains = fail.example, defer.example
transport_maps = texthash:$CONF/transport

# --- SMTP server: loopback clients need no auth; unknown users accepted, bounced later
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_reject_unlisted_recipient = no
smtpd_reject_unlisted_sender = no
smtputf8_enable = yes
# keep DSN (and everything else) advertised in EHLO
smtpd_discard_ehlo_keywords =
smtpd_discard_ehlo_keyword_address_maps =
smtpd_tls_security_level = none
recipient_delimiter = +
message_size_limit = 52428800

# --- virtual Maildirs, all owned by the unprivileged user $MAIL_USER ($uid:$gid)
virtual_mailbox_domains = good.example, campaign.example
virtual_mailbox_base = $MAILROOT
virtual_mailbox_maps = texthash:$CONF/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 100
virtual_mailbox_limit = 0

# --- fast queue so that defer.example reports DELAY and then expires within seconds
delay_warning_time = $DELAY_WARNING
maximal_queue_lifetime = $QUEUE_LIFETIME
bounce_queue_lifetime = $QUEUE_LIFETIME
queue_run_delay = $QUEUE_RUN_DELAY
minimal_backoff_time = $MIN_BACKOFF
maximal_backoff_time = $MAX_BACKOFF
# postmaster copies of bounces are not wanted; the sender gets its DSNs
notify_classes = resource, software
bounce_template_file = $CONF/bounce.cf
EOF

  # master.cf: only the services needed. The single inet listener is the loopback
  # port; the usual "smtp inet ... smtpd" line on port 25 is simply absent, and so
  # are the smtp/relay/lmtp/local delivery agents (nothing can be sent out).
  cat >"$CONF/master.cf.new" <<EOF
# generated by scripts/loopback-mta.sh
# service        type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$PORT  inet  n       -       n       -       -       smtpd
pickup           unix  n       -       n       60      1       pickup
cleanup          unix  n       -       n       -       0       cleanup
qmgr             unix  n       -       n       300     1       qmgr
tlsmgr           unix  -       -       n       1000?   1       tlsmgr
rewrite          unix  -       -       n       -       -       trivial-rewrite
bounce           unix  -       -       n       -       0       bounce
defer            unix  -       -       n       -       0       bounce
trace            unix  -       -       n       -       0       bounce
verify           unix  -       -       n       -       1       verify
flush            unix  n       -       n       1000?   0       flush
proxymap         unix  -       -       n       -       -       proxymap
proxywrite       unix  -       -       n       -       1       proxymap
showq            unix  n       -       n       -       -       showq
error            unix  -       -       n       -       -       error
retry            unix  -       -       n       -       -       error
discard          unix  -       -       n       -       -       discard
virtual          unix  -       n       n       -       -       virtual
anvil            unix  -       -       n       -       1       anvil
scache           unix  -       -       n       -       1       scache
postlog          unix-dgram n  -       n       -       1       postlogd
EOF
  # The built-in delay template states the times in hours and days, which are 0
  # here (and bounce(8) then logs warnings): the same text, in seconds.
  cat >"$CONF/bounce.cf.new" <<'EOF'
# generated by scripts/loopback-mta.sh: Postfix's default delay_template, in seconds
delay_template = <<EOD
Charset: us-ascii
From: Mail Delivery System <MAILER-DAEMON>
Subject: Delayed Mail (still being retried)
Postmaster-Subject: Postmaster Warning: Delayed Mail

This is the mail system at host $myhostname.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than $delay_warning_time_seconds second(s).
It will be retried until it is $maximal_queue_lifetime_seconds second(s) old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
EOD
EOF
  local f
  for f in main.cf master.cf vmailbox transport bounce.cf; do
    replace_if_changed "$CONF/$f"
  done
}

write_env() {
  cat >"$ENVFILE.new" <<EOF
# generated by scripts/loopback-mta.sh; source it: . $ENVFILE
CAMPAIGN_TEST_MTA_HOST=127.0.0.1
CAMPAIGN_TEST_MTA_PORT=$PORT
CAMPAIGN_TEST_MTA_MAILDIR_ROOT=$MAILROOT
CAMPAIGN_TEST_RETURN_PATH_MAILDIR=$RETURN_PATH_MAILDIR
CAMPAIGN_TEST_MTA_LOG=$LOG
EOF
  chmod 0644 "$ENVFILE.new"
  mv -f "$ENVFILE.new" "$ENVFILE"
}

wait_for_port() {
  local _
  for _ in $(seq 1 100); do
    port_open && return 0
    sleep 0.1
  done
  die "Postfix did not open 127.0.0.1:$PORT (see $LOG)"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (Postfix needs it)"
  install_postfix
  ensure_user
  make_maildirs
  write_config
  write_env
  if running; then
    # Already up: pick up a config change, if any, and leave it running.
    if [ "$CONFIG_CHANGED" = 1 ]; then
      postfix_cmd reload </dev/null >>"$LOG" 2>&1
      log "configuration changed: reloaded"
    fi
    wait_for_port
    log "already running on 127.0.0.1:$PORT"
    return 0
  fi
  if port_open; then
    die "127.0.0.1:$PORT is already in use by another program (set CAMPAIGN_MTA_PORT)"
  fi
  # `postfix check` runs inside start: it creates the queue subdirectories in
  # $QUEUE with the right owners. Output goes to the maillog file, and the daemons
  # are detached from our stdin/stdout/stderr (a daemon holding the caller's output
  # pipe would make anything reading this script's output until EOF, e.g. CI, hang).
  postfix_cmd start </dev/null >>"$LOG" 2>&1 || die "postfix start failed (see $LOG)"
  wait_for_port
  log "running on 127.0.0.1:$PORT; Maildirs under $MAILROOT; env in $ENVFILE"
}

cmd_stop() {
  if running; then
    postfix_cmd stop </dev/null >>"$LOG" 2>&1 || die "postfix stop failed (see $LOG)"
    log "stopped"
  else
    log "not running"
  fi
}

# Empties every Maildir (including IMAP subfolders like .Processed: every new/,
# cur/ and tmp/ below $MAILROOT) and deletes all queued mail. Folders and Dovecot's
# index files stay; the instance keeps running (or stays stopped).
cmd_reset() {
  [ -d "$MAILROOT" ] || die "no state in $DIR (run start first)"
  if [ -f "$CONF/main.cf" ] && [ -d "$QUEUE/deferred" ]; then
    postsuper -c "$CONF" -d ALL </dev/null >/dev/null 2>&1 || true
  fi
  find "$MAILROOT" -mindepth 2 -type d \( -name new -o -name cur -o -name tmp \) \
    -exec find {} -mindepth 1 -maxdepth 1 -type f -delete \;
  log "Maildirs under $MAILROOT and the queue are empty"
}

cmd_status() {
  local addr rc
  if running && port_open; then
    echo "loopback Postfix: running on 127.0.0.1:$PORT (config $CONF, log $LOG)"
    rc=0
  else
    echo "loopback Postfix: not running (state dir $DIR)"
    rc=1
  fi
  echo "Maildirs (under $MAILROOT):"
  for addr in "${MAILBOXES[@]}"; do
    printf '  %-28s %s/%s/%s\n' "$addr" "$MAILROOT" "${addr#*@}" "${addr%@*}"
  done
  echo "return path Maildir: $RETURN_PATH_MAILDIR"
  return "$rc"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  reset) cmd_reset ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|reset|status" >&2; exit 2 ;;
esac
