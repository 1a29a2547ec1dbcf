"""A Python guest of the documentation's examples."""


def process(text):
    """``text`` in capitals."""
    return text.upper()
