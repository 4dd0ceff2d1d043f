# One image for every role; docker-compose.yml picks the role with `command:`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 CONVEYOR_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY core core
COPY api api
COPY worker worker
COPY tasks tasks
COPY cli cli
RUN pip install -c constraints.txt '.[tracing]' \
    && useradd --create-home --uid 10001 conveyor \
    && mkdir -p /data && chown conveyor /data
USER conveyor
EXPOSE 8000 5555
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", "--threads", "8", \
     "--logger-class", "api.gunicorn_logging.Logger", "api:create_app()"]
