# s3proc as a container: build the wheel, then install it on a slim Python.
#   docker build -t s3proc .
#   docker run -d -v /srv/inbox:/data/inbox -e S3PROC_BUCKET=my-bucket -e AWS_REGION=eu-west-1 s3proc
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" s3proc convert /data/in.csv /data/out.parquet
# The state database lives in /data/inbox/.s3proc unless S3PROC_STATE says otherwise; the
# mounted folder must be writable by the container's user (nobody).
FROM rust:1-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir "maturin>=1.9,<2"
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md LICENSE ./
COPY rust rust
COPY python python
RUN /opt/build/bin/maturin build --release --locked --out /wheels

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV S3PROC_WATCH_DIR=/data/inbox S3PROC_LOG_FORMAT=json
USER nobody
ENTRYPOINT ["s3proc"]
CMD ["run"]
