"""Reference encoders: the floors every SSL method must beat.

- ``random_init``: the preset's backbone, untrained, initialised with the run's seed.
  A random ConvNet is a strong floor (docs/reference/protocols.md: 86.7% linear on
  Fashion-MNIST at full width), so it must use the same backbone as the methods.
- ``raw_pixels``: the normalised pixels, flattened: ``(N, C*H*W)``.
"""

from sslbench.method import Method

RANDOM_INIT = Method(
    name="random_init",
    summary="floor: the same backbone, untrained (seeded init)",
    encoder="random_init",
)

RAW_PIXELS = Method(
    name="raw_pixels",
    summary="floor: normalised pixels, flattened",
    encoder="raw_pixels",
)
