# Runs `sidan serve` against the PostgreSQL named by DATABASE_URL. Production settings are enforced:
# set SIDAN_TOKEN_SECRET (32+ random characters) and SIDAN_DATA_KEYS (Fernet key(s)) or it refuses to start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 SIDAN_ENVIRONMENT=production
WORKDIR /srv/sidan

COPY pyproject.toml requirements.lock README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install -c requirements.lock -e . && useradd --system --no-create-home sidan
USER sidan

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
CMD ["sidan", "serve", "--host", "0.0.0.0", "--port", "8000"]
