"""The shared core of partsbin: what a component is.

- :mod:`parts.card` — the component card (pydantic);
- :mod:`parts.names` — names and references;
- :mod:`parts.archs` — splittable architectures, rebuilt from a card's ``arch``;
- :mod:`parts.safetensors_format` — reading and checking ``.safetensors`` files;
- :mod:`parts.batchnorm` — batch-statistics BatchNorm for recombined and frozen parts.

The registry, the trainer and the client all import this package; it imports none of them.
"""
