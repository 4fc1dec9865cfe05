# Stand-in for rocm/pytorch (ROCm 6.2 releases): torch lives in a conda env, /opt/conda/envs/py_3.X,
# whose interpreter comes first on PATH; the system Python does not see it (Debian's site.py would
# look in dist-packages: only the venv made from it, which is all mbctl runs, sees site-packages). amdsmi's Python
# package ships as source under /opt/rocm/share/amd_smi.
ARG BASE
FROM ${BASE}
COPY stub.py /tmp/stub.py
RUN P=/opt/conda/envs/py_3.11 && S=$P/lib/python3.11/site-packages \
 && mkdir -p $P/bin $S /opt/conda/bin \
 && cp /usr/bin/python3.11 $P/bin/python3.11 && ln -s python3.11 $P/bin/python3 && ln -s python3.11 $P/bin/python \
 && for f in /usr/lib/python3.11/*; do ln -s "$f" $P/lib/python3.11/; done \
 && for f in /usr/lib/python3/dist-packages/*; do ln -s "$f" $S/; done \
 && $P/bin/python /tmp/stub.py $S torch 2.3.0+rocm6.2.3 \
      'torch=__version__ = "2.3.0+rocm6.2.3"\nfrom torch import cuda, version' \
      'torch.version=__version__ = "2.3.0+rocm6.2.3"\ncuda = None\nhip = "6.2.41133-dd7f95766"\ngit_version = "0f8e2ed3"' \
      'torch.cuda=def is_available():\n    return False\ndef device_count():\n    return 0' \
 && $P/bin/python /tmp/stub.py $S pytorch-triton-rocm 2.3.0+rocm6.2.3.5a02332983 'triton=__version__ = "2.3.0"' \
 && mkdir -p /opt/rocm/share/amd_smi/amdsmi \
 && printf 'from setuptools import setup\nsetup(name="amdsmi", version="24.6.3", packages=["amdsmi"])\n' > /opt/rocm/share/amd_smi/setup.py \
 && echo 'def amdsmi_init():\n    raise RuntimeError("stand-in: no AMD driver")' > /opt/rocm/share/amd_smi/amdsmi/__init__.py \
 && rm /tmp/stub.py
ENV PATH=/opt/conda/envs/py_3.11/bin:/opt/conda/bin:$PATH \
    CONDA_PREFIX=/opt/conda/envs/py_3.11 \
    CONDA_DEFAULT_ENV=py_3.11 \
    ROCM_PATH=/opt/rocm
