#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the server's tests (Debian's PostgreSQL, installed by
# scripts/setup.sh; nothing downloaded). scripts/test.sh starts it around the tests.
#
#   scripts/pg.sh start   starts it (or finds it running) and prints
#                         FILESYNC_TEST_DATABASE_URL=postgres://...?sslmode=disable and
#                         FILESYNC_TEST_DATABASE_CA=<the CA of its TLS certificate>
#                         (for `export`): it accepts TLS and plain connections
#   scripts/pg.sh stop    stops it and removes its files
#
# As root, the cluster runs as the `postgres` user (initdb refuses root); otherwise as the
# current user. It listens on 127.0.0.1 only, trusts local connections, and skips fsync: it
# holds test data only. Its TLS certificate (for 127.0.0.1 and localhost) is signed by a CA
# made for it with openssl, so tests can check verified TLS. PG_TEST_DIR and PG_TEST_PORT override where and on which port.
set -euo pipefail

DIR="${PG_TEST_DIR:-/tmp/filesync-test-pg}"
PORT="${PG_TEST_PORT:-55432}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$BIN/initdb" ] || { echo "pg.sh: PostgreSQL is not installed (run scripts/setup.sh)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "${1:-}" in
start)
    if ! as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        rm -rf "$DIR"
        mkdir -p "$DIR"
        [ "$(id -u)" != 0 ] || chown postgres: "$DIR"
        as_owner "$BIN/initdb" -D "$DIR/data" -A trust -U postgres -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 ||
            { cat "$DIR/initdb.log" >&2; exit 1; }
        # A CA and a server certificate it signs.
        (
            cd "$DIR"
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=filesync test CA" \
                -keyout ca.key -out ca.pem
            openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile san.ext -out server.pem
        ) >"$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log" >&2; exit 1; }
        cp "$DIR/server.pem" "$DIR/server.key" "$DIR/data/"
        chmod 600 "$DIR/data/server.key"
        [ "$(id -u)" != 0 ] || chown postgres: "$DIR/data/server.pem" "$DIR/data/server.key"
        printf "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n" >>"$DIR/data/postgresql.conf"
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
            -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" \
            start >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
    fi
    echo "FILESYNC_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
    echo "FILESYNC_TEST_DATABASE_CA=$DIR/ca.pem"
    ;;
stop)
    if [ -d "$DIR/data" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: scripts/pg.sh start|stop" >&2
    exit 2
    ;;
esac
