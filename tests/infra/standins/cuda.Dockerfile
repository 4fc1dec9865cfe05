# Stand-in for NGC's PyTorch image (nvcr.io/nvidia/pytorch:YY.MM-py3): the system Python owns the
# framework in /usr/local/lib/python3.X/dist-packages, and PIP_CONSTRAINT names NGC's own pins.
ARG BASE
FROM ${BASE}
COPY stub.py /tmp/stub.py
RUN S=/usr/local/lib/python3.11/dist-packages \
 && python3 /tmp/stub.py $S torch 2.9.0a0+145a3a7bda.nv25.10 \
      'torch=__version__ = "2.9.0a0+145a3a7bda.nv25.10"\nfrom torch import cuda, version' \
      'torch.version=__version__ = "2.9.0a0+145a3a7bda.nv25.10"\ncuda = "13.0"\nhip = None\ngit_version = "145a3a7bda"' \
      'torch.cuda=def is_available():\n    return False\ndef device_count():\n    return 0' \
 && python3 /tmp/stub.py $S torchvision 0.24.0a0+094e7af5 'torchvision=__version__ = "0.24.0a0+094e7af5"' \
 && mkdir -p /etc/pip \
 && printf 'torch==2.9.0a0+145a3a7bda.nv25.10\ntorchvision==0.24.0a0+094e7af5\n' > /etc/pip/constraint.txt \
 && rm /tmp/stub.py
ENV PIP_CONSTRAINT=/etc/pip/constraint.txt \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_PYTORCH_VERSION=25.10
