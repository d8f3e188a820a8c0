"""dftui: a terminal dashboard for fine-tuning DeepFake detectors."""

__version__ = "0.1.0"
