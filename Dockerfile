# syntax=docker/dockerfile:1
# The chatrt image. Configuration comes only from CHATRT_* variables at run time; nothing
# secret is baked in.
#   docker build -t chatrt .
#   docker run --rm -e CHATRT_DATABASE_URL=... chatrt chatrt migrate    # once per release
#   docker run -e CHATRT_DATABASE_URL=... -e CHATRT_REDIS_URL=... -e CHATRT_SECRET_KEY=... chatrt

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
# Wheels for chatrt and all its dependencies; the runtime stage installs from these alone.
RUN pip install --no-cache-dir --upgrade pip \
    && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Bind-mounted, not copied, so the wheels add no layer to the final image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels chatrt
RUN groupadd --system --gid 10001 chatrt \
    && useradd --system --uid 10001 --gid chatrt --create-home --home-dir /home/chatrt chatrt
# Numeric, so an orchestrator can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/chatrt
EXPOSE 8000
# The slim image has no curl; Python's urllib fails the check on anything but a 2xx.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
CMD ["chatrt", "serve", "--host", "0.0.0.0", "--port", "8000"]
