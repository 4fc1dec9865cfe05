"""Where jobs execute: local processes, Docker containers or Kubernetes Jobs."""
