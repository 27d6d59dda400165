# churnstream in a container, for users who have Docker (CI has no Docker engine and does not
# build this). The image runs any churnstream command:
#
#   docker build -t churnstream:local .
#   docker run --rm churnstream:local --help
#   docker compose up -d          # the whole pipeline: see compose.yaml
#
# Everything churnstream writes (data/, models/, reports/, logs/, .churnstream/) goes under the
# working directory /data, a volume; the settings file is /opt/churnstream/config.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    CHURNSTREAM_CONFIG=/opt/churnstream/config/churnstream.yaml

# A fixed, unprivileged user; /data is created here so a new named volume inherits its owner.
RUN groupadd --system --gid 10001 churnstream \
    && useradd --system --uid 10001 --gid churnstream --create-home churnstream \
    && mkdir -p /data \
    && chown churnstream:churnstream /data

WORKDIR /opt/churnstream

# The pinned runtime dependencies first (read from pyproject.toml, versions from
# constraints.txt), so that editing the source does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN pip install --constraint constraints.txt $(python -c 'import tomllib; \
        print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')

COPY README.md ./
COPY src ./src
RUN pip install --constraint constraints.txt --no-deps .

COPY config ./config

USER churnstream
WORKDIR /data
ENTRYPOINT ["churnstream"]
CMD ["--help"]
