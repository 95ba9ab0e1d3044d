# The shopstream image: workers, trainers and the CLI. It runs as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.8 \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin shopstream \
 && mkdir -p /data && chown shopstream:shopstream /data
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev
USER shopstream
EXPOSE 6066
CMD ["shopstream", "worker"]
