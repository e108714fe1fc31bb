#!/usr/bin/env bash
# Loopback Dovecot for the integration tests: a private IMAP server that serves the
# return-path Maildir of the loopback Postfix (scripts/loopback-mta.sh), so the
# DSNs that the real Postfix writes there can be fetched over real IMAP.
#
#   bash scripts/loopback-imap.sh start    install dovecot-imapd if missing, write config, start (idempotent)
#   bash scripts/loopback-imap.sh stop     stop the instance
#   bash scripts/loopback-imap.sh status   print state and ports; exit 1 when not running
#
# Listens on 127.0.0.1 only: IMAPS on $CAMPAIGN_IMAP_TLS_PORT (10993) and IMAP with
# mandatory STARTTLS on $CAMPAIGN_IMAP_PORT (10143). Everything lives in
# CAMPAIGN_IMAP_DIR (default /var/tmp/campaign-imap):
#   dovecot/dovecot.conf   the whole configuration (nothing from /etc/dovecot is read)
#   dovecot/users          passwd-file with the single test user
#   dovecot/tls/           throwaway CA (ca.pem) and server certificate for localhost/127.0.0.1
#   run/ state/            Dovecot's base_dir and state_dir
#   log/dovecot.log        log_path (there is no syslog here)
#   env                    KEY=value lines for the tests
# The system's /etc/dovecot and ports 143/993 are never touched.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${CAMPAIGN_IMAP_DIR:-/var/tmp/campaign-imap}
PORT=${CAMPAIGN_IMAP_PORT:-10143}
TLS_PORT=${CAMPAIGN_IMAP_TLS_PORT:-10993}
MTA_DIR=${CAMPAIGN_MTA_DIR:-/var/tmp/campaign-mta}
MAIL_USER=campaignmail          # owner of the Maildirs, created by loopback-mta.sh

IMAP_USER=receipts@campaign.example
# TEST-ONLY CREDENTIAL: a fixed throwaway password for a server that only listens on
# loopback and only holds test mail. Never reuse it anywhere else.
IMAP_PASSWORD=${CAMPAIGN_TEST_IMAP_PASSWORD:-loopback-test-only-not-a-secret}

CONFDIR=$DIR/dovecot
CONF=$CONFDIR/dovecot.conf
TLS=$CONFDIR/tls
RUN=$DIR/run
STATE=$DIR/state
LOGDIR=$DIR/log
LOG=$LOGDIR/dovecot.log
ENVFILE=$DIR/env
MAILDIR=$MTA_DIR/mail/campaign.example/receipts   # Postfix's return-path Maildir

log() { echo "loopback-imap: $*" >&2; }
die() { log "error: $*"; exit 1; }

# True when the master process of *this* instance runs.
running() {
  local pid
  [ -f "$RUN/master.pid" ] || return 1
  pid=$(cat "$RUN/master.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_dovecot() {
  if dpkg-query -W -f='${Status}' dovecot-imapd 2>/dev/null | grep -q "install ok installed"; then
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "dovecot-imapd is not installed; run as root (or: sudo bash scripts/system-deps.sh)"
  log "installing dovecot-imapd (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends dovecot-imapd >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends dovecot-imapd >/dev/null; }
}

# The Maildir belongs to the loopback MTA. If it is not there yet, set up and start
# the MTA too (that is what any test reading it over IMAP needs anyway).
ensure_maildir() {
  if [ ! -d "$MAILDIR/new" ] || ! getent passwd "$MAIL_USER" >/dev/null; then
    log "return-path Maildir $MAILDIR missing: starting the loopback MTA first"
    bash "$HERE/loopback-mta.sh" start
  fi
  [ -d "$MAILDIR/new" ] || die "no Maildir at $MAILDIR (CAMPAIGN_MTA_DIR=$MTA_DIR)"
}

# A throwaway CA and a server certificate signed by it (CN/SAN localhost, IP
# 127.0.0.1). A separate CA keeps Python's strict verification happy (a self-signed
# leaf without CA key usage is refused by OpenSSL 3 in strict mode).
make_certificates() {
  install -d -m 0755 "$TLS"
  if [ -s "$TLS/ca.pem" ] && [ -s "$TLS/server.pem" ] && [ -s "$TLS/server.key" ] \
    && openssl x509 -checkend 86400 -noout -in "$TLS/server.pem" >/dev/null 2>&1; then
    return
  fi
  log "generating a throwaway test CA and server certificate in $TLS"
  local tmp
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -subj "/CN=campaign loopback test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
  cat >"$tmp/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$tmp/server.ext" \
    -out "$tmp/server.pem" 2>/dev/null
  install -m 0644 "$tmp/ca.pem" "$TLS/ca.pem"
  install -m 0644 "$tmp/server.pem" "$TLS/server.pem"
  install -m 0600 "$tmp/server.key" "$TLS/server.key"
  rm -rf "$tmp"   # the CA key is not kept: nothing else is ever signed with it
}

write_config() {
  local uid gid hash
  uid=$(id -u "$MAIL_USER") gid=$(id -g "$MAIL_USER")
  install -d -m 0755 "$DIR" "$CONFDIR" "$RUN" "$STATE" "$LOGDIR"

  # passwd-file: user:password:uid:gid:gecos:home:shell:extra. The home is the
  # Maildir itself (mail_location = maildir:~). Read by the auth process (user dovecot).
  hash=$(printf '%s' "$IMAP_PASSWORD" | openssl passwd -6 -stdin)
  printf '%s:{SHA512-CRYPT}%s:%s:%s::%s::\n' "$IMAP_USER" "$hash" "$uid" "$gid" "$MAILDIR" \
    >"$CONFDIR/users.new"
  chown root:dovecot "$CONFDIR/users.new"
  chmod 0640 "$CONFDIR/users.new"
  mv -f "$CONFDIR/users.new" "$CONFDIR/users"

  cat >"$CONF" <<EOF
# generated by scripts/loopback-imap.sh -- do not edit, rewritten on every start.
# Stand-alone: nothing from /etc/dovecot is included.
instance_name = campaign-imap
base_dir = $RUN
state_dir = $STATE
log_path = $LOG
auth_verbose = yes

protocols = imap
listen = 127.0.0.1
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $TLS_PORT
    ssl = yes
  }
}
# no other listeners (pop3, lmtp, submission are not in "protocols")

