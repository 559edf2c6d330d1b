# The leadpipe application image: every leadpipe process (workers, beat, flower, simulator,
# migrations) runs from it; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEADPIPE_DATA_DIR=/var/lib/leadpipe

WORKDIR /app
# Dependencies first, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY db ./db
COPY simulator ./simulator
COPY templates ./templates
COPY samples ./samples
RUN pip install . \
    && useradd --system --create-home --home-dir /var/lib/leadpipe leadpipe

USER leadpipe
# Templates are read from /app/templates (pipeline/llm/prompts.py resolves them next to the code).
ENTRYPOINT ["leadpipe"]
CMD ["--help"]
