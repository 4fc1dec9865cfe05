# mbctl base image for CPU only (development, CI).
# Rendered from images/base-cpu.Dockerfile.j2: edit the template, not this file.
FROM mbctl-test/python-base:bookworm AS base
# Unbuffered output: the orchestrator reads metrics from stdout as they are printed.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MBCTL_VENDOR=cpu
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

FROM base AS install
ARG PIP_INDEX_URL
COPY wheelhouse/ /tmp/mbctl/wheelhouse/
COPY mbctl-pip.py /tmp/mbctl/mbctl-pip.py
RUN python /tmp/mbctl/mbctl-pip.py plan --out /tmp/mbctl/pip --framework torch,torchvision,torchaudio,triton \
        torch numpy \
 && python -m pip install --root /tmp/mbctl/stage --no-compile --constraint /tmp/mbctl/pip/constraints.txt \
        --no-index --find-links /tmp/mbctl/wheelhouse --requirement /tmp/mbctl/pip/requirements.txt \
 && python /tmp/mbctl/mbctl-pip.py compile /tmp/mbctl/stage \
 && python /tmp/mbctl/mbctl-pip.py manifest /tmp/mbctl/stage /opt/mbctl/installed-base.sha256

FROM base
COPY --from=install /tmp/mbctl/stage/ /
