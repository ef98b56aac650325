# Build stage: install Lore and its dependencies into a virtualenv.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/lore
COPY pyproject.toml README.md ./
COPY app ./app
COPY memory ./memory
COPY handlers ./handlers
COPY emulator ./emulator
RUN /opt/lore/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/lore/bin/pip install --no-cache-dir .

# Runtime stage: the virtualenv only, run as a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 lore
COPY --from=build /opt/lore /opt/lore
ENV PATH=/opt/lore/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LORE_DATA_DIR=/data \
    PORT=3000
RUN mkdir /data && chown lore:lore /data
USER lore
WORKDIR /home/lore
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz', timeout=2)"
CMD ["python", "-m", "app", "serve"]
