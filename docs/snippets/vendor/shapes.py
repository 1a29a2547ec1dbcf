"""A pure-Python module on the guest's python_path (docs/python.md)."""


def area(width, height):
    return width * height
