# Stand-in for Habana's pytorch-installer image: the system Python holds Habana's torch build (a
# 2.x.0a0+git pre-release) and habana_frameworks in /usr/local/lib/python3.X/dist-packages.
ARG BASE
FROM ${BASE}
COPY stub.py /tmp/stub.py
RUN S=/usr/local/lib/python3.11/dist-packages \
 && python3 /tmp/stub.py $S torch 2.4.0a0+git74cd574 \
      'torch=__version__ = "2.4.0a0+git74cd574"\nfrom torch import cuda, version' \
      'torch.version=__version__ = "2.4.0a0+git74cd574"\ncuda = None\nhip = None\ngit_version = "74cd574"' \
      'torch.cuda=def is_available():\n    return False\ndef device_count():\n    return 0' \
 && python3 /tmp/stub.py $S habana-torch-plugin 1.18.0.524 \
      'habana_frameworks=__version__ = "1.18.0.524"' 'habana_frameworks.torch.core=def mark_step():\n    pass' \
 && rm /tmp/stub.py
ENV HABANA_LOGS=/var/log/habana_logs \
    HABANA_PLUGINS_LIB_PATH=/opt/habanalabs/habana_plugins
