# Sourced by .ci/run: make a PostgreSQL server reachable for the tests, or fail clearly.
# Exports SYNCLINE_TEST_POSTGRES_URL: a maintenance database whose user may create databases.

export SYNCLINE_TEST_POSTGRES_URL="${SYNCLINE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

_pg_answers() {
  psql "$1" -qAtc 'SELECT 1' >/dev/null 2>&1
}

if ! _pg_answers "$SYNCLINE_TEST_POSTGRES_URL"; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: no PostgreSQL answers at $SYNCLINE_TEST_POSTGRES_URL; start one (or run .ci/run as root)" >&2
    exit 1
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  # The first cluster Debian knows (pg_lsclusters: version, name, port, status, ...).
  read -r _pg_version _pg_cluster _pg_port _ < <(pg_lsclusters --no-header | head -n 1)
  [ -n "${_pg_version:-}" ] || { echo "error: no PostgreSQL cluster (pg_lsclusters is empty)" >&2; exit 1; }
  pg_ctlcluster "$_pg_version" "$_pg_cluster" start 2>/dev/null || true
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$_pg_port" && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p "$_pg_port" || {
    echo "error: PostgreSQL $_pg_version/$_pg_cluster did not start on port $_pg_port" >&2
    exit 1
  }
  # A role that may create (and so drop) the tests' databases, with a password: a
  # fresh Debian cluster allows no password-less TCP logins.
  su postgres -c "psql -p $_pg_port -qc \"DO \\\$\\\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'syncline_ci') THEN
        CREATE ROLE syncline_ci LOGIN CREATEDB PASSWORD 'syncline_ci';
      END IF; END \\\$\\\$\"" >/dev/null
  su postgres -c "psql -p $_pg_port -qAtc \"SELECT 1 FROM pg_database WHERE datname = 'syncline_ci'\"" \
    | grep -q 1 || su postgres -c "createdb -p $_pg_port -O syncline_ci syncline_ci"
  export SYNCLINE_TEST_POSTGRES_URL="postgresql://syncline_ci:syncline_ci@127.0.0.1:$_pg_port/syncline_ci"
  _pg_answers "$SYNCLINE_TEST_POSTGRES_URL" || {
    echo "error: PostgreSQL runs, but $SYNCLINE_TEST_POSTGRES_URL does not answer" >&2
    exit 1
  }
fi
echo "PostgreSQL answers for the tests"
