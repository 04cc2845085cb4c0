"""The control plane's Prometheus metrics (`GET /metrics`): what the store holds, what the hosting backend has
warm, how long sessions take to start, and what the API answered. The render server's own are in render/metrics.py."""
