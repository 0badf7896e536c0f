"""The shared core of partsbin: what a component is, and the data it is measured on.

- :mod:`partsbin.parts.card` — the component card (pydantic);
- :mod:`partsbin.parts.names` — names and references;
- :mod:`partsbin.parts.archs` — splittable architectures, rebuilt from a card's ``arch``;
- :mod:`partsbin.parts.safetensors_format` — reading and checking ``.safetensors`` files;
- :mod:`partsbin.parts.batchnorm` — batch-statistics BatchNorm for recombined and frozen parts;
- :mod:`partsbin.parts.metrics` — recombination accuracy;
- :mod:`partsbin.parts.training_spec` — the job spec, validated where it is submitted;
- :mod:`partsbin.parts.data` — data sources, selections, domain shifts and the named pairs.

The registry, the trainer and the client all import this package; it imports none of them.
"""
