"""journey: synthesize o1-style long-thought data by tree search (journey learning), and train on it."""

__version__ = "0.1.0"
