#!/usr/bin/env bash
# A throwaway local PostgreSQL for development and the benchmark, apart from the system's cluster:
#
#   scripts/postgres.sh start DIR [PORT]   create the cluster in DIR if missing, start it (PORT defaults to 5433)
#   scripts/postgres.sh stop DIR           stop it
#
# DIR holds everything: data/ (the cluster), postgres.log and the unix socket. The server listens on 127.0.0.1
# only. Logins over TCP need a password (scram-sha-256): the role `balance`, password `balance`, owns the
# database `balance`. The unix socket accepts only the OS user that owns the cluster (peer), as its superuser;
# this script uses it to create the role and the database. `start` prints the Npgsql connection string on
# stdout and its messages on stderr, so `cs=$(scripts/postgres.sh start /tmp/pg)` captures just the string.
#
# POSTGRES_SETTINGS (lines of postgresql.conf) is added to a cluster when it is created, e.g. the benchmark's
# POSTGRES_SETTINGS="track_commit_timestamp = on".
#
# initdb and pg_ctl refuse to run as root: as root the cluster belongs to the `postgres` user, and DIR must be
# a place that user can reach (e.g. under /tmp).
set -euo pipefail

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1
dir=$(realpath -m "$2")
port=${3:-5433}
data=$dir/data
# initdb and pg_ctl, run as the postgres user, complain about a working directory that user cannot enter.
cd /
log=$dir/postgres.log

# Debian installs each major version side by side; the newest is the one a fresh install would use.
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "no PostgreSQL under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; }

start() {
  [[ $port =~ ^[0-9]+$ ]] || usage
  # The kernel limits a unix socket's path to 107 bytes.
  local socket=$dir/.s.PGSQL.$port
  [ ${#socket} -le 107 ] || { echo "$dir is too long for a unix socket path; choose a shorter one" >&2; exit 1; }
  if running; then
    # The port the running server was started with, which may not be the one asked for this time.
    port=$(sed -n 4p "$data/postmaster.pid")
    echo "PostgreSQL is already running in $dir on port $port" >&2
  else
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$dir"
      if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
      as_owner test -w "$dir" || { echo "$(as_owner id -un) cannot write $dir; choose a directory it can reach" >&2; exit 1; }
      echo "Creating a PostgreSQL cluster in $data" >&2
      as_owner "$bin/initdb" -D "$data" -E UTF8 --locale=C --auth-local=peer --auth-host=scram-sha-256 >/dev/null
      # Only loopback, never the system cluster's socket directory; fsync on, as in production.
      as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = on
EOF
      # Extra settings for this cluster, one per line (the benchmark's track_commit_timestamp).
      if [ -n "${POSTGRES_SETTINGS:-}" ]; then printf '%s\n' "$POSTGRES_SETTINGS" | as_owner tee -a "$data/postgresql.conf" >/dev/null; fi
    fi
    # The port on the command line, not in postgresql.conf, so each start may pick another.
    if ! as_owner "$bin/pg_ctl" start -D "$data" -l "$log" -o "-p $port" -w -t 60 >/dev/null; then
      echo "PostgreSQL did not start; the end of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    echo "PostgreSQL started in $dir on port $port" >&2
  fi
  # Every start, so a cluster left half set up by an interrupted first start still gets them.
  as_owner "$bin/psql" -X -h "$dir" -p "$port" -d postgres -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
SELECT 'CREATE ROLE balance LOGIN PASSWORD ''balance''' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'balance')
\gexec
SELECT 'CREATE DATABASE balance OWNER balance' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'balance')
\gexec
EOF
  echo "Host=127.0.0.1;Port=$port;Database=balance;Username=balance;Password=balance"
}

stop() {
  if running; then
    as_owner "$bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null
    echo "PostgreSQL stopped in $dir" >&2
  else
    echo "PostgreSQL is not running in $dir" >&2
  fi
}

case $command in
  start) start ;;
  stop) [ $# -eq 2 ] || usage; stop ;;
  *) usage ;;
esac
