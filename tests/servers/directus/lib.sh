# Shared by tests/servers/directus/setup and run (sourced, not executed).
# Pinned versions, paths, and the helpers both scripts need.

NAME=directus
VERSION=11.3.5
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CACHE=${OFFLINE_SYNC_CACHE:-$ROOT/target/third-party}
DEST=$CACHE/$NAME
# PostgreSQL 15 binaries (Debian's postgresql-15 package puts them here).
PG_BIN=${OFFLINE_SYNC_PG_BIN:-/usr/lib/postgresql/15/bin}
API=$DEST/node_modules/@directus/api/dist

# The static bearer token of the admin user made at bootstrap (a test secret, not
# a real one), and the other fixed settings of the test instance.
ADMIN_TOKEN=offline-sync-directus-admin-token
ADMIN_EMAIL=admin@example.com
ADMIN_PASSWORD=offline-sync-admin-password
DB_NAME=directus
COLLECTIONS=(tasks notes customers)

log() { echo "$NAME ${SCRIPT:-}: $*" >&2; }
die() { echo "$NAME ${SCRIPT:-}: ERROR: $*" >&2; exit 1; }

# Runs a PostgreSQL binary as the postgres user when we are root (postgres refuses
# to run as root), as ourselves otherwise.
as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# Gives a directory to the user that runs postgres.
give_to_pg() {
  if [[ $EUID -eq 0 ]]; then chown -R postgres:postgres "$@"; fi
}

check_pg() {
  local b
  for b in initdb pg_ctl postgres createdb; do
    [[ -x $PG_BIN/$b ]] || die "PostgreSQL 15 is needed: $PG_BIN/$b not found (apt-get install postgresql-15, or set OFFLINE_SYNC_PG_BIN to the folder of its binaries)"
  done
  if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run PostgreSQL as (apt-get install postgresql-15 makes it)"
    command -v runuser >/dev/null 2>&1 || die "running as root needs runuser (util-linux) to start PostgreSQL as the postgres user"
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# pg_start DATADIR PORT LOGFILE: starts the cluster, waits until it accepts connections.
pg_start() {
  as_pg "$PG_BIN/pg_ctl" -D "$1" -l "$3" -w -t 60 -o "-c port=$2" start >/dev/null
}
pg_stop() {
  as_pg "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null 2>&1 \
    || as_pg "$PG_BIN/pg_ctl" -D "$1" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}

# directus_env PORT PGPORT WORKDIR: the environment Directus runs with. Variables
# that this does not set (e.g. PRESSURE_LIMITER_ENABLED, QUERY_LIMIT_DEFAULT,
# LOG_LEVEL) pass through from the caller's environment.
directus_env() {
  export DB_CLIENT=pg DB_HOST=127.0.0.1 DB_PORT=$2 DB_DATABASE=$DB_NAME DB_USER=postgres DB_PASSWORD=unused-trust-auth
  export SECRET=offline-sync-test-secret-not-a-real-one KEY=offline-sync-test-key
  export ADMIN_EMAIL ADMIN_PASSWORD ADMIN_TOKEN
  export HOST=127.0.0.1 PORT=$1 PUBLIC_URL=http://127.0.0.1:$1
  export TELEMETRY=false SERVE_APP=false
  export LOG_LEVEL=${LOG_LEVEL:-info} LOG_STYLE=raw
  export CONFIG_PATH=$3/directus.env # never present: all settings come from here
  export PACKAGE_FILE_LOCATION=$DEST  # its package.json lists no extensions
  export EXTENSIONS_PATH=$3/extensions STORAGE_LOCATIONS=local STORAGE_LOCAL_ROOT=$3/uploads
  export TEMP_PATH=$3/tmp MIGRATIONS_PATH=$3/migrations EMAIL_TEMPLATES_PATH=$3/templates
  export EMAIL_TRANSPORT=sendmail EMAIL_VERIFY_SETUP=false
  mkdir -p "$3/extensions" "$3/uploads" "$3/tmp" "$3/migrations" "$3/templates"
}

# The collection definition POSTed to /collections for each of COLLECTIONS: a
# client-set string primary key `id` (up to 36 characters) and title, count, done.
collection_json() {
  cat <<EOF
{"collection":"$1","meta":{"icon":"box","note":"offline-sync test collection"},"schema":{},
 "fields":[
  {"field":"id","type":"string","schema":{"is_primary_key":true,"max_length":36,"is_nullable":false},"meta":{"interface":"input","readonly":false,"hidden":false}},
  {"field":"title","type":"string","schema":{"is_nullable":true},"meta":{"interface":"input"}},
  {"field":"count","type":"integer","schema":{"is_nullable":true},"meta":{"interface":"input"}},
  {"field":"done","type":"boolean","schema":{"is_nullable":true},"meta":{"interface":"boolean"}}
 ]}
EOF
}
