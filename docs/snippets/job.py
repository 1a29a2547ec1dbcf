"""A Python guest that prints as it works (the streaming example)."""

import sys

for step in range(3):
    print(f"step {step} done")
print("a warning on stderr", file=sys.stderr)
