# Sourced by .ci/run: start a throw-away PostgreSQL 15 server on 127.0.0.1 and a free port, create a
# database for the tuner's tests, export STACEY_TEST_POSTGRES_URL, and stop the server on exit.
# initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user.

_pg_bin=/usr/lib/postgresql/15/bin
_pg_dir=$(mktemp -d /tmp/stacey-postgres.XXXXXX)
_pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
_pg_password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')

_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_stop() {
    _pg_as_owner "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$_pg_dir"
}

if [ "$(id -u)" = 0 ]; then chown postgres "$_pg_dir"; fi
printf '%s\n' "$_pg_password" > "$_pg_dir/password"
if [ "$(id -u)" = 0 ]; then chown postgres "$_pg_dir/password"; fi
_pg_as_owner "$_pg_bin/initdb" -D "$_pg_dir/data" -U stacey --pwfile="$_pg_dir/password" \
    --auth=scram-sha-256 >"$_pg_dir/initdb.log" 2>&1
_pg_as_owner "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$_pg_port -c unix_socket_directories=$_pg_dir" start >/dev/null
trap _pg_stop EXIT
PGPASSWORD="$_pg_password" "$_pg_bin/createdb" -h 127.0.0.1 -p "$_pg_port" -U stacey stacey_test
export STACEY_TEST_POSTGRES_URL="postgresql://stacey:${_pg_password}@127.0.0.1:${_pg_port}/stacey_test"
echo "PostgreSQL test server on 127.0.0.1:${_pg_port} (database stacey_test)"
