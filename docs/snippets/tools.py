"""A Python guest of the documentation's examples: process() is called with data."""

import sys


def process(data, scale=1):
    """The rows' total, times ``scale``."""
    return {"total": sum(data["rows"]) * scale}


if __name__ == "__main__":
    print("tools.py ran with", sys.argv[1:])
