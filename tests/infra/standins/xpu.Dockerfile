# Stand-in for intel/intel-extension-for-pytorch:*-xpu: the system Python holds torch's XPU build
# and IPEX next to it (with oneCCL's bindings) in /usr/local/lib/python3.X/dist-packages.
ARG BASE
FROM ${BASE}
COPY stub.py /tmp/stub.py
RUN S=/usr/local/lib/python3.11/dist-packages \
 && python3 /tmp/stub.py $S torch 2.3.1+cxx11.abi \
      'torch=__version__ = "2.3.1+cxx11.abi"\nfrom torch import cuda, version, xpu' \
      'torch.version=__version__ = "2.3.1+cxx11.abi"\ncuda = None\nhip = None\nxpu = "20240200"\ngit_version = "63d5e9221"' \
      'torch.cuda=def is_available():\n    return False\ndef device_count():\n    return 0' \
      'torch.xpu=def is_available():\n    return False\ndef device_count():\n    return 0' \
 && python3 /tmp/stub.py $S intel-extension-for-pytorch 2.3.110+xpu 'intel_extension_for_pytorch=__version__ = "2.3.110+xpu"' \
 && python3 /tmp/stub.py $S oneccl-bind-pt 2.3.100+xpu 'oneccl_bindings_for_pytorch=__version__ = "2.3.100+xpu"' \
 && rm /tmp/stub.py
