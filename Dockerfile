# One image for the demo, the operator CLI and the Dagster code location (docs/DEPLOY.md):
#   docker build -t coperniq-qbo .
#   docker run --rm coperniq-qbo make demo                       # both legs against the built-in sandboxes
#   docker run --rm --env-file prod.env coperniq-qbo coperniq-qbo status
#   docker run --rm --env-file prod.env -v $PWD/companies.yml:/project/deploy/companies.yml -p 4000:4000 coperniq-qbo
# The last one (the default command) serves the code location on port 4000 for a Dagster webserver and daemon.
# Nothing is kept on the container's disk: point SYNC_LEDGER_URL and MELTANO_DATABASE_URI at PostgreSQL.
FROM python:3.11-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MELTANO_PROJECT_ROOT=/project \
    MELTANO_SEND_ANONYMOUS_USAGE_STATS=false \
    DAGSTER_HOME=/opt/dagster \
    PATH=/project/.venv/bin:$PATH

# make runs the project's own install steps; git is what Meltano's pip installs of `-e ./...` may call
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /project
# The lock and the packages' metadata first, so a code change does not reinstall every dependency.
COPY requirements-dev.txt requirements-dev.lock Makefile meltano.yml ./
COPY sync-ledger/ sync-ledger/
COPY tap-coperniq/ tap-coperniq/
COPY target-quickbooks-merge/ target-quickbooks-merge/
COPY tap-quickbooks-merge/ tap-quickbooks-merge/
COPY target-coperniq/ target-coperniq/
COPY coperniq-qbo/ coperniq-qbo/
COPY deploy/ deploy/
RUN make install PY=python3
COPY . .
RUN mkdir -p "$DAGSTER_HOME" && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "coperniq_qbo_dagster.definitions"]
