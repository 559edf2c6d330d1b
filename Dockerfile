# The leadpipe application image: every leadpipe process (workers, beat, flower, simulator,
# migrations) runs from it; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEADPIPE_HOME=/var/lib/leadpipe

WORKDIR /app
# Dependencies first and exactly as locked (hashes checked), so code edits do not reinstall them.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY db ./db
COPY simulator ./simulator
COPY samples ./samples
# --no-deps: everything it needs is already installed from the lock above. Templates, the
# routing table and the migrations are package data inside the installed package.
RUN pip install --no-deps . \
    && useradd --system --create-home --home-dir /var/lib/leadpipe leadpipe

USER leadpipe
ENTRYPOINT ["leadpipe"]
CMD ["--help"]
