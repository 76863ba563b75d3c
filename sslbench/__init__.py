"""sslbench: evaluation suite and benchmark harness for self-supervised image embeddings."""

__version__ = "0.1.0"
