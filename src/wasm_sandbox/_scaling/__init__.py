"""Running many executions: the load balancer, the auto-scaler, and the process
and Ray backends.
"""
