"""One execution: its plan and context, the kinds of invocation, the pure
classifier of how it ended, and its report.
"""
