# mbctl base image for Intel Gaudi accelerators (Habana).
# Rendered from images/base-hpu.Dockerfile.j2: edit the template, not this file.
FROM vault.habana.ai/gaudi-docker/1.22.0/ubuntu22.04/habanalabs/pytorch-installer-2.7.1:latest@sha256:1111111111111111111111111111111111111111111111111111111111111111 AS base
# The site's CA bundle (TLS-intercepting proxies): added to the system trust store, and named for
# the tools that carry their own bundle (pip, requests, curl, OpenSSL users).
COPY ca-bundle.crt /usr/local/share/ca-certificates/mbctl-site-ca.crt
RUN update-ca-certificates
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# Unbuffered output: the orchestrator reads metrics from stdout as they are printed.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MBCTL_VENDOR=hpu
# The image logs to /var/log/habana_logs, writable by root only; HOME is writable by any uid.
ENV HABANA_LOGS=/opt/mbctl/home/habana_logs
# One venv on every vendor: it sees the framework of the vendor image (system site-packages) and
# gives pip a place of its own; pip itself is the image's (no ensurepip needed). /data and /results
# are the mount points every backend uses; they and HOME are writable by any uid, so the image also
# runs as a non-root user (--user, runAsUser).
RUN python3 -m venv --system-site-packages --without-pip /opt/mbctl/venv \
 && mkdir -p /data /results /opt/mbctl/home \
 && chmod 1777 /data /results /opt/mbctl/home
ENV PATH=/opt/mbctl/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/mbctl/venv \
    HOME=/opt/mbctl/home