# TLS is mandatory: IMAPS on $TLS_PORT, STARTTLS before LOGIN on $PORT
ssl = required
ssl_cert = <$TLS/server.pem
ssl_key = <$TLS/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login

# the single test user ($IMAP_USER), from a passwd-file
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u $CONFDIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $CONFDIR/users
}

# Mail processes run as the Maildir owner $MAIL_USER ($uid:$gid), a system
# account (uid 100-999, possibly below Dovecot's default first_valid_uid of 500):
# allow exactly it and nothing else.
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid

# Postfix's Maildir is served as INBOX; new folders (e.g. Processed) become
# Maildir++ subfolders (.Processed) of it.
mail_location = maildir:~
namespace inbox {
  inbox = yes
  separator = /
}
protocol imap {
  mail_max_userip_connections = 50
}
EOF
  chmod 0644 "$CONF"
}

write_env() {
  cat >"$ENVFILE.new" <<EOF
# generated by scripts/loopback-imap.sh; source it: . $ENVFILE
# CAMPAIGN_TEST_IMAP_PASSWORD is a throwaway test-only credential.
CAMPAIGN_TEST_IMAP_HOST=127.0.0.1
CAMPAIGN_TEST_IMAP_PORT=$PORT
CAMPAIGN_TEST_IMAP_TLS_PORT=$TLS_PORT
CAMPAIGN_TEST_IMAP_USER=$IMAP_USER
CAMPAIGN_TEST_IMAP_PASSWORD=$IMAP_PASSWORD
CAMPAIGN_TEST_IMAP_CA=$TLS/ca.pem
CAMPAIGN_TEST_IMAP_MAILDIR=$MAILDIR
CAMPAIGN_TEST_IMAP_LOG=$LOG
EOF
  chmod 0644 "$ENVFILE.new"
  mv -f "$ENVFILE.new" "$ENVFILE"
}

wait_for_ports() {
  local _
  for _ in $(seq 1 100); do
    port_open "$PORT" && port_open "$TLS_PORT" && return 0
    sleep 0.1
  done
  die "Dovecot did not open 127.0.0.1:$PORT and :$TLS_PORT (see $LOG)"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  install_dovecot
  ensure_maildir
  make_certificates
  write_config
  write_env
  doveconf -c "$CONF" >/dev/null || die "invalid configuration $CONF"
  if running; then
    dovecot -c "$CONF" reload </dev/null >>"$LOG" 2>&1
    wait_for_ports
    log "already running on 127.0.0.1:$PORT (STARTTLS) and :$TLS_PORT (IMAPS) (config reloaded)"
    return 0
  fi
  if port_open "$PORT" || port_open "$TLS_PORT"; then
    die "127.0.0.1:$PORT or :$TLS_PORT is already in use by another program"
  fi
  # Detached from our stdin/stdout/stderr: a daemon holding the caller's output pipe
  # would make anything that reads this script's output until EOF (CI) hang.
  dovecot -c "$CONF" </dev/null >>"$LOG" 2>&1 || die "dovecot failed to start (see $LOG)"
  wait_for_ports
  log "running on 127.0.0.1:$PORT (STARTTLS) and :$TLS_PORT (IMAPS); user $IMAP_USER; env in $ENVFILE"
}

cmd_stop() {
  local _
  if ! running; then
    log "not running"
    return 0
  fi
  dovecot -c "$CONF" stop </dev/null >>"$LOG" 2>&1
  for _ in $(seq 1 50); do
    running || { log "stopped"; return 0; }
    sleep 0.1
  done
  die "Dovecot did not stop (pid $(cat "$RUN/master.pid"))"
}

cmd_status() {
  if running && port_open "$PORT" && port_open "$TLS_PORT"; then
    echo "loopback Dovecot: running on 127.0.0.1:$PORT (IMAP+STARTTLS) and 127.0.0.1:$TLS_PORT (IMAPS)"
    echo "user $IMAP_USER, Maildir $MAILDIR, CA $TLS/ca.pem, log $LOG"
    return 0
  fi
  echo "loopback Dovecot: not running (state dir $DIR)"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
