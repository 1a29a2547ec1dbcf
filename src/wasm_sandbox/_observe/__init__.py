"""What an execution reports and who hears about it: the report and result types,
live monitoring and alerts, file-operation events, Prometheus metrics, and the one policy
for user callbacks that raise.
"""
