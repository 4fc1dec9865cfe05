# mbctl image of benchmark matmul for CPU only (development, CI).
# Rendered from images/benchmark.Dockerfile.j2: edit the template, not this file.
FROM localhost/mbctl/base:cpu-0123456789ab AS install
COPY wheelhouse/ /tmp/mbctl/wheelhouse/
COPY mbctl-pip.py /tmp/mbctl/mbctl-pip.py
COPY requirements.txt /tmp/mbctl/requirements.txt
RUN python /tmp/mbctl/mbctl-pip.py plan --out /tmp/mbctl/pip --framework torch,torchvision,torchaudio,triton \
        --requirement /tmp/mbctl/requirements.txt \
 && python -m pip install --root /tmp/mbctl/stage --no-compile --constraint /tmp/mbctl/pip/constraints.txt \
        --no-index --find-links /tmp/mbctl/wheelhouse --requirement /tmp/mbctl/pip/requirements.txt \
 && python /tmp/mbctl/mbctl-pip.py compile /tmp/mbctl/stage
# benchkit needs only the standard library; building it with the base's setuptools keeps the
# build offline even without a wheelhouse.
COPY benchkit/ /tmp/mbctl/benchkit/
RUN python -m pip install --root /tmp/mbctl/stage --no-deps --no-build-isolation --no-index --no-compile \
        /tmp/mbctl/benchkit \
 && python /tmp/mbctl/mbctl-pip.py compile /tmp/mbctl/stage \
 && python /tmp/mbctl/mbctl-pip.py manifest /tmp/mbctl/stage /opt/mbctl/installed.sha256

FROM localhost/mbctl/base:cpu-0123456789ab
COPY --from=install /tmp/mbctl/stage/ /
COPY code/ /opt/mbctl/benchmark/
WORKDIR /opt/mbctl/benchmark
# Mount points, read by the backends, rather than VOLUME: VOLUME would leave an anonymous volume
# behind every run that mounts nothing there, and Kubernetes ignores it anyway.
LABEL mbctl.volumes="/data,/results"
ENTRYPOINT ["python", "main.py"]
