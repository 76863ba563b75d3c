"""Built-in evaluation protocols (kNN, linear probe, collapse metrics).

Each module holds one registered :class:`sslbench.protocol.Protocol` class and
the pure functions that do its maths. Protocols import only ``sslbench`` core,
torch, numpy, faiss and scikit-learn; never ``baselines``.
"""
